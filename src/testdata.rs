//! The house pattern for data-driven error tests: one case a file, whose leading comment lines
//! state the exact result (`# expect: ok`, or one `# expect-error: <line>` per error line, in order).

use std::path::Path;

/// Checks every `*.yml` case in `dir` (relative to the crate root; at least `min_cases` of them):
/// `run(text, file name)` gives the error text, one line per error, or `Ok`. Panics listing every
/// case whose result differs.
pub(crate) fn check_dir(
    dir: &str,
    min_cases: usize,
    run: impl Fn(&str, &str) -> Result<(), String>,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata dir exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    entries.sort();
    assert!(
        entries.len() >= min_cases,
        "expected the cases in {}",
        dir.display()
    );
    let failures: Vec<String> = entries
        .iter()
        .filter_map(|p| check_case(p, &run).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn check_case(path: &Path, run: &impl Fn(&str, &str) -> Result<(), String>) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    let mut expect_ok = false;
    let mut expected = Vec::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if line.trim() == "# expect: ok" {
            expect_ok = true;
        } else if let Some(e) = line.strip_prefix("# expect-error: ") {
            expected.push(e.to_string());
        }
    }
    if !expect_ok && expected.is_empty() {
        return Err(format!("{name}: states no expectation"));
    }
    match (run(&text, name), expect_ok) {
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => Err(format!("{name}: expected errors {expected:?}, got ok")),
        (Err(e), true) => Err(format!("{name}: expected ok, got:\n{e}")),
        (Err(e), false) => {
            let got: Vec<String> = e.lines().map(str::to_string).collect();
            if got == expected {
                Ok(())
            } else {
                Err(format!(
                    "{name}:\n  expected {expected:#?}\n  got      {got:#?}"
                ))
            }
        }
    }
}
