//! Data-driven fold tests: each `tests/fixtures/<name>.sse` is raw SSE text as the exchange sends
//! it, first line `: scope=user` or `: scope=market <marketId>`; folding its snapshot, delta and
//! update events in order into `Account::new(100_000)` must give `<name>.expected.json` (the
//! pretty-printed `Account::summary()`). Error events and comments are ignored; sequence numbers
//! are not checked here.
//!
//! `UPDATE_FIXTURES=1 cargo test --test fold_fixtures` rewrites the expected files; review the
//! diff by hand, the expected values must follow the documented fold rules.

use std::fs;
use std::path::{Path, PathBuf};

use ocx_sentinel::model::EventKind;
use ocx_sentinel::source::sse::{SseDecoder, SseEvent, SseItem};
use ocx_sentinel::source::wire::parse_envelope;
use ocx_sentinel::state::{Account, Scope};

const SCOPE_PREFIX: &str = ": scope=";

#[test]
fn fold_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let update = std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| v == "1");
    let fixtures = fixture_paths(&dir);
    assert!(
        fixtures.len() >= 5,
        "expected at least 5 fold fixtures in {}, found {}",
        dir.display(),
        fixtures.len()
    );
    let mut failures = Vec::new();
    for sse in &fixtures {
        let name = sse.file_stem().unwrap().to_string_lossy().into_owned();
        let actual = match fold(sse) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let expected_path = sse.with_extension("expected.json");
        if update {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Ok(expected) if expected.replace("\r\n", "\n").trim_end() == actual.trim_end() => {}
            Ok(expected) => failures.push(format!(
                "{name}: summary differs from {} (- expected, + actual):\n{}",
                expected_path.display(),
                diff(&expected.replace("\r\n", "\n"), &actual)
            )),
            Err(e) => failures.push(format!(
                "{name}: cannot read {}: {e}; actual summary:\n{actual}",
                expected_path.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fold fixture(s) failed (UPDATE_FIXTURES=1 rewrites the expected files):\n\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n\n")
    );
}

/// The `.sse` files that are fold fixtures: those opening with a scope line. A `.sse` file beside
/// an `.expected.json` without one is a broken fixture and is kept so that `fold` reports it.
fn fixture_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sse"))
        .filter(|p| {
            let opens_with_scope = fs::read_to_string(p)
                .map(|text| text.starts_with(SCOPE_PREFIX))
                .unwrap_or(false);
            opens_with_scope || p.with_extension("expected.json").exists()
        })
        .collect();
    paths.sort();
    paths
}

enum FixtureScope {
    User,
    Market(String),
}

fn parse_scope(text: &str) -> Result<FixtureScope, String> {
    let first = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    let Some(rest) = first.strip_prefix(SCOPE_PREFIX) else {
        return Err(format!(
            "first line must be `: scope=user` or `: scope=market <id>`, got {first:?}"
        ));
    };
    match rest.split_once(' ') {
        None if rest == "user" => Ok(FixtureScope::User),
        Some(("market", id)) if !id.trim().is_empty() => {
            Ok(FixtureScope::Market(id.trim().to_owned()))
        }
        _ => Err(format!("unknown scope {rest:?}")),
    }
}

/// Folds one fixture and returns the pretty summary with a trailing newline.
fn fold(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes);
    let scope = parse_scope(&text)?;
    let scope = match &scope {
        FixtureScope::User => Scope::User,
        FixtureScope::Market(id) => Scope::Market(id),
    };
    let mut decoder = SseDecoder::default();
    let mut items = Vec::new();
    decoder.feed(&bytes, &mut items);
    decoder.finish(&mut items);

    let mut account = Account::new(100_000);
    let mut events = 0;
    for item in items {
        let SseEvent { event, data, .. } = match item {
            SseItem::Event(ev) => ev,
            SseItem::Comment(_) | SseItem::Retry(_) => continue,
            SseItem::Error(e) => return Err(format!("sse decode error: {e:?}")),
        };
        if event == "error" {
            continue;
        }
        events += 1;
        let envelope =
            parse_envelope(&data).map_err(|e| format!("event #{events} ({event}): {e}"))?;
        let kind = match event.as_str() {
            "snapshot" => EventKind::Snapshot,
            "delta" | "update" => EventKind::Delta,
            "" | "message" => envelope
                .kind
                .ok_or_else(|| format!("event #{events}: no event name and no eventType"))?,
            other => return Err(format!("event #{events}: unexpected event name {other:?}")),
        };
        match kind {
            EventKind::Snapshot => account.apply_snapshot(scope, &envelope.payload),
            EventKind::Delta => account.apply_delta(scope, &envelope.payload),
        };
    }
    if events == 0 {
        return Err("no events decoded".into());
    }
    let mut json = serde_json::to_string_pretty(&account.summary()).map_err(|e| e.to_string())?;
    json.push('\n');
    Ok(json)
}

/// A line diff (longest common subsequence) with two lines of context around each change.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|(op, _)| *op != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near_change(k) {
            if skipped {
                out.push_str("  ...\n");
                skipped = false;
            }
            out.push_str(&format!("{op} {line}\n"));
        } else {
            skipped = true;
        }
    }
    out
}
