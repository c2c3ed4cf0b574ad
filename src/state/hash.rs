//! The hasher of the fold's own hash maps (dedup memory, positions by id and market): a few multiplies per key instead of SipHash's rounds, seeded per process.
//!
//! Every trade key is hashed once per event it appears in and every position id once per
//! upsert, so SipHash was a visible part of the fold. The keys are short strings from the
//! exchange (trade ids, position ids, market ids), not from an anonymous client: flooding
//! resistance beyond a per-process random seed is not needed here, and std's `RandomState`
//! stays the default elsewhere.

use std::hash::{BuildHasher, Hasher, RandomState};

/// Odd constants with well-spread bits (from the golden ratio and from SplitMix64).
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
const FINISH: u64 = 0x94d0_49bb_1331_11eb;

/// The full 128-bit product, folded: every input bit reaches every output bit.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// The 1 to 7 bytes left after the whole words, as the little-endian word they make padded
/// with zeros, but read in place (with overlapping loads) instead of copied into a zeroed
/// buffer, which cost a store-forwarding stall on every hash.
fn tail_word(t: &[u8]) -> u64 {
    let n = t.len();
    if n >= 4 {
        let lo = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        // The last four bytes, shifted so only those past the first four remain.
        let hi = u64::from(u32::from_le_bytes([t[n - 4], t[n - 3], t[n - 2], t[n - 1]]));
        u64::from(lo) | ((hi >> (8 * (8 - n))) << 32)
    } else {
        u64::from(t[0])
            | (u64::from(t[n / 2]) << (8 * (n / 2)))
            | (u64::from(t[n - 1]) << (8 * (n - 1)))
    }
}

/// Builds [`FastHasher`]s with a seed drawn once per map from std's randomness.
#[derive(Debug, Clone)]
pub(crate) struct FastState {
    seed: u64,
}

impl Default for FastState {
    fn default() -> Self {
        FastState {
            seed: RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.seed)
    }
}

/// Folds each 8-byte word in with a multiply; see the module docs.
#[derive(Debug)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    fn mix(&mut self, word: u64) {
        self.0 = folded_multiply(self.0 ^ word, MIX);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut le = [0u8; 8];
            le.copy_from_slice(w);
            self.mix(u64::from_le_bytes(le));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            // The tail's length in the top byte, so a short tail is not its zero-padded self.
            self.mix(tail_word(tail) ^ ((tail.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    fn write_isize(&mut self, i: isize) {
        self.mix(i as u64);
    }

    fn finish(&self) -> u64 {
        folded_multiply(self.0, FINISH)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::Hash;

    use super::*;

    fn hash<T: Hash + ?Sized>(s: &FastState, v: &T) -> u64 {
        s.hash_one(v)
    }

    #[test]
    fn equal_keys_hash_equal_and_near_keys_apart() {
        let s = FastState::default();
        assert_eq!(hash(&s, "t-1"), hash(&s, &"t-1".to_string()));
        // Prefixes, zero padding, and every trade id of a long run: no two alike.
        let keys = [
            "",
            "\0",
            "a",
            "a\0",
            "ab",
            "ba",
            "abc",
            "acb",
            "abcd",
            "abdc",
            "abcde",
            "abced",
            "abcdefg",
            "abcdegf",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
        ];
        let hashes: HashSet<u64> = keys.iter().map(|k| hash(&s, *k)).collect();
        assert_eq!(hashes.len(), keys.len());
        let ids: HashSet<u64> = (0..100_000).map(|i| hash(&s, &format!("t-{i}"))).collect();
        assert_eq!(ids.len(), 100_000);
    }

    #[test]
    fn tail_words_are_the_zero_padded_bytes() {
        let bytes = b"\x01\x82\x03\xf4\x05\x06\xe7";
        for n in 1..=7 {
            let mut le = [0u8; 8];
            le[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(tail_word(&bytes[..n]), u64::from_le_bytes(le), "{n}");
        }
    }

    #[test]
    fn the_low_bits_spread() {
        // hashbrown picks the bucket from the low bits: sequential ids must fill the buckets
        // about evenly.
        let s = FastState::default();
        let mut buckets = [0u32; 256];
        for i in 0..25_600 {
            buckets[(hash(&s, &format!("t-{i}")) & 0xff) as usize] += 1;
        }
        let (min, max) = (buckets.iter().min(), buckets.iter().max());
        assert!(min >= Some(&50) && max <= Some(&160), "{min:?}..{max:?}");
    }

    #[test]
    fn seeds_differ_between_states() {
        let (a, b) = (FastState::default(), FastState::default());
        assert_ne!(hash(&a, "t-1"), hash(&b, "t-1"));
    }
}
