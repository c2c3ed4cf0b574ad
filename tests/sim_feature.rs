//! The `sim` cargo feature as the binary shows it: `demo` and `simulate` are subcommands exactly
//! when the simulator is built in, and a build without it says why when asked for them.
//!
//! Runs in both builds (`cargo test` and `cargo test --no-default-features`), so each is checked
//! against its own promise.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ocx-sentinel");

/// The binary with no OCX_* variables from the caller's environment, which would feed its flags.
fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OCX_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("the binary runs")
}

#[test]
fn help_lists_the_simulator_subcommands_exactly_when_built_with_it() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    // clap lists each subcommand on its own line: "  name  about".
    let listed = |cmd: &str| {
        help.lines()
            .any(|l| l.trim_start().starts_with(&format!("{cmd} ")))
    };
    assert!(listed("run") && listed("check"), "{help}");
    assert_eq!(listed("demo"), cfg!(feature = "sim"), "{help}");
    assert_eq!(listed("simulate"), cfg!(feature = "sim"), "{help}");
}

#[cfg(not(feature = "sim"))]
#[test]
fn without_the_simulator_demo_and_simulate_fail_with_the_reason() {
    for cmd in ["demo", "simulate"] {
        let out = run(&[cmd]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("built without it") && err.contains("`sim`"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn check_works_in_every_build() {
    let out = run(&["check", "--api-base", "http://127.0.0.1:1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("config ok: 1 account(s)"), "{stdout}");
}
