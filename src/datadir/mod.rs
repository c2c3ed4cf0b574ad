//! The data dir: one embedded store (redb, one file) for everything the sidecar must remember
//! across restarts, and the writer thread that commits to it in groups.
//!
//! Rules:
//! - **One file**, `DIR/sentinel.redb`, ACID (redb commits are atomic and, with
//!   `Durability::Immediate`, on disk when `commit` returns). A process killed mid-write leaves
//!   the last committed state; redb repairs its own file on the next open.
//! - **A file that cannot be opened as a store** (garbage, truncated, another format, unreadable)
//!   is moved aside to `sentinel.redb.corrupt-<unix seconds>` and a fresh store is created: the
//!   sidecar starts with a log line saying so, never a crash. A store that another live process
//!   holds is *not* moved aside: that is a configuration error and is reported as one.
//! - **Group commit.** Callers hand journals to the writer ([`WriterHandle::submit`]) and go on; its thread takes every
//!   journal waiting, commits them in one transaction (one fsync), then runs each job's
//!   continuation in order. Under load, groups grow, so throughput does not fall to one event per
//!   fsync: a commit starts `COMMIT_PACE` after the first change it carries, or at once when a
//!   notification's outbox row arrives (the notification waits for it, and only until its
//!   bytes are in the file, not for the fsync: see `backend`).
//! - **Journals are pulled, not pushed**, by a caller that changes often (an account cell,
//!   [`Pending`]): it tells the writer once that it has something ([`WriterHandle::notify`]) and
//!   keeps accumulating; right before a commit the writer takes everything accumulated. So a
//!   burst of events costs one message and one journal, not one each, and the caller never
//!   waits for the disk: taking copies rows under the caller's own lock, never held across IO.
//! - **A failing disk loses nothing in memory.** When a commit fails (disk full, IO error) the
//!   continuations still run (the caller's values stay live), the failure is reported, and the
//!   journals are kept and retried with a capped backoff, merged with later ones (rows are
//!   absolute values, so the later value wins).
//!
//! Layout: `meta` (schema version), `trade_keys` ((account, serial) → encoded trade key),
//! `account_rows` ((account, kind, id) → value) where kind is `fill`, `realized`, `base`,
//! `market` or `misc` (the row encodings live in `crate::state::durable`), and `alerting_rows`
//! ((kind, id) → value) for the alerting side: alert states, silences, the notification log and
//! the outbox ([`Row`]; their encodings live with their owners). A store written before
//! `alerting_rows` existed gains the table on open.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::state::durable::{self, DurableImage, Journal};
use backend::{Hook, SignalingFile, Written};

mod backend;

/// The store's file name inside the data dir.
pub const FILE_NAME: &str = "sentinel.redb";
const SCHEMA_VERSION: &str = "1";

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const TRADE_KEYS: TableDefinition<(&str, u64), &str> = TableDefinition::new("trade_keys");
const ACCOUNT_ROWS: TableDefinition<(&str, &str, &str), &str> =
    TableDefinition::new("account_rows");
const ALERTING_ROWS: TableDefinition<(&str, &str), &str> = TableDefinition::new("alerting_rows");

const KIND_FILL: &str = "fill";
const KIND_REALIZED: &str = "realized";
const KIND_BASE: &str = "base";
const KIND_MARKET: &str = "market";
const KIND_MISC: &str = "misc";
const MISC_DEDUP: &str = "dedup";
const MISC_WATCH_START: &str = "watch_start_ms";
const MISC_BASELINED: &str = "baselined";

