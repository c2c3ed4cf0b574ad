//! Tests of the data dir: round trips, corrupt files moved aside, a locked store, group commits.
#![allow(clippy::field_reassign_with_default)] // reason: journals are built field by field, as a fold fills them

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;

use super::*;
use crate::model::{Liquidity, Side};
use crate::state::durable::{DedupCounts, Journal};
use crate::state::{FillKey, FillTotals, RealizedTotals};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn tmp() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ocx-datadir-test-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn journal() -> Journal {
    let mut j = Journal::default();
    j.new_keys = vec![
        (0, "i\u{1f}t-0".into()),
        (1, "i\u{1f}t-1".into()),
        (2, "i\u{1f}t-2".into()),
    ];
    j.fills.insert(
        FillKey {
            market: "BTC-PERP".into(),
            side: Side::Buy,
            liquidity: Liquidity::Maker,
        },
        FillTotals {
            count: 3,
            quantity: d("1.5"),
            notional: d("150.75"),
            last_created_at_ms: Some(42),
        },
    );
    j.realized.insert(
        "BTC-PERP".into(),
        RealizedTotals {
            profit: d("2"),
            loss: d("0.5"),
        },
    );
    j.bases
        .insert("p1".into(), Some(("BTC-PERP".into(), Some(d("7")))));
    j.new_markets = vec![(0, "BTC-PERP".into()), (1, "ETH-PERP".into())];
    j.dedup = Some(DedupCounts {
        snapshot_replay: 4,
        duplicate: 1,
    });
    j.watch_start_ms = Some(1000);
    j
}

fn group(account: &str, j: Journal) -> BTreeMap<Arc<str>, Journal> {
    BTreeMap::from([(Arc::from(account), j)])
}

