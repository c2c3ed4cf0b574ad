//! Config cases, one file each in `testdata/`, each stating the exact result it expects.
//!
//! A case's leading comment lines say what must happen: `# expect: ok`, or one
//! `# expect-error: <line>` per error line, in order. Paths in errors are the file name.

use super::*;

#[test]
fn every_testdata_case_gives_exactly_its_expected_result() {
    crate::testdata::check_dir("src/config/testdata", 8, |text, name| {
        parse_str(text, name)
            .and_then(|raw| Settings::build(raw, Overrides::default(), name))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
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

#[test]
fn the_api_token_file_is_read_trimmed_and_an_empty_one_refused() {
    let dir = std::env::temp_dir().join(format!("ocx-sentinel-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (token, empty) = (dir.join("token"), dir.join("empty"));
    std::fs::write(&token, "s3cret-token\n").unwrap();
    std::fs::write(&empty, "\n").unwrap();
    let build = |path: &std::path::Path| {
        let yaml = format!("api_token_file: {}\n", path.display());
        Settings::build(
            parse_str(&yaml, "f.yml").unwrap(),
            Overrides::default(),
            "f.yml",
        )
    };
    let s = build(&token).unwrap();
    assert_eq!(s.api_token, Some(Secret::new("s3cret-token")));
    assert!(!format!("{s:?}").contains("s3cret"));
    let err = build(&empty).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("f.yml:1:17: api_token_file: {} is empty", empty.display())
    );
    assert_eq!(
        Settings::build(RawConfig::default(), Overrides::default(), "f")
            .unwrap()
            .api_token,
        None,
        "no file, no token: changes stay open"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn alertmanagers_become_push_urls_with_their_auth() {
    let dir = std::env::temp_dir().join(format!("ocx-sentinel-am-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "from-file\n").unwrap();
    let yaml = format!(
        "alertmanagers:\n  - static_configs: [{{targets: ['a:9093', 'b:9093']}}]\n    path_prefix: am/\n    basic_auth: {{username: u, password_file: {}}}\n  - scheme: https\n    timeout: 3s\n    static_configs: [{{targets: [c]}}]\n    authorization: {{credentials: tok}}\n",
        pw.display()
    );
    let s = Settings::build(
        parse_str(&yaml, "f.yml").unwrap(),
        Overrides::default(),
        "f.yml",
    )
    .unwrap();
    let f = &s.forward;
    assert_eq!(f.resend_delay, Duration::from_secs(60));
    let urls: Vec<&str> = f.alertmanagers.iter().map(|a| a.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://a:9093/am/api/v2/alerts",
            "http://b:9093/am/api/v2/alerts",
            "https://c/api/v2/alerts"
        ]
    );
    assert_eq!(f.alertmanagers[0].timeout, Duration::from_secs(10));
    assert_eq!(
        f.alertmanagers[0].auth,
        ForwardAuth::Basic {
            username: "u".into(),
            password: Secret::new("from-file")
        }
    );
    assert_eq!(f.alertmanagers[2].timeout, Duration::from_secs(3));
    assert_eq!(
        f.alertmanagers[2].auth,
        ForwardAuth::Authorization {
            scheme: "Bearer".into(),
            credentials: Secret::new("tok")
        }
    );
    assert!(!format!("{s:?}").contains("from-file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn web_config_file_is_relative_to_the_config_and_the_flag_replaces_it() {
    let dir = std::env::temp_dir().join(format!("ocx-sentinel-cfg-web-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hash = "$2b$04$NWtCYtfSLU2NbwDdNCXGbOkG7VRnIamCk0xHtzqHNgqudt/3tBQVC";
    std::fs::write(
        dir.join("web.yml"),
        format!("basic_auth_users:\n  prometheus: {hash}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("plain.yml"), "").unwrap();
    std::fs::write(dir.join("broken.yml"), "basic_auth_users:\n  x: y\n").unwrap();
    let yaml =
        "web_config_file: web.yml\nlistener:\n  header_read_timeout: 300ms\n  max_connections: 7\n";
    let flags = Overrides {
        config_path: Some(dir.join("sentinel.yml")),
        ..Overrides::default()
    };
    let s = Settings::build(parse_str(yaml, "f.yml").unwrap(), flags.clone(), "f.yml").unwrap();
    let web = s.web.config.as_ref().expect("a web config");
    assert_eq!(web.path, dir.join("web.yml"));
    assert!(web.loaded.basic_auth() && !web.loaded.tls());
    assert_eq!(s.web.limits.header_read_timeout, Duration::from_millis(300));
    assert_eq!(s.web.limits.max_connections, 7);
    assert_eq!(
        s.web.limits.idle_timeout,
        crate::web::ListenerLimits::default().idle_timeout
    );
    // The flag wins, and is used as given (relative to the working directory).
    let s = Settings::build(
        parse_str(yaml, "f.yml").unwrap(),
        Overrides {
            web_config_file: Some(dir.join("plain.yml")),
            ..flags.clone()
        },
        "f.yml",
    )
    .unwrap();
    assert!(!s.web.config.unwrap().loaded.basic_auth());
    // A broken file stops the start with its own file:line.
    let err = Settings::build(
        parse_str("web_config_file: broken.yml\n", "f.yml").unwrap(),
        flags,
        "f.yml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!(
            "{}:2:6: basic_auth_users.x: not a bcrypt hash",
            dir.join("broken.yml").display()
        )),
        "{err}"
    );
    // No file: no web config, the default limits.
    let s = Settings::build(RawConfig::default(), Overrides::default(), "flags").unwrap();
    assert!(s.web.config.is_none());
    assert_eq!(s.web.limits, crate::web::ListenerLimits::default());
    let _ = std::fs::remove_dir_all(&dir);
}
