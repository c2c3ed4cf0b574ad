//! The write log: which counters and gauges were written lately, so a reader (the rule engine's change pass) reads the few series that moved instead of every series in the store.
//!
//! A bounded ring of series ids, appended to by the write path without a lock. A series is not
//! logged on every write: only when it has no entry that no reader has yet started reading (its
//! latest entry is at or after [`WriteLog::taken`]). A hot series therefore costs one entry per
//! reader pass, not one per increment, and between two passes the ring grows by at most the
//! number of distinct series written (times the passes of other readers sharing the registry).
//!
//! Why a reader misses nothing. A writer stores the value, then loads `taken`; a reader raises
//! `taken` to the head it read, then loads values; all `SeqCst`, so of a write and a read that
//! race, at least one sees the other. A write that finds its series' latest entry not yet taken
//! (skips appending) is then either read by the reader that takes that entry (its values are
//! read after its `taken` store, which came after the writer's check) or finds that entry in
//! the reader's next range; a write that appends is in the next range of every reader. A
//! reader whose cursor fell off the ring reads every series instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};

/// Entries the ring holds: more than the series of a large sidecar (a few thousand counters and
/// gauges with 200 markets), so one reader between two of its passes only falls off it when
/// other readers pass in between (tests) or the store grows far beyond that. 128 KiB.
pub const WRITE_LOG_CAP: usize = 1 << 14;
const RING_BITS: u32 = WRITE_LOG_CAP.trailing_zeros();

/// An id no series is given once `u32` ids run out (four billion registrations): an entry with
/// it tells the reader to read everything.
pub(crate) const UNKNOWN: u32 = u32::MAX;

/// A reader's place in the log: the entries before it were handed to it (or it read every
/// series after taking them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteCursor(u64);

/// The registry-wide ring. See the module docs.
pub(crate) struct WriteLog {
    /// Entries appended so far; entry `s` lives in `slots[s % WRITE_LOG_CAP]`.
    head: AtomicU64,
    /// The highest head a reader has taken: entries below it are being or were read.
    taken: AtomicU64,
    /// `(lap + 1) << 32 | id` of the entry written last into each slot (0: never written), where
    /// entry `s` is on lap `s / WRITE_LOG_CAP`; the lap says whether a slot holds the entry a reader
    /// expects, an older one (an append still under way) or a newer one (it was overwritten).
    slots: Box<[AtomicU64]>,
}

impl WriteLog {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            head: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            slots: (0..WRITE_LOG_CAP).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Entries appended so far (tests count them).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    /// Calls `f` with the id of each entry from `from` on (in log order, possibly repeated) and
    /// returns the cursor to pass next time, with whether the ids listed are all that was written
    /// since `from`. `false` (`from` is `None`, fell off the ring, or an id is unknown) means the
    /// caller must read every series instead. Either way, values read after this call see every
    /// write not listed here.
    pub(crate) fn read(
        &self,
        from: Option<WriteCursor>,
        f: &mut dyn FnMut(u32),
    ) -> (WriteCursor, bool) {
        let head = self.head.load(Ordering::SeqCst);
        self.taken.fetch_max(head, Ordering::SeqCst);
        // The values the caller reads next are loaded with `Relaxed`: this fence orders them
        // after the `taken` store (the writer's side of the race is `SeqCst`).
        fence(Ordering::SeqCst);
        let Some(WriteCursor(from)) = from else {
            return (WriteCursor(head), false);
        };
        if head.saturating_sub(from) > WRITE_LOG_CAP as u64 {
            return (WriteCursor(head), false);
        }
        let mut next = head;
        for s in from..head {
            let v = self.slots[(s % WRITE_LOG_CAP as u64) as usize].load(Ordering::SeqCst);
            // Laps are compared modulo 2^32: a slot cannot be lapped 2^32 times while one
            // reader reads it.
            let expected = ((s >> RING_BITS) + 1) as u32;
            match ((v >> 32) as u32).wrapping_sub(expected) as i32 {
                0 if v as u32 == UNKNOWN => return (WriteCursor(head), false),
                0 => f(v as u32),
                // The writer has its place but has not filled it: read it again next time (its
                // write may be after the values this pass reads).
                d if d < 0 => next = next.min(s),
                // Overwritten while being read: the ring moved past `from`.
                _ => return (WriteCursor(head), false),
            }
        }
        (WriteCursor(next), true)
    }
}

/// A registered counter's or gauge's place in the write log.
pub(crate) struct Logged {
    log: Arc<WriteLog>,
    id: u32,
    /// One past the index of its latest entry (0: none).
    last: AtomicU64,
}

impl Logged {
    pub(crate) fn new(log: Arc<WriteLog>, id: u32) -> Self {
        Self {
            log,
            id,
            last: AtomicU64::new(0),
        }
    }

    pub(crate) fn id(&self) -> Option<u32> {
        (self.id != UNKNOWN).then_some(self.id)
    }

    /// After a write that changed the value (with `SeqCst`): log the series unless its latest
    /// entry is not yet taken by any reader, which will then read this write too.
    #[inline]
    pub(crate) fn wrote(&self) {
        let last = self.last.load(Ordering::SeqCst);
        if last > self.log.taken.load(Ordering::SeqCst) {
            return;
        }
        self.append();
    }

    #[cold]
    fn append(&self) {
        let log = &self.log;
        let s = log.head.fetch_add(1, Ordering::SeqCst);
        let lap = ((s >> RING_BITS) + 1) as u32;
        log.slots[(s % WRITE_LOG_CAP as u64) as usize]
            .store(u64::from(lap) << 32 | u64::from(self.id), Ordering::SeqCst);
        // After the slot: a writer that skips because of this entry knows it is readable.
        self.last.fetch_max(s + 1, Ordering::SeqCst);
    }
}