/// Retries of a failed commit wait from this long, doubling, up to [`RETRY_MAX`].
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// At most this many jobs go into one transaction: a bound on the time the first of them waits.
const MAX_GROUP: usize = 8192;
/// A commit starts at most this long after the first change it carries arrived (at once for a
/// notification's outbox row, and whatever else waits joins it). Each commit has a fixed cost:
/// for the writer an fsync and the tree pages it copies, for each busy account a short wait of
/// its stream on the account's lock while the journal is taken. Waiting this little gathers
/// more events per commit; counters become visible at most this much later.
const COMMIT_PACE: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data dir {path} is in use by another ocx-sentinel process (its store is locked); give each process its own --data-dir"
    )]
    InUse { path: PathBuf },
    #[error("cannot create data dir {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot move the unreadable store {path} aside: {source}")]
    MoveAside { path: PathBuf, source: io::Error },
    #[error("store {path}: {detail}")]
    Store { path: PathBuf, detail: String },
}

/// How [`DataDir::open`] found the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// No store yet: a new one was created.
    Fresh,
    /// The existing store was opened.
    Existing,
    /// The existing store could not be read; it was moved to `to` and a new one created.
    MovedAside { to: PathBuf, reason: String },
}

/// An open data dir.
#[derive(Debug)]
pub struct DataDir {
    db: Database,
    path: PathBuf,
    /// Says when a commit's bytes are in the file, before its fsync (see `backend`).
    written: Arc<Written>,
    /// Tests set it to make commits fail as a full disk would.
    #[cfg(test)]
    fail: Option<Arc<AtomicBool>>,
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> DataDirError {
    DataDirError::Store {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

impl DataDir {
    /// Opens (or creates) the store in `dir`, moving an unreadable one aside.
    pub fn open(dir: &Path) -> Result<(DataDir, Opened), DataDirError> {
        std::fs::create_dir_all(dir).map_err(|source| DataDirError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let existed = path.exists();
        match Self::open_checked(&path) {
            Ok((db, written)) => {
                let opened = if existed {
                    Opened::Existing
                } else {
                    Opened::Fresh
                };
                Ok((
                    DataDir {
                        db,
                        path,
                        written,
                        #[cfg(test)]
                        fail: None,
                    },
                    opened,
                ))
            }
            Err(OpenFailure::InUse) => Err(DataDirError::InUse { path }),
            Err(OpenFailure::Unreadable(reason)) => {
                let secs = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let to = dir.join(format!("{FILE_NAME}.corrupt-{secs}"));
                std::fs::rename(&path, &to).map_err(|source| DataDirError::MoveAside {
                    path: path.clone(),
                    source,
                })?;
                let (db, written) = Self::open_checked(&path).map_err(|f| match f {
                    OpenFailure::InUse => DataDirError::InUse { path: path.clone() },
                    OpenFailure::Unreadable(r) => store_err(&path, r),
                })?;
                Ok((
                    DataDir {
                        db,
                        path,
                        written,
                        #[cfg(test)]
                        fail: None,
                    },
                    Opened::MovedAside { to, reason },
                ))
            }
        }
    }

    /// Opens the file and checks that it holds our tables in our schema.
    fn open_checked(path: &Path) -> Result<(Database, Arc<Written>), OpenFailure> {
        let opened = SignalingFile::open(path).and_then(|(file, written)| {
            Ok((Database::builder().create_with_backend(file)?, written))
        });
        let (db, written) = match opened {
            Ok(opened) => opened,
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
            | Err(redb::DatabaseError::LockProtocolMismatch) => return Err(OpenFailure::InUse),
            Err(e) => return Err(OpenFailure::Unreadable(e.to_string())),
        };
        let unreadable = |e: &dyn std::fmt::Display| OpenFailure::Unreadable(e.to_string());
        let tx = db.begin_write().map_err(|e| unreadable(&e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| unreadable(&e))?;
            let version = meta
                .get("schema")
                .map_err(|e| unreadable(&e))?
                .map(|v| v.value().to_string());
            match version.as_deref() {
                None => {
                    meta.insert("schema", SCHEMA_VERSION)
                        .map_err(|e| unreadable(&e))?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(OpenFailure::Unreadable(format!(
                        "schema version {other}, this build reads {SCHEMA_VERSION}"
                    )));
                }
            }
            tx.open_table(TRADE_KEYS).map_err(|e| unreadable(&e))?;
            tx.open_table(ACCOUNT_ROWS).map_err(|e| unreadable(&e))?;
            tx.open_table(ALERTING_ROWS).map_err(|e| unreadable(&e))?;
        }
        tx.commit().map_err(|e| unreadable(&e))?;
        Ok((db, written))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits fail while `flag` is set (tests of a full disk).
    #[cfg(test)]
    pub(crate) fn fail_when(&mut self, flag: Arc<AtomicBool>) {
        self.fail = Some(flag);
    }

    /// The durable state of one account, and how many rows could not be read (skipped).
    pub fn load_account(&self, account: &str) -> Result<(DurableImage, u64), DataDirError> {
        let p = &self.path;
        let tx = self.db.begin_read().map_err(|e| store_err(p, e))?;
        let mut image = DurableImage::default();
        let mut unreadable = 0u64;
        let keys = tx.open_table(TRADE_KEYS).map_err(|e| store_err(p, e))?;
        for row in keys
            .range((account, 0u64)..=(account, u64::MAX))
            .map_err(|e| store_err(p, e))?
        {
            let (k, v) = row.map_err(|e| store_err(p, e))?;
            image.keys.push((k.value().1, v.value().to_string()));
        }
        let rows = tx.open_table(ACCOUNT_ROWS).map_err(|e| store_err(p, e))?;
        let mut markets: Vec<(u32, String)> = Vec::new();
        // Every kind sorts between "" and "\u{10ffff}"; the range takes this account's rows.
        for row in rows
            .range((account, "", "")..=(account, "\u{10ffff}", "\u{10ffff}"))
            .map_err(|e| store_err(p, e))?
        {
            let (k, v) = row.map_err(|e| store_err(p, e))?;
            let (_, kind, id) = k.value();
            let value = v.value();
            let ok = match kind {
                KIND_FILL => durable::decode_fill_key(id)
                    .zip(durable::decode_fill_totals(value))
                    .map(|r| image.fills.push(r)),
                KIND_REALIZED => {
                    durable::decode_realized(value).map(|r| image.realized.push((id.into(), r)))
                }
                KIND_BASE => durable::decode_base(value)
                    .map(|(m, b)| image.bases.push((id.to_string(), m, b))),
                KIND_MARKET => id
                    .parse::<u32>()
                    .ok()
                    .map(|i| markets.push((i, value.to_string()))),
                KIND_MISC if id == MISC_DEDUP => {
                    durable::decode_dedup(value).map(|d| image.dedup = d)
                }
                KIND_MISC if id == MISC_WATCH_START => value
                    .parse::<i64>()
                    .ok()
                    .map(|ms| image.watch_start_ms = Some(ms)),
                KIND_MISC if id == MISC_BASELINED => {
                    value.parse::<bool>().ok().map(|b| image.baselined = b)
                }
                _ => None,
            };
            if ok.is_none() {
                unreadable += 1;
            }
        }
        markets.sort();
        image.markets = markets.into_iter().map(|(_, m)| m).collect();
        Ok((image, unreadable))
    }

    /// Every alerting row of `kind`, by id.
    pub fn load_rows(&self, kind: &str) -> Result<Vec<(String, String)>, DataDirError> {
        let p = &self.path;
        let tx = self.db.begin_read().map_err(|e| store_err(p, e))?;
        let table = tx.open_table(ALERTING_ROWS).map_err(|e| store_err(p, e))?;
        let mut out = Vec::new();
        for row in table
            .range((kind, "")..=(kind, "\u{10ffff}"))
            .map_err(|e| store_err(p, e))?
        {
            let (k, v) = row.map_err(|e| store_err(p, e))?;
            out.push((k.value().1.to_string(), v.value().to_string()));
        }
        Ok(out)
    }

    /// Writes the journals of one group in one transaction, durable when this returns.
    pub fn commit(&self, group: &BTreeMap<Arc<str>, Journal>) -> Result<(), DataDirError> {
        self.commit_all(group, &BTreeMap::new(), None)
    }

    /// Writes account journals and alerting rows in one transaction, durable when this returns.
    /// `written`, if any, runs on this thread as soon as the transaction's bytes are all in the
    /// file (a process killed from then on finds the commit), before the fsync. If the commit
    /// never got that far it does not run, and is dropped here: the caller settles what it
    /// stood for from the result (the writer shares its continuations with the hook for that).
    pub fn commit_all(
        &self,
        group: &BTreeMap<Arc<str>, Journal>,
        rows: &RowSet,
        written: Option<Hook>,
    ) -> Result<(), DataDirError> {
        if let Some(hook) = written {
            self.written.arm(hook);
        }
        let result = self.write_all(group, rows);
        drop(self.written.disarm());
        result
    }

    fn write_all(
        &self,
        group: &BTreeMap<Arc<str>, Journal>,
        rows: &RowSet,
    ) -> Result<(), DataDirError> {
        let p = &self.path;
        #[cfg(test)]
        if self.fail.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
            return Err(store_err(p, "No space left on device (injected by a test)"));
        }
        let mut tx = self.db.begin_write().map_err(|e| store_err(p, e))?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(|e| store_err(p, e))?;
        if !rows.is_empty() {
            let mut table = tx.open_table(ALERTING_ROWS).map_err(|e| store_err(p, e))?;
            for ((kind, id), value) in rows {
                match value {
                    Some(v) => table.insert((*kind, id.as_str()), v.as_str()),
                    None => table.remove((*kind, id.as_str())),
                }
                .map_err(|e| store_err(p, e))?;
            }
        }
        {
            let mut keys = tx.open_table(TRADE_KEYS).map_err(|e| store_err(p, e))?;
            let mut rows = tx.open_table(ACCOUNT_ROWS).map_err(|e| store_err(p, e))?;
            // Keys become text here, on the writer's thread, into one reused buffer.
            let mut text = String::new();
            for (account, j) in group {
                let a: &str = account;
                for (serial, key) in &j.new_keys {
                    key.encode_into(&mut text);
                    keys.insert((a, *serial), text.as_str())
                        .map_err(|e| store_err(p, e))?;
                }
                if let Some(floor) = j.key_floor
                    && floor > 0
                {
                    keys.retain_in((a, 0u64)..(a, floor), |_, _| false)
                        .map_err(|e| store_err(p, e))?;
                }
                for (k, t) in &j.fills {
                    let id = durable::encode_fill_key(k);
                    let v = durable::encode_fill_totals(t);
                    rows.insert((a, KIND_FILL, id.as_str()), v.as_str())
                        .map_err(|e| store_err(p, e))?;
                }
                for (m, r) in &j.realized {
                    let v = durable::encode_realized(r);
                    rows.insert((a, KIND_REALIZED, m.as_str()), v.as_str())
                        .map_err(|e| store_err(p, e))?;
                }
                for (id, base) in &j.bases {
                    match base {
                        Some((market, b)) => {
                            let v = durable::encode_base(market, *b);
                            rows.insert((a, KIND_BASE, id.as_str()), v.as_str())
                                .map_err(|e| store_err(p, e))?;
                        }
                        None => {
                            rows.remove((a, KIND_BASE, id.as_str()))
                                .map_err(|e| store_err(p, e))?;
                        }
                    }
                }
                for (i, m) in &j.new_markets {
                    // Zero-padded so the rows sort in first-seen order.
                    let id = format!("{i:010}");
                    rows.insert((a, KIND_MARKET, id.as_str()), m.as_str())
                        .map_err(|e| store_err(p, e))?;
                }
                if let Some(d) = j.dedup {
                    let v = durable::encode_dedup(d);
                    rows.insert((a, KIND_MISC, MISC_DEDUP), v.as_str())
                        .map_err(|e| store_err(p, e))?;
                }
                if let Some(ms) = j.watch_start_ms {
                    let v = ms.to_string();
                    rows.insert((a, KIND_MISC, MISC_WATCH_START), v.as_str())
                        .map_err(|e| store_err(p, e))?;
                }
                if let Some(b) = j.baselined {
                    let v = if b { "true" } else { "false" };
                    rows.insert((a, KIND_MISC, MISC_BASELINED), v)
                        .map_err(|e| store_err(p, e))?;
                }
            }
        }
        tx.commit().map_err(|e| store_err(p, e))
    }
}

enum OpenFailure {
    InUse,
    Unreadable(String),
}

/// What the writer thread reports, for the caller's metrics and logs.
#[derive(Debug, Clone)]
pub enum WriterEvent {
    /// A group of `jobs` journals committed in `seconds`.
    Committed { jobs: usize, seconds: f64 },
    /// A commit failed; the journals are kept and retried.
    Failed { error: String, pending: usize },
}

/// Runs after its journal is committed (`true`) or after a failed attempt (`false`: the values
/// are live in memory and the journal will be retried).
pub type Then = Box<dyn FnOnce(bool) + Send>;

/// One alerting row to write: `value` None deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub kind: &'static str,
    pub id: String,
    pub value: Option<String>,
}

/// Rows waiting for a commit, the latest value of each (kind, id) winning.
pub type RowSet = BTreeMap<(&'static str, String), Option<String>>;

/// One journal to commit, and what to run after.
pub struct Job {
    pub account: Arc<str>,
    pub journal: Journal,
    pub then: Then,
}

/// A source of journals the writer pulls from (see the module docs): after
/// [`WriterHandle::notify`], the writer calls [`Pending::take`] once.
pub trait Pending: Send + Sync {
    /// Everything accumulated since the last take, or `None` when there is nothing to commit
    /// (whatever needed no commit was handled by the source itself). Runs on the writer thread;
    /// must not block for long.
    fn take(&self) -> Option<Job>;
}

enum Msg {
    Job(Job),
    /// Alerting rows, and what to run once they are committed (or the attempt failed), or, when
    /// `written`, once their commit's bytes are in the file (before its fsync).
    Rows {
        rows: Vec<Row>,
        then: Then,
        written: bool,
    },
    /// A source has something to take.
    Ready(Arc<dyn Pending>),
    /// Commit everything sent before, reply, and stop.
    Stop(mpsc::Sender<()>),
}

/// The sending side of the writer thread. Cheap to clone; one per account cell.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
    /// Set once the writer stops taking journals: a caller then stops waiting for commits.
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Job(job) => write!(f, "Job({})", job.account),
            Msg::Rows { rows, .. } => write!(f, "Rows({})", rows.len()),
            Msg::Ready(_) => f.write_str("Ready"),
            Msg::Stop(_) => f.write_str("Stop"),
        }
    }
}

impl WriterHandle {
    /// Queues a journal; `then` runs once it is committed (or the attempt failed). When the writer
    /// has stopped, `then(false)` runs at once on the caller's thread: values stay live.
    pub fn submit(&self, account: Arc<str>, journal: Journal, then: Then) {
        if let Err(mpsc::SendError(msg)) = self.tx.send(Msg::Job(Job {
            account,
            journal,
            then,
        })) && let Msg::Job(job) = msg
        {
            (job.then)(false);
        }
    }

