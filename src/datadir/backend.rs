//! The store's file, as redb's own file backend plus one signal: the moment a commit's last byte
//! has been handed to the OS, before the fsync that makes it survive a power cut.
//!
//! Why: a notification's outbox row must be in the store before the notification goes out, so
//! a process killed from then on (SIGKILL, OOM, a crash) sends it after the restart. A killed
//! process loses nothing the kernel already holds: what it needs is the commit's writes, not the
//! commit's fsync, which took 3–4 ms on the development machine's disk and was most of a data-dir
//! notification's latency. The fsync still runs, and the commit still returns only after it, so
//! what a power cut can take is unchanged except for a notification sent during those
//! milliseconds (see the README's "Restarts and the data dir").
//!
//! How: in a redb commit (one-phase, the default), every page and then the header go to the file
//! and one `sync_data` follows. A `sync_data` after a header write therefore ends a commit whose
//! bytes are all in the file: the armed hook runs right there, before the fsync. Other syncs
//! (redb makes the file's new length durable while it grows) come with no header write and run
//! no hook.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
// redb's I/O methods take `std::io::Error` (its `BackendError` only with `experimental-api-5`).
type BackendIoError = std::io::Error;

/// Runs once the armed commit's bytes are in the file.
pub type Hook = Box<dyn FnOnce() + Send>;

/// The side of the backend the writer keeps: arm a hook before a commit, take back what did not
/// run after it.
#[derive(Default)]
pub struct Written {
    /// The header was written since the last sync: the next sync ends a commit.
    header: AtomicBool,
    hook: Mutex<Option<Hook>>,
}

impl fmt::Debug for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Written").finish_non_exhaustive()
    }
}

impl Written {
    /// `hook` runs when the next commit's bytes are all in the file.
    pub fn arm(&self, hook: Hook) {
        *self.hook.lock().unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }

    /// The hook if it did not run (the commit failed before its last write).
    pub fn disarm(&self) -> Option<Hook> {
        self.hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn wrote(&self, offset: u64) {
        // The header is the file's first bytes; a commit writes it last, after every page.
        if offset == 0 {
            self.header.store(true, Ordering::Release);
        }
    }

    fn before_sync(&self) {
        if self.header.swap(false, Ordering::AcqRel)
            && let Some(hook) = self.disarm()
        {
            hook();
        }
    }
}

/// redb's file backend, telling [`Written`] what it writes and when it syncs.
pub struct SignalingFile {
    inner: FileBackend,
    written: Arc<Written>,
}

impl fmt::Debug for SignalingFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalingFile").finish_non_exhaustive()
    }
}

impl SignalingFile {
    /// Opens (or creates) `path` as redb's `Database::create` does.
    pub fn open(path: &Path) -> Result<(SignalingFile, Arc<Written>), redb::DatabaseError> {
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let written = Arc::new(Written::default());
        let backend = SignalingFile {
            inner: FileBackend::new(file)?,
            written: Arc::clone(&written),
        };
        Ok((backend, written))
    }
}

impl StorageBackend for SignalingFile {
    fn len(&self) -> Result<u64, BackendIoError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        self.written.before_sync();
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        self.inner.write(offset, data)?;
        self.written.wrote(offset);
        Ok(())
    }

    fn close(&self) -> Result<(), BackendIoError> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
