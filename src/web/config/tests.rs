//! Web configuration file cases, one file each in `src/web/testdata/` (the house pattern: each states its exact expected result), and what a valid file builds.

use super::*;
use crate::web::{Reload, WebState};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/testdata")
}

#[test]
fn every_testdata_case_gives_exactly_its_expected_result() {
    let dir = testdata();
    crate::testdata::check_dir("src/web/testdata", 20, |text, name| {
        parse_str(text, name, &dir)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

#[test]
fn a_full_file_builds_the_tls_config_users_headers_and_rate_limit_it_says() {
    let c = load_file(&testdata().join("ok_full.yml")).unwrap();
    let tls = c.tls.as_ref().expect("TLS on");
    // `http2: false`: HTTP/1.1 only, even over TLS.
    assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
    // `prefer_server_cipher_suites: false`: the client's order.
    assert!(!tls.ignore_client_order);
    // The TLS 1.2 suites listed, in order, after TLS 1.3's (which Go does not let a file
    // choose either).
    let names: Vec<String> = tls
        .crypto_provider()
        .cipher_suites
        .iter()
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    assert_eq!(
        names,
        [
            "TLS13_AES_256_GCM_SHA384",
            "TLS13_AES_128_GCM_SHA256",
            "TLS13_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ]
    );
    let groups: Vec<String> = tls
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| format!("{:?}", g.name()))
        .collect();
    assert_eq!(groups, ["X25519", "secp256r1"]);
    let users: Vec<&str> = c.users.iter().map(|(u, _)| u.as_str()).collect();
    // BTreeMap order; the decoy is the costliest hash (alice's, cost 10).
    assert_eq!(users, ["alice", "prometheus"]);
    assert_eq!(c.users[c.decoy].0, "alice");
    // A blank header value leaves the header out.
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        headers,
        [
            ("strict-transport-security", "max-age=31536000"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "deny"),
        ]
    );
    assert_eq!(
        c.rate_limit,
        Some(RateLimit {
            interval: Duration::from_millis(100),
            burst: 20
        })
    );
    // What was read, for the watcher: the file and the three it names.
    let read: Vec<String> = c
        .sources
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(read, ["ok_full.yml", "server.pem", "server.key", "ca.pem"]);
    assert_eq!(
        c.describe(),
        "TLS (client certificates: RequireAndVerifyClientCert, HTTP/2 off), basic auth with 2 user(s)"
    );
}

#[test]
fn defaults_are_the_toolkits_http2_on_server_order_tls12_and_13() {
    let c = parse_str(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n",
        "web.yml",
        &testdata(),
    )
    .unwrap();
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(tls.ignore_client_order);
    assert_eq!(
        c.describe(),
        "TLS (client certificates: NoClientCert, HTTP/2 on), no basic auth"
    );
    let versions: std::collections::BTreeSet<String> = tls
        .crypto_provider()
        .cipher_suites
        .iter()
        .map(|s| format!("{:?}", s.version().version))
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(c.users.is_empty() && c.headers.is_empty() && c.rate_limit.is_none());
    // TLS 1.3 only, and the old name of RequireAnyClientCert the toolkit still reads.
    let c = parse_str(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS13\n  client_auth_type: RequireClientCert\n",
        "web.yml",
        &testdata(),
    )
    .unwrap();
    assert_eq!(
        c.describe(),
        "TLS (client certificates: RequireAnyClientCert, HTTP/2 on), no basic auth"
    );
}

/// Inline PEM works as the files do, and neither a key nor a hash ever reaches `Debug` or an
/// error.
#[test]
fn inline_pem_loads_and_secrets_never_print() {
    let dir = testdata();
    let cert = std::fs::read_to_string(dir.join("server.pem")).unwrap();
    let key = std::fs::read_to_string(dir.join("server.key")).unwrap();
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let hash = "$2b$04$NWtCYtfSLU2NbwDdNCXGbOkG7VRnIamCk0xHtzqHNgqudt/3tBQVC";
    let yaml = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}basic_auth_users:\n  prometheus: {hash}\n",
        indent(&cert),
        indent(&key)
    );
    let c = parse_str(&yaml, "web.yml", Path::new("/nonexistent")).unwrap();
    assert!(c.tls());
    let shown = format!("{c:?}");
    let key_body = key.lines().nth(1).unwrap();
    assert!(
        !shown.contains(key_body) && !shown.contains(hash),
        "{shown}"
    );
    assert!(shown.contains("prometheus"));
    // A broken key and a broken hash: named, not shown.
    let yaml = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n    -----BEGIN PRIVATE KEY-----\n    c2VjcmV0LWtleS1ieXRlcw==\n    -----END PRIVATE KEY-----\nbasic_auth_users:\n  prometheus: {}x\n",
        indent(&cert),
        &hash[..58]
    );
    let err = parse_str(&yaml, "web.yml", Path::new("/nonexistent"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tls_server_config.key"), "{err}");
    assert!(err.contains("basic_auth_users.prometheus"), "{err}");
    assert!(
        !err.contains("c2VjcmV0") && !err.contains(&hash[7..40]),
        "{err}"
    );
}

#[test]
fn relative_paths_are_relative_to_the_file_and_a_missing_file_is_a_read_error() {
    let err = load_file(Path::new("/nonexistent/web.yml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/web.yml: cannot read: No such file"),
        "{err}"
    );
    // `ok_full.yml` names `server.pem` etc. without a directory: found beside it whatever the
    // working directory is.
    assert!(load_file(&testdata().join("ok_full.yml")).is_ok());
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ocx-sentinel-web-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The watcher's check: a change that loads replaces the configuration; one that does not is
/// an error once, keeps the last good configuration, and is retried when a file changes
/// again; a rotated certificate (same file name, new content) counts as a change.
#[test]
fn a_changed_file_reloads_and_a_broken_one_keeps_the_last_good_config() {
    let dir = temp_dir("reload");
    for f in ["server.pem", "server.key", "other.key"] {
        std::fs::copy(testdata().join(f), dir.join(f)).unwrap();
    }
    let web = dir.join("web.yml");
    let hash = "$2b$04$NWtCYtfSLU2NbwDdNCXGbOkG7VRnIamCk0xHtzqHNgqudt/3tBQVC";
    std::fs::write(&web, format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
    let state = WebState::new(Some(web.clone()), Some(Arc::new(load_file(&web).unwrap())));
    assert_eq!(state.check().unwrap(), Reload::Unchanged);

    std::fs::write(
        &web,
        format!("basic_auth_users:\n  alice: {hash}\n  bob: {hash}\n"),
    )
    .unwrap();
    assert_eq!(state.check().unwrap(), Reload::Reloaded);
    assert_eq!(state.current().users.len(), 2);
    assert_eq!(state.check().unwrap(), Reload::Unchanged);

    // Broken: an error naming the line, once; bob and alice stay.
    std::fs::write(&web, "basic_auth_users:\n  alice: nope\n").unwrap();
    let err = state.check().unwrap_err().to_string();
    assert!(
        err.contains("web.yml:2:10: basic_auth_users.alice"),
        "{err}"
    );
    assert_eq!(state.check().unwrap(), Reload::Unchanged);
    assert_eq!(state.current().users.len(), 2);

    // Fixed, and TLS added: reloaded, with the certificate files watched from now on.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n",
    )
    .unwrap();
    assert_eq!(state.check().unwrap(), Reload::Reloaded);
    assert!(state.current().tls() && !state.current().basic_auth());
    // The key file is replaced by one that does not match: a failed reload, TLS stays.
    std::fs::copy(dir.join("other.key"), dir.join("server.key")).unwrap();
    let err = state.check().unwrap_err().to_string();
    assert!(
        err.contains("the key does not belong to the certificate"),
        "{err}"
    );
    assert!(state.current().tls());
    // Put back: it loads again.
    std::fs::copy(testdata().join("server.key"), dir.join("server.key")).unwrap();
    assert_eq!(state.check().unwrap(), Reload::Reloaded);
    let _ = std::fs::remove_dir_all(&dir);
}