    /// Queues alerting rows; `then` runs once they are committed (`true`) or the attempt failed
    /// (`false`: they are retried with the next commits). When the writer has stopped,
    /// `then(false)` runs at once.
    pub fn put(&self, rows: Vec<Row>, then: Then) {
        self.send_rows(rows, then, false);
    }

    /// [`WriterHandle::put`], but `then(true)` runs as soon as the commit's bytes are in the
    /// file, before its fsync: what a process killed from then on (SIGKILL, a crash) finds after
    /// its restart, though a power cut within the fsync (milliseconds) may still take it. For an
    /// outbox row, which a notification waits for before it is sent.
    pub fn put_written(&self, rows: Vec<Row>, then: Then) {
        self.send_rows(rows, then, true);
    }

    fn send_rows(&self, rows: Vec<Row>, then: Then, written: bool) {
        let msg = Msg::Rows {
            rows,
            then,
            written,
        };
        if let Err(mpsc::SendError(Msg::Rows { then, .. })) = self.tx.send(msg) {
            then(false);
        }
    }

    /// Tells the writer that `source` has a journal to take. Returns `false` when the writer has
    /// stopped: nothing will be taken, and the caller shows its values as they are.
    pub fn notify(&self, source: Arc<dyn Pending>) -> bool {
        !self.is_closed() && self.tx.send(Msg::Ready(source)).is_ok()
    }

