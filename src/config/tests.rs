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

#[test]
fn health_listen_is_off_by_default_and_the_flag_replaces_the_key() {
    let s = Settings::build(RawConfig::default(), Overrides::default(), "flags").unwrap();
    assert_eq!(s.web.health_listen, None);
    let yaml = "health_listen: 0.0.0.0:9478\n";
    let s = Settings::build(
        parse_str(yaml, "f.yml").unwrap(),
        Overrides::default(),
        "f.yml",
    )
    .unwrap();
    assert_eq!(s.web.health_listen, Some("0.0.0.0:9478".parse().unwrap()));
    // The flag wins over the key, as --listen over listen:, and is checked the same way.
    let flags = Overrides {
        health_listen: Some("127.0.0.1:19478".into()),
        ..Overrides::default()
    };
    let s = Settings::build(parse_str(yaml, "f.yml").unwrap(), flags, "f.yml").unwrap();
    assert_eq!(
        s.web.health_listen,
        Some("127.0.0.1:19478".parse().unwrap())
    );
    let bad = |flags: Overrides| {
        Settings::build(parse_str(yaml, "f.yml").unwrap(), flags, "f.yml")
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        bad(Overrides {
            health_listen: Some("nope".into()),
            ..Overrides::default()
        }),
        "--health-listen: \"nope\" is not an address like 127.0.0.1:9478"
    );
    // The main listener's port on the same address is refused, naming both; another address
    // on the same port, or port 0 (a fresh port each), is not.
    assert_eq!(
        bad(Overrides {
            listen: Some("127.0.0.1:9477".into()),
            health_listen: Some("127.0.0.1:9477".into()),
            ..Overrides::default()
        }),
        "--health-listen: 127.0.0.1:9477 overlaps the main listener (127.0.0.1:9477): the health listener needs a port of its own"
    );
    for (listen, health) in [
        ("127.0.0.1:9477", "127.0.0.2:9477"),
        ("127.0.0.1:0", "0.0.0.0:0"),
    ] {
        let flags = Overrides {
            listen: Some(listen.into()),
            health_listen: Some(health.into()),
            ..Overrides::default()
        };
        let s = Settings::build(RawConfig::default(), flags, "flags").unwrap();
        assert_eq!(s.web.health_listen, Some(health.parse().unwrap()));
    }
}

/// The `OTEL_*` variables as a process would have them.
fn otel(vars: &[(&str, &str)]) -> Overrides {
    Overrides {
        otel_env: otel_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
        ..Overrides::default()
    }
}

fn tracing_of(yaml: &str, flags: Overrides) -> Result<Option<TraceSettings>, String> {
    let raw = parse_str(yaml, "t.yml").map_err(|e| e.to_string())?;
    Settings::build(raw, flags, "t.yml")
        .map(|s| s.tracing)
        .map_err(|e| e.to_string())
}

#[test]
fn tracing_is_off_without_an_endpoint_whatever_else_the_environment_says() {
    assert_eq!(tracing_of("{}", Overrides::default()).unwrap(), None);
    // Variables meant for another program (or a bad one) do not stop this one while off.
    let flags = otel(&[
        ("OTEL_TRACES_SAMPLER", "nonsense"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("PATH", "/bin"),
    ]);
    assert_eq!(tracing_of("{}", flags).unwrap(), None);
    // An endpoint, but switched off.
    for off in [
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ] {
        let flags = otel(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]);
        assert_eq!(tracing_of("{}", flags).unwrap(), None, "{off:?}");
    }
}

#[test]
fn the_environment_fills_in_what_the_file_leaves_out_as_the_specification_reads_it() {
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=s%3Dcret,x-tenant=acme",
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_SERVICE_NAME", "mm-eu"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod,team=mm",
        ),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ("OTEL_BSP_SCHEDULE_DELAY", "250"),
    ];
    let t = tracing_of("{}", otel(&env)).unwrap().unwrap();
    // The generic endpoint gets the signal's path for HTTP (the default protocol).
    assert_eq!(t.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(
        t.headers,
        [
            ("api-key".to_string(), Secret::new("s=cret")),
            ("x-tenant".to_string(), Secret::new("acme"))
        ]
    );
    assert_eq!(t.timeout, Duration::from_millis(2500));
    assert_eq!(t.service_name, "mm-eu");
    assert_eq!(t.resource.len(), 2);
    assert_eq!(t.sampling, Sampling::ParentBasedRatio(0.25));
    assert_eq!(t.max_queue_size, 100);
    assert_eq!(t.max_export_batch_size, 100, "never larger than the queue");
    assert_eq!(t.schedule_delay, Duration::from_millis(250));

    // The signal's own endpoint is used as given; gRPC takes the generic one as given.
    let t = tracing_of(
        "{}",
        otel(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(t.endpoint, "http://traces:9999/custom");
    let t = tracing_of(
        "{}",
        otel(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (t.endpoint.as_str(), t.protocol),
        ("http://collector:4317", OtlpProtocol::Grpc)
    );

    // The file wins over the environment, key by key.
    let yaml = "tracing:\n  otlp:\n    endpoint: http://file:4317\n    protocol: grpc\n    headers: {x-file: one}\n  sampling_ratio: 0.5\n  service_name: from-file\n";
    let t = tracing_of(yaml, otel(&env)).unwrap().unwrap();
    assert_eq!(t.endpoint, "http://file:4317");
    assert_eq!(t.protocol, OtlpProtocol::Grpc);
    assert_eq!(t.headers, [("x-file".to_string(), Secret::new("one"))]);
    assert_eq!(t.sampling, Sampling::ParentBasedRatio(0.5));
    assert_eq!(t.service_name, "from-file");
    assert_eq!(t.timeout, Duration::from_millis(2500), "not in the file");
}

#[test]
fn bad_tracing_variables_name_the_variable_and_never_quote_a_header_value() {
    let err = tracing_of(
        "{}",
        otel(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%ZZtopsecret",
            ),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "-1"),
        ]),
    )
    .unwrap_err();
    assert!(
        err.contains(
            "environment: OTEL_EXPORTER_OTLP_HEADERS: entry 1 (authorization) has a bad %-escape"
        ),
        "{err}"
    );
    assert!(
        err.contains("environment: OTEL_TRACES_SAMPLER: \"sometimes\" is not supported"),
        "{err}"
    );
    assert!(
        err.contains("environment: OTEL_BSP_MAX_QUEUE_SIZE"),
        "{err}"
    );
    assert!(!err.contains("topsecret"), "{err}");
    // Credentials in the endpoint: refused without quoting it.
    let err = tracing_of(
        "{}",
        otel(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://user:topsecret@c:4318",
        )]),
    )
    .unwrap_err();
    assert!(
        err.contains("credentials in the URL are not allowed"),
        "{err}"
    );
    assert!(!err.contains("topsecret"), "{err}");
    // The debug form of the settings hides header values too.
    let t = tracing_of(
        "{}",
        otel(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=topsecret"),
        ]),
    )
    .unwrap();
    assert!(!format!("{t:?}").contains("topsecret"));
}

#[test]
fn credentials_in_the_api_base_are_refused_without_being_quoted() {
    let flags = Overrides {
        api_base: Some("https://mm:hunter2@api.ocx.example".into()),
        ..Overrides::default()
    };
    let err = Settings::build(RawConfig::default(), flags, "flags")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("credentials in the URL are not allowed"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
