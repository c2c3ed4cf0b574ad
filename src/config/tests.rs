//! Config cases, one file each in `testdata/`, each stating the exact result it expects.
//!
//! A case's leading comment lines say what must happen: `# expect: ok`, or one
//! `# expect-error: <line>` per error line, in order. Paths in errors are the file name.

use std::path::Path;

use super::*;

fn run_case(path: &Path) -> Result<(), String> {
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
    let got =
        parse_str(&text, name).and_then(|raw| Settings::build(raw, Overrides::default(), name));
    match (got, expect_ok) {
        (Ok(_), true) => Ok(()),
        (Ok(_), false) => Err(format!("{name}: expected errors {expected:?}, got ok")),
        (Err(e), true) => Err(format!("{name}: expected ok, got:\n{e}")),
        (Err(e), false) => {
            let got: Vec<String> = e.to_string().lines().map(str::to_string).collect();
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

#[test]
fn every_testdata_case_gives_exactly_its_expected_result() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/testdata");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata dir exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 8,
        "expected the config cases in {}",
        dir.display()
    );
    let failures: Vec<String> = entries.iter().filter_map(|p| run_case(p).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn flags_alone_are_enough_and_override_the_file() {
    let flags = Overrides {
        api_base: Some("http://127.0.0.1:1/".into()),
        api_key: Some(Secret::new("k")),
        markets: vec!["ETH-PERP".into(), "BTC-PERP".into(), "ETH-PERP".into()],
        interval_ms: Some(500),
        listen: Some("127.0.0.1:0".into()),
        ..Overrides::default()
    };
    let s = Settings::build(RawConfig::default(), flags.clone(), "flags").unwrap();
    assert_eq!(s.accounts.len(), 1);
    let a = &s.accounts[0];
    assert_eq!(a.name, "default");
    assert_eq!(a.api_base, "http://127.0.0.1:1");
    assert_eq!(a.markets, ["BTC-PERP", "ETH-PERP"]);
    assert_eq!(a.interval_ms, Some(500));
    assert_eq!(
        a.auth,
        Auth::ApiKey {
            key: Secret::new("k"),
            header: KeyHeader::XApiKey
        }
    );

    let raw = parse_str(
        "api_base: https://file\naccounts:\n  - name: main\n    interval_ms: 1000\n",
        "f.yml",
    )
    .unwrap();
    let s = Settings::build(raw, flags, "f.yml").unwrap();
    assert_eq!(s.accounts[0].name, "main");
    assert_eq!(s.accounts[0].interval_ms, Some(500));
    assert_eq!(s.accounts[0].api_base, "http://127.0.0.1:1");
}

#[test]
fn several_accounts_need_account_to_take_per_account_flags() {
    let yaml = "accounts:\n  - name: a\n  - name: b\n";
    let flags = Overrides {
        api_key: Some(Secret::new("k")),
        ..Overrides::default()
    };
    let err =
        Settings::build(parse_str(yaml, "f.yml").unwrap(), flags.clone(), "f.yml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.yml defines 2 accounts: name the one the flags apply to with --account"
    );
    let flags = Overrides {
        account: Some("b".into()),
        ..flags
    };
    let s = Settings::build(parse_str(yaml, "f.yml").unwrap(), flags, "f.yml").unwrap();
    assert_eq!(s.accounts[0].auth, Auth::None);
    assert!(matches!(s.accounts[1].auth, Auth::ApiKey { .. }));
}

#[test]
fn keys_are_trimmed_so_a_pasted_newline_does_not_break_the_header() {
    let flags = Overrides {
        api_key: Some(Secret::new(" ocx_sk_abc\n")),
        ..Overrides::default()
    };
    let s = Settings::build(RawConfig::default(), flags, "flags").unwrap();
    assert_eq!(
        s.accounts[0].auth,
        Auth::ApiKey {
            key: Secret::new("ocx_sk_abc"),
            header: KeyHeader::XApiKey
        }
    );
}

#[test]
fn secrets_never_print() {
    let s = Secret::new("ocx_sk_supersecret");
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:?}"), "Secret(***)");
    let raw = parse_str(
        "accounts:\n  - api_key: ocx_sk_supersecret\n    session_cookie: abc\n",
        "f.yml",
    )
    .unwrap();
    let err = Settings::build(raw, Overrides::default(), "f.yml")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("supersecret"), "{err}");
    let raw = parse_str("accounts:\n  - api_key: ocx_sk_supersecret\n", "f.yml").unwrap();
    let settings = Settings::build(raw, Overrides::default(), "f.yml").unwrap();
    assert!(!format!("{settings:?}").contains("supersecret"));
}

#[test]
fn key_files_are_read_and_trimmed() {
    let dir = std::env::temp_dir().join(format!("ocx-sentinel-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("key");
    std::fs::write(&f, "ocx_sk_fromfile\n").unwrap();
    let flags = Overrides {
        api_key_file: Some(f.clone()),
        ..Overrides::default()
    };
    let s = Settings::build(RawConfig::default(), flags, "flags").unwrap();
    assert_eq!(
        s.accounts[0].auth,
        Auth::ApiKey {
            key: Secret::new("ocx_sk_fromfile"),
            header: KeyHeader::XApiKey
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
}
