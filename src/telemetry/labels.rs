//! Bounded label values: the first N distinct values pass, later ones fold into `other`.

use std::collections::HashSet;

use super::Counter;

pub const OTHER: &str = "other";

/// Keeps a label's value set bounded. Values arrive from the exchange (markets, error codes); a
/// misbehaving upstream must not grow the registry without limit.
pub struct LabelFolder {
    cap: usize,
    seen: HashSet<String>,
    /// Distinct values already folded, so each is counted once; bounded like everything else.
    folded_seen: HashSet<String>,
    folded: Counter,
}

/// Beyond this many distinct folded values we stop remembering them (and counting new ones):
/// the counter says "at least this many", and memory stays bounded.
const MAX_REMEMBERED_FOLDS: usize = 10_000;

impl LabelFolder {
    pub fn new(cap: usize, folded: Counter) -> Self {
        Self {
            cap,
            seen: HashSet::new(),
            folded_seen: HashSet::new(),
            folded,
        }
    }

    /// The label value to use for `value`: itself while under the cap (or already admitted),
    /// else `other`, counting each distinct folded value once.
    pub fn fold<'a>(&mut self, value: &'a str) -> &'a str {
        if self.seen.contains(value) {
            return value;
        }
        if self.seen.len() < self.cap {
            self.seen.insert(value.to_string());
            return value;
        }
        if self.folded_seen.len() < MAX_REMEMBERED_FOLDS
            && self.folded_seen.insert(value.to_string())
        {
            self.folded.increment(1);
        }
        OTHER
    }
}
