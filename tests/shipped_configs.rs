//! The example configuration shipped in `deploy/sentinel/`: `amtool check-config` accepts its alerting file, and `ocx-sentinel check` accepts the configuration with its rules and alerting file (secret files stood in for by temporary ones).

mod common;

use std::path::Path;
use std::process::Command;

use common::peer;

const BIN: &str = env!("CARGO_BIN_EXE_ocx-sentinel");

#[test]
fn amtool_accepts_the_shipped_alerting_file() {
    if !peer("amtool") {
        return;
    }
    let out = Command::new("amtool")
        .args(["check-config", "deploy/sentinel/alerting.yml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_sidecar_checks_the_shipped_configuration_rules_and_alerting_file() {
    // The same files with their secret paths pointing at temporary stand-ins.
    let dir = std::env::temp_dir().join(format!("ocx-shipped-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for name in [
        "api-token",
        "ocx-api-key",
        "smtp-password",
        "oncall-webhook-token",
    ] {
        std::fs::write(secrets.join(name), "not-a-real-secret\n").unwrap();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rewrite = |name: &str| {
        let text = std::fs::read_to_string(root.join("deploy/sentinel").join(name)).unwrap();
        let text = text
            .replace("/etc/ocx-sentinel/", &format!("{}/", secrets.display()))
            .replace("../../rules/", &format!("{}/rules/", root.display()))
            .replace(
                "/var/lib/ocx-sentinel",
                &dir.join("data").display().to_string(),
            );
        std::fs::write(dir.join(name), text).unwrap();
    };
    rewrite("sentinel.yml");
    rewrite("alerting.yml");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.join("sentinel.yml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("alerting ok:") && stdout.contains("3 receiver(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("rules ok:"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