    /// Whether the writer has stopped taking journals (after [`WriterHandle::stop`]). A source
    /// whose notice may have come too late checks this, so its values are not held back for good.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Commits everything queued so far and stops the thread (closing the store, so another
    /// process or a restarted sidecar can open it). Returns once done, or after `deadline`.
    pub fn stop(&self, deadline: Duration) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Stop(tx)).is_ok() {
            let _ = rx.recv_timeout(deadline);
        }
    }
}

/// Starts the writer thread that owns `dir`. `observe` is told about every commit and failure.
pub fn start_writer(
    dir: DataDir,
    observe: Arc<dyn Fn(WriterEvent) + Send + Sync>,
) -> io::Result<WriterHandle> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let closed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&closed);
    std::thread::Builder::new()
        .name("ocx-datadir".into())
        .spawn(move || writer_loop(dir, rx, observe, &flag))?;
    Ok(WriterHandle { tx, closed })
}

/// After the writer stopped: whatever was still queued is not committed, but its continuations
/// run (`false`), so its values are shown rather than held back.
fn release_queued(rx: &mpsc::Receiver<Msg>) {
    while let Ok(msg) = rx.try_recv() {
        match msg {
            Msg::Job(job) => (job.then)(false),
            Msg::Rows { then, .. } => then(false),
            Msg::Ready(source) => {
                if let Some(job) = source.take() {
                    (job.then)(false);
                }
            }
            Msg::Stop(reply) => {
                let _ = reply.send(());
            }
        }
    }
}