#[test]
fn what_is_committed_is_loaded_after_reopening() {
    let dir = tmp();
    {
        let (dd, opened) = DataDir::open(&dir).unwrap();
        assert_eq!(opened, Opened::Fresh);
        dd.commit(&group("a", journal())).unwrap();
        // Another account's rows stay apart.
        let mut other = Journal::default();
        other.new_keys = vec![(0, "i\u{1f}zzz".into())];
        dd.commit(&group("b", other)).unwrap();
    }
    let (dd, opened) = DataDir::open(&dir).unwrap();
    assert_eq!(opened, Opened::Existing);
    let (image, unreadable) = dd.load_account("a").unwrap();
    assert_eq!(unreadable, 0);
    assert_eq!(image.keys.len(), 3);
    assert_eq!(image.keys[2], (2, "i\u{1f}t-2".to_string()));
    assert_eq!(image.fills.len(), 1);
    assert_eq!(image.fills[0].1.notional, d("150.75"));
    assert_eq!(image.realized[0].1.loss, d("0.5"));
    assert_eq!(
        image.bases,
        vec![("p1".to_string(), "BTC-PERP".to_string(), Some(d("7")))]
    );
    assert_eq!(image.markets, vec!["BTC-PERP", "ETH-PERP"]);
    assert_eq!(image.dedup.snapshot_replay, 4);
    assert_eq!(image.watch_start_ms, Some(1000));
    let (b, _) = dd.load_account("b").unwrap();
    assert_eq!(b.keys, vec![(0, "i\u{1f}zzz".to_string())]);
    assert!(dd.load_account("nobody").unwrap().0.is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_key_floor_forgets_older_keys_and_a_removed_base_goes() {
    let dir = tmp();
    let (dd, _) = DataDir::open(&dir).unwrap();
    dd.commit(&group("a", journal())).unwrap();
    let mut later = Journal::default();
    later.new_keys = vec![(3, "i\u{1f}t-3".into())];
    later.key_floor = Some(2);
    later.bases.insert("p1".into(), None);
    dd.commit(&group("a", later)).unwrap();
    let (image, _) = dd.load_account("a").unwrap();
    let serials: Vec<u64> = image.keys.iter().map(|(s, _)| *s).collect();
    assert_eq!(serials, vec![2, 3]);
    assert!(image.bases.is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_garbage_store_is_moved_aside_and_a_fresh_one_created() {
    let dir = tmp();
    std::fs::write(
        dir.join(FILE_NAME),
        b"this is not a redb file at all, just bytes\n".repeat(100),
    )
    .unwrap();
    let (dd, opened) = DataDir::open(&dir).unwrap();
    let Opened::MovedAside { to, reason } = opened else {
        panic!("expected the garbage to be moved aside, got {opened:?}");
    };
    assert!(
        to.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("sentinel.redb.corrupt-")
    );
    assert!(
        std::fs::read(&to)
            .unwrap()
            .starts_with(b"this is not a redb file")
    );
    assert!(!reason.is_empty());
    // The fresh store works.
    dd.commit(&group("a", journal())).unwrap();
    assert_eq!(dd.load_account("a").unwrap().0.keys.len(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_truncated_store_is_moved_aside() {
    let dir = tmp();
    {
        let (dd, _) = DataDir::open(&dir).unwrap();
        dd.commit(&group("a", journal())).unwrap();
    }
    let path = dir.join(FILE_NAME);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let (dd, opened) = DataDir::open(&dir).unwrap();
    assert!(matches!(opened, Opened::MovedAside { .. }), "{opened:?}");
    assert!(dd.load_account("a").unwrap().0.is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_store_held_by_a_live_process_is_an_error_not_moved_aside() {
    let dir = tmp();
    let (_held, _) = DataDir::open(&dir).unwrap();
    let err = DataDir::open(&dir).unwrap_err();
    assert!(matches!(err, DataDirError::InUse { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("in use by another ocx-sentinel process")
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing moved aside"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_data_dir_that_is_a_file_is_an_error() {
    let dir = tmp();
    let file = dir.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = DataDir::open(&file).unwrap_err();
    assert!(matches!(err, DataDirError::Create { .. }), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unreadable_rows_are_skipped_and_counted() {
    let dir = tmp();
    let (dd, _) = DataDir::open(&dir).unwrap();
    {
        let tx = dd.db.begin_write().unwrap();
        {
            let mut rows = tx.open_table(ACCOUNT_ROWS).unwrap();
            rows.insert(("a", KIND_FILL, "nonsense"), "1\u{1f}2\u{1f}3\u{1f}")
                .unwrap();
            rows.insert(("a", KIND_REALIZED, "M"), "not a pair")
                .unwrap();
            rows.insert(("a", "from-a-newer-build", "x"), "y").unwrap();
        }
        tx.commit().unwrap();
    }
    dd.commit(&group("a", journal())).unwrap();
    let (image, unreadable) = dd.load_account("a").unwrap();
    assert_eq!(unreadable, 3);
    assert_eq!(image.fills.len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_writer_commits_in_groups_runs_continuations_in_order_and_stops_cleanly() {
    let dir = tmp();
    let (dd, _) = DataDir::open(&dir).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let writer = start_writer(dd, Arc::new(move |e| ev.lock().unwrap().push(e))).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..200u64 {
        let mut j = Journal::default();
        j.new_keys = vec![(i, format!("i\u{1f}t-{i}").into())];
        let o = order.clone();
        writer.submit(
            Arc::from("a"),
            j,
            Box::new(move |ok| o.lock().unwrap().push((i, ok))),
        );
    }
    writer.stop(Duration::from_secs(10));
    let order = order.lock().unwrap().clone();
    assert_eq!(order, (0..200).map(|i| (i, true)).collect::<Vec<_>>());
    let events = events.lock().unwrap();
    let committed: usize = events
        .iter()
        .map(|e| match e {
            WriterEvent::Committed { jobs, .. } => *jobs,
            WriterEvent::Failed { .. } => panic!("no failure expected"),
        })
        .sum();
    assert_eq!(committed, 200);
    assert!(
        events.len() < 200,
        "200 journals sent at once go in fewer than 200 commits, got {}",
        events.len()
    );
    // Stopped: the store is closed and can be opened again; a late submit runs at once.
    let (dd, _) = DataDir::open(&dir).unwrap();
    assert_eq!(dd.load_account("a").unwrap().0.keys.len(), 200);
    let ran = Arc::new(Mutex::new(None));
    let r = ran.clone();
    writer.submit(
        Arc::from("a"),
        Journal::default(),
        Box::new(move |ok| *r.lock().unwrap() = Some(ok)),
    );
    assert_eq!(*ran.lock().unwrap(), Some(false));
    std::fs::remove_dir_all(dir).unwrap();
}

// Alerting rows (alert states, silences, the notification log, the outbox) go through the same
// writer and survive a reopen; a later value of the same row wins, and None deletes it.
#[test]
fn alerting_rows_commit_through_the_writer_and_survive_a_reopen() {
    let dir = tmp();
    let (dd, _) = DataDir::open(&dir).unwrap();
    let w = start_writer(dd, Arc::new(|_| {})).unwrap();
    let row = |kind, id: &str, value: Option<&str>| Row {
        kind,
        id: id.into(),
        value: value.map(str::to_string),
    };
    let (tx, rx) = mpsc::channel();
    let done = move |tx: mpsc::Sender<bool>| -> Then { Box::new(move |ok| tx.send(ok).unwrap()) };
    w.put(
        vec![
            row("outbox", "a", Some("1")),
            row("outbox", "b", Some("2")),
            row("nflog", "a", Some("x")),
        ],
        done(tx.clone()),
    );
    w.put(
        vec![row("outbox", "a", None), row("outbox", "b", Some("3"))],
        done(tx.clone()),
    );
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    w.stop(Duration::from_secs(10));
    let (dd, opened) = DataDir::open(&dir).unwrap();
    assert_eq!(opened, Opened::Existing);
    assert_eq!(
        dd.load_rows("outbox").unwrap(),
        vec![("b".into(), "3".into())]
    );
    assert_eq!(
        dd.load_rows("nflog").unwrap(),
        vec![("a".into(), "x".into())]
    );
    assert!(dd.load_rows("silences").unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

// A full disk: the commit fails, the caller hears `false` at once (its values stay live), the
// failure is reported, and the rows are retried until the disk takes them (1s backoff first).
#[test]
fn failed_commits_are_reported_and_retried_until_the_disk_takes_them() {
    use std::sync::atomic::AtomicBool;
    let dir = tmp();
    let (mut dd, _) = DataDir::open(&dir).unwrap();
    let full = Arc::new(AtomicBool::new(true));
    dd.fail_when(full.clone());
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let w = start_writer(
        dd,
        Arc::new(move |e| {
            seen.lock()
                .unwrap()
                .push(matches!(e, WriterEvent::Failed { .. }));
        }),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    w.put(
        vec![Row {
            kind: "outbox",
            id: "a".into(),
            value: Some("1".into()),
        }],
        Box::new(move |ok| tx.send(ok).unwrap()),
    );
    assert!(
        !rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        "told at once"
    );
    // A row whose caller waits only for its bytes to be written hears the failure too.
    let (tx, rx) = mpsc::channel();
    w.put_written(
        vec![Row {
            kind: "outbox",
            id: "b".into(),
            value: Some("2".into()),
        }],
        Box::new(move |ok| tx.send(ok).unwrap()),
    );
    assert!(
        !rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        "told at once"
    );
    assert!(events.lock().unwrap().iter().all(|failed| *failed));
    full.store(false, Ordering::SeqCst);
    let deadline = std::time::Duration::from_secs(10);
    let start = std::time::SystemTime::now();
    while !events.lock().unwrap().contains(&false) {
        assert!(
            start.elapsed().unwrap() < deadline,
            "retried once the disk took it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    w.stop(Duration::from_secs(10));
    let (dd, _) = DataDir::open(&dir).unwrap();
    assert_eq!(
        dd.load_rows("outbox").unwrap(),
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Set in the child process of the next test: the data dir it writes to before it dies.
const KILLED_CHILD_DIR: &str = "OCX_DATADIR_TEST_KILLED_CHILD_DIR";

// `put_written` tells its caller the row is in the store before the commit's fsync: the point
// where a notification goes out. A process that dies right there (the child aborts inside the
// continuation, on the writer thread, while redb is about to fsync) must find the row on its
// next start. The child is this test binary, run again for this one test.
#[test]
fn a_row_put_written_survives_a_process_killed_before_the_fsync() {
    if let Some(dir) = std::env::var_os(KILLED_CHILD_DIR) {
        let (dd, _) = DataDir::open(Path::new(&dir)).unwrap();
        let w = start_writer(dd, Arc::new(|_| {})).unwrap();
        w.put(
            vec![Row {
                kind: "nflog",
                id: "x".into(),
                value: Some("1".into()),
            }],
            Box::new(|_| {}),
        );
        w.put_written(
            vec![Row {
                kind: "outbox",
                id: "n1".into(),
                value: Some("firing".into()),
            }],
            Box::new(|ok| {
                assert!(ok);
                // As abruptly as SIGKILL: no destructor, no flush, no close of the store.
                std::process::abort();
            }),
        );
        std::thread::sleep(Duration::from_secs(10));
        unreachable!("the continuation aborts the process");
    }
    let dir = tmp();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "datadir::tests::a_row_put_written_survives_a_process_killed_before_the_fsync",
            "--test-threads=1",
        ])
        .env(KILLED_CHILD_DIR, &dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        !status.success(),
        "the child died in the continuation: {status}"
    );
    let (dd, opened) = DataDir::open(&dir).unwrap();
    assert_eq!(
        opened,
        Opened::Existing,
        "not moved aside: the store is whole"
    );
    assert_eq!(
        dd.load_rows("outbox").unwrap(),
        vec![("n1".into(), "firing".into())]
    );
    assert_eq!(
        dd.load_rows("nflog").unwrap(),
        vec![("x".into(), "1".into())]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