fn writer_loop(
    dir: DataDir,
    rx: mpsc::Receiver<Msg>,
    observe: Arc<dyn Fn(WriterEvent) + Send + Sync>,
    closed: &AtomicBool,
) {
    // Journals whose commit failed, merged per account, retried with a capped backoff.
    let mut retry: BTreeMap<Arc<str>, Journal> = BTreeMap::new();
    let mut retry_rows: RowSet = BTreeMap::new();
    let mut retry_delay = RETRY_INITIAL;
    loop {
        let first = if retry.is_empty() && retry_rows.is_empty() {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(retry_delay) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Last chance for what is pending.
                    let _ = dir.commit_all(&retry, &retry_rows, None);
                    return;
                }
            }
        };
        // Only a notification about to be sent waits on a commit (its outbox row, put with
        // `put_written`), and that one is committed at once. Everything else (account journals,
        // alert states, the notification log) lingers up to COMMIT_PACE for more: a burst costs
        // one commit, and an outbox row that follows an event by a millisecond or two finds the
        // writer free (its commit takes that event's journal along) instead of inside the fsync
        // of that journal's own commit, which the notification then waited out (3–4 ms on the
        // development machine's disk).
        let mut held: Vec<Msg> = Vec::new();
        if let Some(m) = first {
            let linger = !urgent(&m);
            held.push(m);
            #[allow(clippy::disallowed_methods)]
            let until = std::time::Instant::now() + COMMIT_PACE;
            #[allow(clippy::disallowed_methods)]
            while linger && held.len() < MAX_GROUP {
                let left = until.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(m) => {
                        let done = urgent(&m);
                        held.push(m);
                        if done {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        let mut thens: Vec<Then> = Vec::new();
        // Continuations run when the commit's bytes are in the file, before its fsync.
        let mut early: Vec<Then> = Vec::new();
        let mut group = std::mem::take(&mut retry);
        let mut rows = std::mem::take(&mut retry_rows);
        let mut stop: Option<mpsc::Sender<()>> = None;
        // Sources are taken from once the waiting messages are read, right before the commit:
        // taken from as each notice arrived, a busy source (which notifies again as soon as it
        // was taken from) was taken from every few events, each time under its lock.
        let mut sources: Vec<Arc<dyn Pending>> = Vec::new();
        let mut held = held.into_iter();
        let mut next = held.next();
        while let Some(msg) = next {
            match msg {
                Msg::Job(Job {
                    account,
                    journal,
                    then,
                }) => {
                    group.entry(account).or_default().merge(journal);
                    thens.push(then);
                }
                Msg::Rows {
                    rows: new,
                    then,
                    written,
                } => {
                    for r in new {
                        rows.insert((r.kind, r.id), r.value);
                    }
                    if written {
                        early.push(then);
                    } else {
                        thens.push(then);
                    }
                }
                Msg::Ready(source) => sources.push(source),
                Msg::Stop(reply) => {
                    stop = Some(reply);
                    break;
                }
            }
            if thens.len() + early.len() + sources.len() >= MAX_GROUP {
                break;
            }
            next = held.next().or_else(|| rx.try_recv().ok());
        }
        for source in sources {
            if let Some(Job {
                account,
                journal,
                then,
            }) = source.take()
            {
                group.entry(account).or_default().merge(journal);
                thens.push(then);
            }
        }
        if !group.is_empty() || !rows.is_empty() {
            let jobs = thens.len() + early.len();
            // Shared with the hook, so whatever it did not run (a failed commit, or one that
            // wrote no header) runs below, with the commit's result.
            let early = Arc::new(std::sync::Mutex::new(early));
            let hook: Option<Hook> = (!lock_early(&early).is_empty()).then(|| {
                let early = Arc::clone(&early);
                Box::new(move || {
                    for then in std::mem::take(&mut *lock_early(&early)) {
                        then(true);
                    }
                }) as Hook
            });
            // The writer thread is the IO edge: wall time here measures the fsync.
            #[allow(clippy::disallowed_methods)]
            let started = std::time::Instant::now();
            let result = dir.commit_all(&group, &rows, hook);
            for then in std::mem::take(&mut *lock_early(&early)) {
                then(result.is_ok());
            }
            match result {
                Ok(()) => {
                    retry_delay = RETRY_INITIAL;
                    observe(WriterEvent::Committed {
                        jobs,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                    for then in thens {
                        then(true);
                    }
                }
                Err(e) => {
                    observe(WriterEvent::Failed {
                        error: e.to_string(),
                        pending: group.len(),
                    });
                    for then in thens {
                        then(false);
                    }
                    retry = group;
                    retry_rows = rows;
                    retry_delay = (retry_delay * 2).min(RETRY_MAX);
                }
            }
        }
        if let Some(reply) = stop {
            // From now on sources show their values at once; what they queued meanwhile is
            // released, not lost.
            closed.store(true, Ordering::Release);
            release_queued(&rx);
            // Close the store before replying, so whoever waits can open it again at once.
            drop(dir);
            let _ = reply.send(());
            return;
        }
    }
}

/// Whether `msg` ends the writer's wait for more: an outbox row, or a stop.
fn urgent(msg: &Msg) -> bool {
    matches!(msg, Msg::Rows { written: true, .. } | Msg::Stop(_))
}

fn lock_early(m: &std::sync::Mutex<Vec<Then>>) -> std::sync::MutexGuard<'_, Vec<Then>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
