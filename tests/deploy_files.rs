//! The deployment files under `deploy/` against the binary they deploy. Every YAML file parses;
//! promtool and amtool accept the Prometheus and Alertmanager configs; and each way the files
//! run the sidecar (the image's CMD, the compose service, the Kubernetes container, the systemd
//! unit) is really run: its own arguments and environment, with the container or host paths it
//! names rebuilt under a temporary root from the repository's files, must start, answer its
//! probes, load the rules and listen on the port that the probes, annotations, Service,
//! ServiceMonitor, published ports and scrape targets name.
#![allow(clippy::disallowed_methods)]
// the wall clock times real child processes here
// Without the simulator (the fake exchange) only the static checks run; the helpers that start
// the sidecar go unused there.
#![cfg_attr(not(feature = "sim"), allow(dead_code))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, peer, test_certificates_for};
use regex::Regex;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ocx-sentinel");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The key the fake exchange (the simulator) requires, written into every stand-in secret: a
/// sidecar that becomes ready against it has found its key file where the deployment put it.
const KEY: &str = "ocx_sk_deploy_test_key";

fn repo(rel: &str) -> PathBuf {
    Path::new(REPO).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every document of a YAML stream (Kubernetes manifests hold several), empty ones left out.
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("{what} does not parse: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn yaml(rel: &str) -> Value {
    let mut docs = yaml_docs(&read(rel), rel);
    assert_eq!(docs.len(), 1, "{rel}: one document expected");
    docs.remove(0)
}

/// `v` at a JSON pointer, or a panic naming the pointer.
fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer} missing in {v}"))
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    at(v, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string in {v}"))
}

fn list<'a>(v: &'a Value, pointer: &str) -> &'a Vec<Value> {
    at(v, pointer)
        .as_array()
        .unwrap_or_else(|| panic!("{pointer} is not a list in {v}"))
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    list(v, pointer)
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{pointer}: {s} is not a string"))
                .to_string()
        })
        .collect()
}

/// A port written as a number or a string.
fn port_of(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `a/b/../c` as `a/c`, without touching the filesystem (the path may not exist).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The file names of the shipped rule files: what every deployment must end up loading.
fn shipped_rules() -> BTreeSet<String> {
    let names: BTreeSet<String> = glob::glob(&format!("{REPO}/rules/*.yml"))
        .unwrap()
        .map(|p| {
            p.unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(!names.is_empty(), "no rules/*.yml");
    names
}

fn host_port(target: &str) -> (&str, u16) {
    let (host, port) = target
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{target:?} is not host:port"));
    (
        host,
        port.parse()
            .unwrap_or_else(|_| panic!("port of {target:?}")),
    )
}

// ---------------------------------------------------------------------------------------------
// Temporary roots and the paths a deployment names

/// A directory removed when the test ends, passing or failing.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ocx-deploy-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Rewrites the absolute paths a deployment names (`/etc/...`, `/var/...`) to the same paths
/// under a temporary root, in arguments, environment values and config files alike, in one pass
/// so a rewritten path is never rewritten again.
struct Rooted {
    root: PathBuf,
    re: Regex,
}

impl Rooted {
    fn new(root: &Path) -> Rooted {
        Rooted {
            root: root.to_path_buf(),
            re: Regex::new(r#"(^|[\s'"\[=,:])(/(?:etc|var|run|usr|tmp)/)"#).unwrap(),
        }
    }

    fn map(&self, s: &str) -> String {
        let root = self.root.display().to_string();
        self.re
            .replace_all(s, |c: &regex::Captures| format!("{}{root}{}", &c[1], &c[2]))
            .into_owned()
    }

    fn path(&self, container_path: &str) -> PathBuf {
        assert!(
            container_path.starts_with('/'),
            "{container_path} is not absolute"
        );
        self.root.join(container_path.trim_start_matches('/'))
    }
}

fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// Running the binary as a deployment runs it

/// How the test reaches a deployment's main listener: plain HTTP, or https trusting the CA the
/// deployment gives Prometheus and checking the name it tells Prometheus to check; with the
/// credentials Prometheus is given, when the deployment asks for basic auth.
#[derive(Clone, Debug, Default)]
struct Access {
    /// (CA certificate PEM, the server name the certificate is checked against).
    tls: Option<(String, String)>,
    /// (user, password).
    user: Option<(String, String)>,
}

/// Which listener (and how) a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// The main listener, with the deployment's credentials (if any).
    Main,
    /// The main listener without credentials.
    Anonymous,
    /// The health listener: plain HTTP, no credentials, as a probe asks.
    Health,
}

/// The sidecar as a child process, killed and reaped when the test ends; its stderr goes to a
/// file so a failure can show the log.
struct Running {
    child: Child,
    log: PathBuf,
    /// The main listener's URL (https with a deployment's TLS).
    base: String,
    /// The health listener's URL, when the deployment has one.
    health: Option<String>,
    client: reqwest::Client,
    user: Option<(String, String)>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, via: Via, path: &str) -> String {
        match via {
            Via::Main | Via::Anonymous => format!("{}{path}", self.base),
            Via::Health => format!(
                "{}{path}",
                self.health
                    .as_ref()
                    .expect("the deployment runs no health listener")
            ),
        }
    }

    fn get(&self, via: Via, path: &str) -> reqwest::RequestBuilder {
        let url = self.url(via, path);
        match (via, &self.user) {
            (Via::Main, Some((u, p))) => self.client.get(url).basic_auth(u, Some(p)),
            (Via::Health, _) => http().get(url),
            _ => self.client.get(url),
        }
    }
}

/// What `check` says a deployment's arguments, environment and config make of the listeners.
#[derive(Debug)]
struct Effective {
    listen: SocketAddr,
    health: Option<SocketAddr>,
}

/// How a deployment starts the sidecar: the program and its arguments, the environment it
/// sets, and the working directory.
#[derive(Clone, Debug)]
struct Launch {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

/// Points `flag`'s value (`--flag VALUE` or `--flag=VALUE`) in `argv` at `value`; false when the
/// flag is not there.
fn set_flag(argv: &mut [String], flag: &str, value: &str) -> bool {
    if let Some(i) = argv.iter().position(|a| a == flag) {
        argv[i + 1] = value.to_string();
        return true;
    }
    let prefix = format!("{flag}=");
    match argv.iter_mut().find(|a| a.starts_with(&prefix)) {
        Some(a) => {
            *a = format!("{prefix}{value}");
            true
        }
        None => false,
    }
}

impl Launch {
    fn command(&self, argv: &[String], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(&self.cwd);
        // Only what the deployment sets: an OCX_* variable of the test's own environment
        // (OCX_API_KEY, OCX_LISTEN) would otherwise stand in for a missing one, and RUST_LOG
        // could hide the log line the reload test reads.
        for (k, _) in std::env::vars() {
            if k.starts_with("OCX_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The addresses the binary itself says it would listen on, from `check` with the same
    /// arguments and environment (which also loads the config, the rule files, the alerting
    /// file, the web config file and every secret file they name).
    fn effective(&self) -> Effective {
        assert_eq!(self.argv[1], "run", "{:?}", self.argv);
        let mut argv = self.argv.clone();
        argv[1] = "check".into();
        let out = self
            .command(&argv, &self.env)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`check` rejects the deployment's arguments {argv:?} (env {:?}):\n{stdout}{}",
            self.env,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with("config ok:"))
            .unwrap_or_else(|| panic!("no `config ok` line:\n{stdout}"));
        let (main, health) = match line.split_once(", health listen ") {
            Some((main, health)) => (
                main,
                Some(
                    health
                        .parse()
                        .unwrap_or_else(|_| panic!("health listen address in {line:?}")),
                ),
            ),
            None => (line, None),
        };
        let listen = main
            .rsplit(" listen ")
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("listen address in {line:?}"));
        Effective { listen, health }
    }

    /// Starts it with the listener, and the health listener if the deployment has one, moved to
    /// free loopback ports (and `extra_env`, e.g. the fake exchange's URL): as a flag when the
    /// deployment passes the flag, as OCX_LISTEN / OCX_HEALTH_LISTEN (which override the config
    /// file) otherwise. `access` is how the main listener is reached.
    fn start(&self, extra_env: &[(&str, String)], scratch: &Path, access: &Access) -> Running {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut argv = self.argv.clone();
        let mut env = self.env.clone();
        let set_env = |env: &mut Vec<(String, String)>, k: &str, v: &str| {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        };
        if !set_flag(&mut argv, "--listen", &addr) {
            set_env(&mut env, "OCX_LISTEN", &addr);
        }
        let health = format!("127.0.0.1:{}", free_port());
        let health = if set_flag(&mut argv, "--health-listen", &health) {
            Some(health)
        } else if argv[1] == "run" && self.effective().health.is_some() {
            set_env(&mut env, "OCX_HEALTH_LISTEN", &health);
            Some(health)
        } else {
            None
        };
        for (k, v) in extra_env {
            set_env(&mut env, k, v);
        }
        let log = scratch.join(format!("sidecar-{port}.log"));
        let child = self
            .command(&argv, &env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(5));
        let base = match &access.tls {
            Some((ca, name)) => {
                // The name the deployment has Prometheus check, resolved to where the test runs
                // the sidecar: the certificate must carry it.
                client = client
                    .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
                    .resolve(name, SocketAddr::from(([127, 0, 0, 1], port)));
                format!("https://{name}:{port}")
            }
            None => format!("http://{addr}"),
        };
        Running {
            child,
            log,
            base,
            health: health.map(|h| format!("http://{h}")),
            client: client.build().unwrap(),
            user: access.user.clone(),
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

/// Polls `path` on `via` until it answers one of `accept`, or panics with the sidecar's log
/// (also when the process exits first).
async fn wait_status(
    s: &mut Running,
    via: Via,
    path: &str,
    accept: &[u16],
    within: Duration,
) -> u16 {
    let url = s.url(via, path);
    let deadline = tokio::time::Instant::now() + within;
    let mut last;
    loop {
        match s.get(via, path).send().await {
            Ok(r) => {
                let code = r.status().as_u16();
                if accept.contains(&code) {
                    return code;
                }
                // Not a path the binary serves: waiting will not change that.
                assert_ne!(code, 404, "{url}: 404, not a path the sidecar serves there");
                last = code.to_string();
            }
            Err(e) => last = e.to_string(),
        }
        if let Some(status) = s.child.try_wait().unwrap() {
            panic!(
                "the sidecar exited ({status}) before {path} answered:\n{}",
                s.log()
            );
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{url} ({via:?}) answered {last}, not one of {accept:?}, within {within:?}:\n{}",
                s.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(s: &Running, via: Via, path: &str) -> u16 {
    s.get(via, path)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", s.url(via, path)))
        .status()
        .as_u16()
}

async fn body(s: &Running, path: &str) -> String {
    s.get(Via::Main, path)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The file names of the rule files the running sidecar loaded (`/api/v1/rules`).
async fn loaded_rule_files(s: &Running) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(&body(s, "/api/v1/rules").await).unwrap();
    list(&v, "/data/groups")
        .iter()
        .map(|g| {
            Path::new(text(g, "/file"))
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[cfg(feature = "sim")]
async fn fake_exchange() -> ocx_sentinel::sim::RunningSim {
    ocx_sentinel::sim::start(
        ocx_sentinel::sim::SimConfig {
            api_key: Some(KEY.into()),
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("simulator on loopback")
}

/// Where a deployment's probes go and what they ask.
struct Probes<'a> {
    via: Via,
    healthy: &'a str,
    ready: &'a str,
}

/// A `run` deployment against the fake exchange: its probes must get 200 on `healthy` and then
/// on `ready` (it found the key and its streams took a snapshot), `metrics` must serve on the
/// main listener as `access` reaches it, and it must have loaded exactly the shipped rules.
/// With credentials, the main listener must refuse a request without them; with a health
/// listener, that must serve nothing but the probes. Returns the running sidecar and the
/// exchange, for further checks.
#[cfg(feature = "sim")]
async fn assert_runs(
    launch: &Launch,
    scratch: &Path,
    access: &Access,
    probes: Probes<'_>,
    metrics: &str,
) -> (Running, ocx_sentinel::sim::RunningSim) {
    let sim = fake_exchange().await;
    let mut s = launch.start(&[("OCX_API_BASE", sim.base_url())], scratch, access);
    wait_status(
        &mut s,
        probes.via,
        probes.healthy,
        &[200],
        Duration::from_secs(20),
    )
    .await;
    wait_status(
        &mut s,
        probes.via,
        probes.ready,
        &[200],
        Duration::from_secs(30),
    )
    .await;
    let m = body(&s, metrics).await;
    assert!(
        m.contains("ocx_stream_up{") && m.contains("ocx_fills_total{"),
        "{metrics} has no stream or fill metrics:\n{m}"
    );
    assert_eq!(
        loaded_rule_files(&s).await,
        shipped_rules(),
        "rule files loaded"
    );
    if access.user.is_some() {
        for path in [metrics, probes.healthy, probes.ready] {
            assert_eq!(
                status(&s, Via::Anonymous, path).await,
                401,
                "{path} without credentials"
            );
        }
    }
    if s.health.is_some() {
        for path in [metrics, "/", "/api/v1/rules"] {
            assert_eq!(status(&s, Via::Health, path).await, 404, "health {path}");
        }
    }
    (s, sim)
}

// ---------------------------------------------------------------------------------------------
// Every YAML file

#[test]
fn every_yaml_file_under_deploy_parses() {
    let mut seen = 0;
    for pattern in ["deploy/**/*.yml", "deploy/**/*.yaml"] {
        for path in glob::glob(&format!("{REPO}/{pattern}")).unwrap() {
            let path = path.unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let docs = yaml_docs(&text, &path.display().to_string());
            assert!(!docs.is_empty(), "{} holds no document", path.display());
            for d in &docs {
                assert!(
                    d.is_object(),
                    "{}: a document is not a mapping",
                    path.display()
                );
            }
            seen += 1;
        }
    }
    // compose, prometheus, alertmanager, two Kubernetes files, the systemd config, deploy/sentinel's two.
    assert!(seen >= 8, "only {seen} YAML files under deploy/");
}

// ---------------------------------------------------------------------------------------------
// Prometheus and Alertmanager

#[test]
fn promtool_accepts_the_prometheus_config_and_finds_every_rule_file() {
    if !peer("promtool") {
        return;
    }
    let out = Command::new("promtool")
        .args(["check", "config", "deploy/prometheus/prometheus.yml"])
        .current_dir(REPO)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A rule_files glob that matches nothing passes promtool too: the count shows it matched.
    let want = format!("SUCCESS: {} rule files found", shipped_rules().len());
    assert!(stdout.contains(&want), "want {want:?}:\n{stdout}");
}

/// The alert names an Alertmanager-format file matches on (`alertname="X"`, `alertname=~"X|Y"`).
fn alertnames_matched(text: &str) -> BTreeSet<String> {
    let re = Regex::new(r#"alertname\s*=~?\s*"([^"]+)""#).unwrap();
    re.captures_iter(text)
        .flat_map(|c| c[1].split('|').map(|s| s.to_string()).collect::<Vec<_>>())
        .collect()
}

fn shipped_alert_names() -> BTreeSet<String> {
    let re = Regex::new(r"(?m)^\s*-?\s*alert:\s*(\S+)").unwrap();
    shipped_rules()
        .iter()
        .flat_map(|f| {
            let t = read(&format!("rules/{f}"));
            re.captures_iter(&t)
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn amtool_check(path: &Path) {
    let out = Command::new("amtool")
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "amtool check-config {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn amtool_accepts_the_alertmanager_configs_and_they_name_real_alerts() {
    let kube_alerting = kube_config_map_file("alerting.yml");
    // Routes and inhibit rules that name an alert the rules do not have would silently never
    // match: every name must be one of rules/.
    let alerts = shipped_alert_names();
    for (what, t) in [
        (
            "deploy/alertmanager/alertmanager.yml",
            read("deploy/alertmanager/alertmanager.yml"),
        ),
        ("the Kubernetes alerting.yml", kube_alerting.clone()),
    ] {
        let named = alertnames_matched(&t);
        assert!(!named.is_empty(), "{what} matches no alert by name");
        let unknown: Vec<_> = named.difference(&alerts).collect();
        assert!(
            unknown.is_empty(),
            "{what} names alerts rules/ lacks: {unknown:?}"
        );
    }
    if !peer("amtool") {
        return;
    }
    amtool_check(&repo("deploy/alertmanager/alertmanager.yml"));
    let scratch = Scratch::new("amtool");
    let f = scratch.0.join("alerting.yml");
    write(&f, &kube_alerting);
    amtool_check(&f);
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile

#[derive(Debug)]
struct Instr {
    op: String,
    args: String,
    /// 0 for the first FROM's stage, counting up.
    stage: usize,
}

fn dockerfile() -> Vec<Instr> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut stage = 0usize;
    let mut froms = 0usize;
    for line in read("deploy/Dockerfile").lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body.trim());
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (op, args) = cur.split_once(char::is_whitespace).unwrap_or((&cur, ""));
        let op = op.to_ascii_uppercase();
        if op == "FROM" {
            stage = froms;
            froms += 1;
        }
        out.push(Instr {
            op,
            args: args.trim().to_string(),
            stage,
        });
        cur.clear();
    }
    out
}

fn final_stage(ins: &[Instr]) -> Vec<&Instr> {
    let last = ins.iter().map(|i| i.stage).max().unwrap();
    ins.iter()
        .filter(|i| i.stage == last && i.op != "FROM")
        .collect()
}

fn exec_form(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| {
        panic!("{what} must be exec form (JSON list; no shell in the image): {args}: {e}")
    })
}

fn one<'a>(ins: &[&'a Instr], op: &str) -> &'a Instr {
    let found: Vec<_> = ins.iter().filter(|i| i.op == op).collect();
    assert_eq!(found.len(), 1, "one {op} in the final stage");
    found[0]
}

/// (flags, sources, destination) of a COPY.
fn copy_parts(args: &str) -> (Vec<&str>, Vec<&str>, &str) {
    let words: Vec<&str> = args.split_whitespace().collect();
    let (flags, rest): (Vec<&str>, Vec<&str>) = words.iter().partition(|w| w.starts_with("--"));
    let (dest, sources) = rest.split_last().unwrap();
    (flags, sources.to_vec(), dest)
}

struct Image {
    volumes: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    expose: u16,
    healthcheck: Vec<String>,
}

fn image() -> Image {
    let ins = dockerfile();
    let fin = final_stage(&ins);
    let entrypoint = exec_form(&one(&fin, "ENTRYPOINT").args, "ENTRYPOINT");
    let cmd = exec_form(&one(&fin, "CMD").args, "CMD");
    let expose = one(&fin, "EXPOSE").args.parse().expect("EXPOSE one port");
    let hc = &one(&fin, "HEALTHCHECK").args;
    let (_, hc_cmd) = hc
        .split_once("CMD ")
        .unwrap_or_else(|| panic!("HEALTHCHECK without CMD: {hc}"));
    let healthcheck = exec_form(hc_cmd, "HEALTHCHECK");
    let env = fin
        .iter()
        .filter(|i| i.op == "ENV")
        .map(|i| {
            let (k, v) = i.args.split_once('=').expect("ENV KEY=value");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect();
    let volumes = fin
        .iter()
        .filter(|i| i.op == "VOLUME")
        .flat_map(|i| exec_form(&i.args, "VOLUME"))
        .collect();
    Image {
        volumes,
        entrypoint,
        cmd,
        env,
        expose,
        healthcheck,
    }
}

/// The data dir the image's environment names (`run` reads OCX_DATA_DIR).
fn data_dir(img: &Image) -> String {
    img.env
        .iter()
        .find(|(k, _)| k == "OCX_DATA_DIR")
        .map(|(_, v)| v.clone())
        .expect("ENV OCX_DATA_DIR: the default ./data is in the read-only image")
}

/// The URL the healthcheck fetches: its one http:// argument, as (host, port, path).
fn healthcheck_url(img: &Image) -> (String, u16, String) {
    let url = img
        .healthcheck
        .iter()
        .find(|a| a.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in HEALTHCHECK {:?}", img.healthcheck));
    let rest = url.trim_start_matches("http://");
    let (hostport, path) = rest.split_at(rest.find('/').unwrap());
    let (host, port) = host_port(hostport);
    (host.to_string(), port, path.to_string())
}

/// The health listener the image's default command turns on: `--health-listen` in CMD, or
/// OCX_HEALTH_LISTEN in its ENV.
fn image_health_listen(img: &Image) -> SocketAddr {
    let from_cmd = img
        .cmd
        .iter()
        .position(|a| a == "--health-listen")
        .map(|i| img.cmd[i + 1].clone());
    let from_env = img
        .env
        .iter()
        .find(|(k, _)| k == "OCX_HEALTH_LISTEN")
        .map(|(_, v)| v.clone());
    let addr = from_cmd.or(from_env).unwrap_or_else(|| {
        panic!(
            "the image's CMD {:?} turns on no health listener for its HEALTHCHECK",
            img.cmd
        )
    });
    addr.parse()
        .unwrap_or_else(|_| panic!("health listen {addr:?}"))
}

/// The HEALTHCHECK reaches the health listener `health` sets up: the same port, on an address
/// that listener answers (the container's loopback, or every interface).
fn assert_healthcheck_reaches(img: &Image, health: SocketAddr, what: &str) {
    let (host, port, path) = healthcheck_url(img);
    assert_eq!(
        port,
        health.port(),
        "the image's HEALTHCHECK port vs {what}'s health listener ({health})"
    );
    let ip: std::net::IpAddr = host.parse().expect("HEALTHCHECK host is an IP address");
    assert!(ip.is_loopback(), "HEALTHCHECK probes {host}, not loopback");
    assert!(
        health.ip() == ip || health.ip().is_unspecified(),
        "{what}'s health listener on {health} does not answer on {host}"
    );
    assert_eq!(path, "/-/healthy");
}

#[test]
fn the_dockerfile_copies_what_exists_runs_as_non_root_and_probes_its_health_listener() {
    let ins = dockerfile();
    let fin = final_stage(&ins);
    let img = image();

    // runAsNonRoot in Kubernetes can only verify a numeric user.
    let user = &one(&fin, "USER").args;
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("USER {user} must be numeric"));
    assert_ne!(uid, 0, "the image must not run as root");

    // The data dir is a volume: it outlives the container.
    assert!(
        img.volumes.contains(&data_dir(&img)),
        "VOLUME {:?} lacks the data dir {}",
        img.volumes,
        data_dir(&img)
    );

    // What the final stage runs (the entrypoint, the healthcheck's tool) is copied into it.
    let copied: Vec<&str> = fin
        .iter()
        .filter(|i| i.op == "COPY")
        .map(|i| copy_parts(&i.args).2)
        .collect();
    for prog in [&img.entrypoint[0], &img.healthcheck[0]] {
        assert!(
            copied.contains(&prog.as_str()),
            "{prog} is run but not copied into the final stage (copies: {copied:?})"
        );
    }
    assert!(
        img.entrypoint[0].ends_with("/ocx-sentinel") && img.entrypoint.len() == 1,
        "ENTRYPOINT {:?}",
        img.entrypoint
    );

    // The healthcheck asks the health listener the default command turns on, not the exposed
    // metrics port: busybox wget has no credentials and no CA, so it must keep working when a
    // web config adds basic auth or TLS there (checked live in the image test below).
    let health = image_health_listen(&img);
    assert_healthcheck_reaches(&img, health, "the image's CMD");
    assert_ne!(
        health.port(),
        img.expose,
        "the HEALTHCHECK probes the exposed (metrics) port"
    );

    // COPY sources from the build context exist and are not left out by .dockerignore, which
    // must leave out target/.
    let ignore: Vec<glob::Pattern> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| glob::Pattern::new(l.trim_start_matches('/').trim_end_matches('/')).unwrap())
        .collect();
    let ignored = |rel: &Path| {
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        ignore
            .iter()
            .any(|p| p.matches(&first) || p.matches_path(rel))
    };
    assert!(
        ignored(Path::new("target")),
        ".dockerignore must leave out target/"
    );
    let mut context_copies = 0;
    for i in ins.iter().filter(|i| i.op == "COPY") {
        let (flags, sources, _) = copy_parts(&i.args);
        if flags.iter().any(|f| f.starts_with("--from")) {
            continue;
        }
        for src in sources {
            let matches: Vec<PathBuf> = glob::glob(&format!("{REPO}/{src}"))
                .unwrap()
                .map(|p| p.unwrap())
                .collect();
            assert!(
                !matches.is_empty(),
                "COPY {src}: nothing in the repository matches"
            );
            for m in matches {
                let rel = m.strip_prefix(REPO).unwrap();
                assert!(
                    !ignored(rel),
                    "COPY {src}: {} is in .dockerignore",
                    rel.display()
                );
            }
            context_copies += 1;
        }
    }
    assert!(context_copies >= 4, "Cargo files, src, rules, benches");

    // The build: reproducible from Cargo.lock, default features unless the build arg says so.
    let build = ins
        .iter()
        .find(|i| i.op == "RUN" && i.args.contains("cargo build"))
        .expect("a cargo build");
    assert!(build.args.contains("--release") && build.args.contains("--locked"));
    assert!(build.args.contains("${CARGO_FLAGS}"), "{}", build.args);
    assert!(
        ins.iter()
            .any(|i| i.op == "ARG" && i.args.replace(' ', "") == "CARGO_FLAGS=\"\""),
        "ARG CARGO_FLAGS must default to nothing (default features: `demo` works)"
    );
}

/// The image's default command, run as the image runs it: ENTRYPOINT + CMD with the image's
/// ENV, the rules where the Dockerfile copies them, and the key as `docker run -e
/// OCX_API_KEY_FILE=...` passes it.
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_default_command_runs_and_its_healthcheck_path_answers() {
    let scratch = Scratch::new("image");
    let root = Rooted::new(&scratch.0.join("root"));
    let img = image();
    // Context files the final stage copies, at their destinations.
    for i in final_stage(&dockerfile())
        .into_iter()
        .filter(|i| i.op == "COPY")
    {
        let (flags, sources, dest) = copy_parts(&i.args);
        if flags.iter().any(|f| f.starts_with("--from")) {
            continue;
        }
        for src in sources {
            for m in glob::glob(&format!("{REPO}/{src}")).unwrap() {
                let m = m.unwrap();
                let to = root.path(dest).join(m.file_name().unwrap());
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&m, &to).unwrap();
            }
        }
    }
    let mut env: Vec<(String, String)> = img
        .env
        .iter()
        .map(|(k, v)| (k.clone(), root.map(v)))
        .collect();
    for (_, v) in &env {
        if v.starts_with(&root.root.display().to_string()) {
            std::fs::create_dir_all(v).unwrap();
        }
    }
    let key = scratch.0.join("ocx-api-key");
    write(&key, KEY);
    env.push(("OCX_API_KEY_FILE".into(), key.display().to_string()));
    let mut argv = vec![BIN.to_string()];
    argv.extend(img.cmd.iter().map(|a| root.map(a)));
    let launch = Launch {
        argv,
        env,
        cwd: scratch.0.clone(),
    };
    let effective = launch.effective();
    let listen = effective.listen;
    assert!(
        listen.ip().is_unspecified(),
        "a container must listen on all interfaces: {listen}"
    );
    assert_eq!(listen.port(), img.expose, "listen port vs EXPOSE");
    // The binary's own reading of the default command: the health listener the HEALTHCHECK
    // probes is on, where it probes.
    let health = effective
        .health
        .expect("the default command runs no health listener");
    assert_healthcheck_reaches(&img, health, "the default command");
    let (_, _, hc_path) = healthcheck_url(&img);
    let probes = Probes {
        via: Via::Health,
        healthy: &hc_path,
        ready: "/-/ready",
    };
    let (s, _exchange) =
        assert_runs(&launch, &scratch.0, &Access::default(), probes, "/metrics").await;
    // The data dir is where the image's ENV (and VOLUME) put it, not ./data.
    let data = root.path(&data_dir(&img));
    assert!(
        std::fs::read_dir(&data).map(|d| d.count()).unwrap_or(0) > 0,
        "nothing written to {}:\n{}",
        data.display(),
        s.log()
    );
    assert!(
        !scratch.0.join("data").exists(),
        "the data dir fell back to ./data"
    );
}

// ---------------------------------------------------------------------------------------------
// docker compose

struct Compose {
    doc: Value,
}

/// A service's bind mount: host source (resolved against deploy/) and container destination.
struct Bind {
    host: PathBuf,
    container: String,
}

impl Compose {
    fn load() -> Compose {
        Compose {
            doc: yaml("deploy/docker-compose.yml"),
        }
    }

    fn service(&self, name: &str) -> &Value {
        at(&self.doc, &format!("/services/{name}"))
    }

    fn names(&self) -> Vec<String> {
        at(&self.doc, "/services")
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    /// The service built from deploy/Dockerfile: the sidecar.
    fn sentinel(&self) -> (String, &Value) {
        let found: Vec<_> = self
            .names()
            .into_iter()
            .filter(|n| {
                self.service(n)
                    .pointer("/build/dockerfile")
                    .and_then(Value::as_str)
                    == Some("deploy/Dockerfile")
            })
            .collect();
        assert_eq!(found.len(), 1, "one service built from deploy/Dockerfile");
        let name = found[0].clone();
        let svc = self.service(&name);
        let context = normalize(&repo("deploy").join(text(svc, "/build/context")));
        assert_eq!(
            context,
            normalize(Path::new(REPO)),
            "the build context is the repository root"
        );
        (name, svc)
    }

    fn binds(&self, service: &str) -> Vec<Bind> {
        let Some(vols) = self.service(service).get("volumes") else {
            return Vec::new();
        };
        vols.as_array()
            .unwrap()
            .iter()
            .filter_map(|v| {
                let v = v.as_str().expect("short volume syntax");
                let mut parts = v.split(':');
                let src = parts.next().unwrap();
                let dst = parts
                    .next()
                    .unwrap_or_else(|| panic!("{v}: no destination"));
                (src.starts_with('.') || src.starts_with('/')).then(|| Bind {
                    host: normalize(&repo("deploy").join(src)),
                    container: dst.to_string(),
                })
            })
            .collect()
    }

    /// A container path of `service` as the host path its bind mounts put there.
    fn host_path(&self, service: &str, container: &Path) -> PathBuf {
        let binds = self.binds(service);
        let b = binds
            .iter()
            .filter(|b| container.starts_with(&b.container))
            .max_by_key(|b| b.container.len())
            .unwrap_or_else(|| panic!("{service}: nothing mounted at {}", container.display()));
        let rest = container.strip_prefix(&b.container).unwrap();
        if rest.as_os_str().is_empty() {
            b.host.clone()
        } else {
            b.host.join(rest)
        }
    }

    /// Container ports a service publishes.
    fn published(&self, service: &str) -> Vec<u16> {
        self.service(service)
            .get("ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let p = p.as_str().expect("ports as strings");
                        p.rsplit(':').next().unwrap().parse().unwrap()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of `--flag=value` in a service's command.
    fn flag(&self, service: &str, flag: &str) -> String {
        let cmd = strings(self.service(service), "/command");
        cmd.iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| panic!("{service}: no {flag}= in {cmd:?}"))
            .to_string()
    }
}

fn demo_listen(argv: &[String]) -> SocketAddr {
    let i = argv
        .iter()
        .position(|a| a == "--listen")
        .unwrap_or_else(|| {
            panic!("`demo` listens on 127.0.0.1 by default, out of reach in a container: {argv:?}")
        });
    argv[i + 1].parse().unwrap()
}

/// The value of `--flag VALUE` in a command.
fn arg_of<'a>(argv: &'a [String], flag: &str) -> &'a str {
    let i = argv
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {argv:?}"));
    &argv[i + 1]
}

/// The sidecar's web config in the compose stack (the host file its `--web.config.file` is
/// mounted from), and how the stack's Prometheus scrapes it: the scrape job whose target is
/// the sidecar, the user it sends and the password from its `password_file` (relative to the
/// config, in the container, through the mounts).
fn compose_scrape(c: &Compose) -> (PathBuf, Value, Access) {
    let (sentinel, svc) = c.sentinel();
    let cmd = strings(svc, "/command");
    let web = c.host_path(&sentinel, Path::new(arg_of(&cmd, "--web.config.file")));
    let prom = "prometheus";
    let config_in = PathBuf::from(c.flag(prom, "--config.file"));
    let p = yaml("deploy/prometheus/prometheus.yml");
    let jobs: Vec<&Value> = list(&p, "/scrape_configs")
        .iter()
        .filter(|job| {
            list(job, "/static_configs").iter().any(|sc| {
                strings(sc, "/targets")
                    .iter()
                    .any(|t| host_port(t).0 == sentinel)
            })
        })
        .collect();
    assert_eq!(jobs.len(), 1, "one scrape job for the {sentinel} service");
    let job = jobs[0].clone();
    let username = text(&job, "/basic_auth/username").to_string();
    let password_file = text(&job, "/basic_auth/password_file");
    let in_container = normalize(&config_in.parent().unwrap().join(password_file));
    let on_host = c.host_path(prom, &in_container);
    let password = std::fs::read_to_string(&on_host)
        .unwrap_or_else(|e| {
            panic!(
                "Prometheus's password_file {password_file} ({}): {e}",
                on_host.display()
            )
        })
        // Prometheus trims the file's whitespace.
        .trim()
        .to_string();
    let access = Access {
        tls: None,
        user: Some((username, password)),
    };
    (web, job, access)
}

#[test]
fn compose_wires_prometheus_alertmanager_and_grafana_to_the_sidecar() {
    let c = Compose::load();
    let (sentinel, svc) = c.sentinel();
    let cmd = strings(svc, "/command");
    assert_eq!(cmd[0], "demo", "the compose stack runs the demo: {cmd:?}");
    let listen = demo_listen(&cmd);
    assert!(
        listen.ip().is_unspecified(),
        "{listen}: Prometheus could not reach it"
    );
    assert_eq!(
        c.published(&sentinel),
        vec![listen.port()],
        "published port vs --listen"
    );
    assert_eq!(image().expose, listen.port(), "the image's EXPOSE");
    // The service keeps the image's HEALTHCHECK: the health listener it turns on must be where
    // that probes (the compose command replaces the image's CMD, and with it the CMD's
    // --health-listen).
    let health: SocketAddr = arg_of(&cmd, "--health-listen")
        .parse()
        .expect("--health-listen address");
    assert_healthcheck_reaches(&image(), health, "the compose command");
    assert!(
        !c.published(&sentinel).contains(&health.port()),
        "the health port is published"
    );

    // Prometheus: its config and rules come from the repository through the mounts.
    let prom = "prometheus";
    let config_in = PathBuf::from(c.flag(prom, "--config.file"));
    let config = c.host_path(prom, &config_in);
    assert_eq!(config, repo("deploy/prometheus/prometheus.yml"));
    let p = yaml("deploy/prometheus/prometheus.yml");
    let mut rule_files = BTreeSet::new();
    for pattern in strings(&p, "/rule_files") {
        let in_container = normalize(&config_in.parent().unwrap().join(&pattern));
        let on_host = c.host_path(prom, &in_container);
        for f in glob::glob(&on_host.display().to_string()).unwrap() {
            rule_files.insert(
                f.unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    assert_eq!(
        rule_files,
        shipped_rules(),
        "rule files Prometheus loads in the container"
    );

    // Its scrape target for the sidecar is the compose service on the listen port, every 1-5s.
    let global_interval = p.pointer("/global/scrape_interval").and_then(Value::as_str);
    let mut scraped = false;
    for job in list(&p, "/scrape_configs") {
        for sc in list(job, "/static_configs") {
            for t in strings(sc, "/targets") {
                let (host, port) = host_port(&t);
                assert!(
                    c.names().iter().any(|n| n == host) || host == "localhost",
                    "target {t}: no such service"
                );
                if host == sentinel {
                    assert_eq!(port, listen.port(), "scrape target {t} vs --listen");
                    let iv = job
                        .get("scrape_interval")
                        .and_then(Value::as_str)
                        .or(global_interval)
                        .unwrap_or("1m");
                    assert!(
                        ["1s", "2s", "3s", "4s", "5s"].contains(&iv),
                        "scrape every {iv}"
                    );
                    scraped = true;
                }
            }
        }
    }
    assert!(scraped, "no scrape target names the {sentinel} service");

    // Alerts go to the compose Alertmanager, which loads deploy/alertmanager/alertmanager.yml.
    for am in list(&p, "/alerting/alertmanagers") {
        for sc in list(am, "/static_configs") {
            for t in strings(sc, "/targets") {
                let (host, port) = host_port(&t);
                assert_eq!(c.published(host), vec![port], "alertmanager target {t}");
                let am_config = c.host_path(host, Path::new(&c.flag(host, "--config.file")));
                assert_eq!(am_config, repo("deploy/alertmanager/alertmanager.yml"));
            }
        }
    }

    // Every bind mount's source exists, except those the dashboards work provides
    // (deploy/grafana/, dashboards/), checked once they are there.
    for name in c.names() {
        for b in c.binds(&name) {
            let dashboards = b.host.starts_with(repo("deploy/grafana"))
                || b.host.starts_with(repo("dashboards"));
            if dashboards && !b.host.exists() {
                eprintln!(
                    "{}: not in this tree yet, mount not checked",
                    b.host.display()
                );
                continue;
            }
            assert!(
                b.host.exists(),
                "{name}: mounts {}, which does not exist",
                b.host.display()
            );
        }
    }
    let provisioning = repo("deploy/grafana/provisioning");
    if provisioning.exists() {
        grafana_provisioning_matches(&c, &provisioning);
    }
}

/// Grafana's datasource points at the compose Prometheus, and its dashboard providers read a
/// directory the compose file mounts.
fn grafana_provisioning_matches(c: &Compose, provisioning: &Path) {
    let mut urls = Vec::new();
    let mut paths = Vec::new();
    for f in glob::glob(&format!("{}/**/*.y*ml", provisioning.display())).unwrap() {
        let f = f.unwrap();
        for d in yaml_docs(
            &std::fs::read_to_string(&f).unwrap(),
            &f.display().to_string(),
        ) {
            for ds in d
                .get("datasources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(u) = ds.get("url").and_then(Value::as_str) {
                    urls.push(u.to_string());
                }
            }
            for p in d
                .get("providers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(p) = p.pointer("/options/path").and_then(Value::as_str) {
                    paths.push(p.to_string());
                }
            }
        }
    }
    for u in &urls {
        let (host, port) = host_port(u.trim_start_matches("http://").trim_end_matches('/'));
        assert!(
            c.names().iter().any(|n| n == host),
            "datasource {u}: no such service"
        );
        assert_eq!(c.published(host), vec![port], "datasource {u}");
    }
    for p in &paths {
        c.host_path("grafana", Path::new(p));
    }
}

/// The password Prometheus sends is one the sidecar's web config accepts for that user (a bcrypt
/// hash of it), and Prometheus scrapes https exactly when the web config turns TLS on.
#[test]
fn the_compose_prometheus_credentials_open_the_sidecars_web_config() {
    let c = Compose::load();
    let (web, job, access) = compose_scrape(&c);
    assert_eq!(
        web,
        repo("deploy/sentinel/web.yml"),
        "the mounted web config"
    );
    let w = yaml("deploy/sentinel/web.yml");
    let (user, password) = access.user.unwrap();
    let hash = text(&w, &format!("/basic_auth_users/{user}"));
    assert!(
        bcrypt::verify(&password, hash).unwrap_or(false),
        "Prometheus's password for {user} does not match its hash in deploy/sentinel/web.yml"
    );
    // The hash is a real one: it refuses what is not the password.
    assert!(!bcrypt::verify(format!("{password}x"), hash).unwrap_or(true));
    let https = job.get("scheme").and_then(Value::as_str) == Some("https");
    assert_eq!(
        https,
        w.get("tls_server_config").is_some(),
        "scrape scheme vs the web config's TLS"
    );
}

/// The compose service's own command, run with its mounted web config: `demo` answers the
/// image's healthcheck on the health listener, refuses /metrics without credentials and serves
/// it with the password the stack's Prometheus sends.
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_sidecar_command_runs_and_serves_metrics_to_prometheus_credentials_only() {
    let scratch = Scratch::new("compose");
    let c = Compose::load();
    let (sentinel, svc) = c.sentinel();
    let binds = c.binds(&sentinel);
    assert!(
        !binds.is_empty(),
        "{sentinel} mounts nothing (its web config?)"
    );
    let mut argv = vec![BIN.to_string()];
    // Container paths the command names, as the mounts put them on the host.
    argv.extend(strings(svc, "/command").into_iter().map(|a| {
        if binds.iter().any(|b| a.starts_with(&b.container)) {
            c.host_path(&sentinel, Path::new(&a)).display().to_string()
        } else {
            a
        }
    }));
    let launch = Launch {
        argv,
        env: Vec::new(),
        cwd: scratch.0.clone(),
    };
    let (_, _, access) = compose_scrape(&c);
    let mut s = launch.start(&[], &scratch.0, &access);
    let (_, _, hc_path) = healthcheck_url(&image());
    wait_status(
        &mut s,
        Via::Health,
        &hc_path,
        &[200],
        Duration::from_secs(20),
    )
    .await;
    wait_status(
        &mut s,
        Via::Health,
        "/-/ready",
        &[200],
        Duration::from_secs(30),
    )
    .await;
    let m = body(&s, "/metrics").await;
    assert!(m.contains("ocx_fills_total{"), "no fills on /metrics:\n{m}");
    for path in ["/metrics", "/-/healthy", "/"] {
        assert_eq!(status(&s, Via::Anonymous, path).await, 401, "{path}");
    }
    assert_eq!(status(&s, Via::Health, "/metrics").await, 404);
}

#[test]
fn docker_compose_accepts_the_file_when_installed() {
    // Not one of CI's peers (the engine cannot run there): checked where a compose tool is.
    let tools: [&[&str]; 2] = [&["docker", "compose"], &["docker-compose"]];
    for tool in tools {
        let works = Command::new(tool[0])
            .args(&tool[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !works {
            continue;
        }
        let out = Command::new(tool[0])
            .args(&tool[1..])
            .args(["-f", "deploy/docker-compose.yml", "config", "-q"])
            .current_dir(REPO)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool:?} config: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    eprintln!("no docker compose: compose schema check skipped");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

fn kube_docs() -> Vec<Value> {
    let mut docs = Vec::new();
    for f in ["market-maker.yaml", "servicemonitor.yaml"] {
        let rel = format!("deploy/kubernetes/{f}");
        docs.extend(yaml_docs(&read(&rel), &rel));
    }
    docs
}

fn kube<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn kube_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<_> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in deploy/kubernetes");
    found[0]
}

fn kube_config_map_file(key: &str) -> String {
    let docs = kube_docs();
    let cm = kube(&docs, "ConfigMap", "ocx-sentinel-config");
    text(cm, &format!("/data/{key}")).to_string()
}

/// `kubectl create ...` commands in a text (continued lines joined, `# ` comment marks removed),
/// each as its words.
fn kubectl_creates(t: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in t.lines() {
        let l = line.trim().trim_start_matches('#').trim();
        if cur.is_empty() && !l.starts_with("kubectl create ") {
            continue;
        }
        if let Some(body) = l.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(l);
        out.push(cur.split_whitespace().map(String::from).collect());
        cur.clear();
    }
    out
}

/// What the operator makes before deploying, as the test stands it in: the fake exchange's key
/// for the API key and tokens; a scrape password; a CA and a server certificate it signed
/// (openssl) carrying the names Prometheus checks; and web.yml made by the deployment's own
/// recipe from the shipped template, with the bcrypt hash of that password.
struct Made {
    certs: PathBuf,
    password: String,
    web_yml: String,
}

impl Made {
    /// `recipe_in` is the text whose `sed` line makes web.yml. None without openssl (the test
    /// is skipped, or fails under OCX_REQUIRE_PEERS=1).
    fn new(dir: &Path, recipe_in: &str, server_names: &[&str]) -> Option<Made> {
        let certs = dir.join("made");
        std::fs::create_dir_all(&certs).unwrap();
        test_certificates_for(&certs, server_names)?;
        let password = "scrape-password-made-by-the-test".to_string();
        let web_yml = web_yml_by_recipe(recipe_in, &password);
        Some(Made {
            certs,
            password,
            web_yml,
        })
    }

    /// The stand-in for a Secret key or a credential id. Keys are how a deployment names its
    /// files, and what web.yml's relative names must match.
    fn value(&self, key: &str) -> String {
        let cert = |f: &str| std::fs::read_to_string(self.certs.join(f)).unwrap();
        match key {
            "web.yml" => self.web_yml.clone(),
            "tls.crt" => cert("server.pem"),
            "tls.key" => cert("server.key"),
            "ca.crt" => cert("ca.pem"),
            "password" => self.password.clone(),
            _ => KEY.to_string(),
        }
    }
}

/// web.yml as `doc` says to make it: `sed "s|PLACEHOLDER|<hash>|" TEMPLATE`, here with the bcrypt
/// hash of `password` (cost 4, fast: the cost is the hash's own). Every such line of `doc` must
/// name the same template and placeholder, and the template must hold the placeholder once.
fn web_yml_by_recipe(doc: &str, password: &str) -> String {
    let re = Regex::new(r#"sed "s\|([A-Za-z0-9_-]+)\|.*?\|" (\S+)"#).unwrap();
    let recipes: BTreeSet<(String, String)> = re
        .captures_iter(doc)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    assert_eq!(
        recipes.len(),
        1,
        "one way to make web.yml (sed \"s|PLACEHOLDER|$HASH|\" TEMPLATE): {recipes:?}"
    );
    let (placeholder, template) = recipes.into_iter().next().unwrap();
    let t = read(&template);
    assert_eq!(
        t.matches(&placeholder).count(),
        1,
        "{template} must hold {placeholder} once"
    );
    t.replace(&placeholder, &bcrypt::hash(password, 4).unwrap())
}

/// Keys and file contents of a ConfigMap or Secret the README creates with `kubectl create`:
/// `--from-file=DIR/` gives one key per file (from the repository), `--from-file=KEY=PATH` one
/// key, `--from-literal=KEY=VALUE` one key with that value; a Secret's files are what `made`
/// stands in for them.
fn created_object(kind: &str, name: &str, made: &Made) -> BTreeMap<String, String> {
    let readme = read("README.md");
    let manifests = read("deploy/kubernetes/market-maker.yaml");
    let from_readme = kubectl_creates(&readme);
    let from_manifest = kubectl_creates(&manifests);
    let (verb, skip) = match kind {
        "ConfigMap" => ("configmap", 3),
        "Secret" => ("secret", 4),
        _ => unreachable!(),
    };
    let find = |cmds: &[Vec<String>]| -> Vec<String> {
        cmds.iter()
            .find(|c| c[2] == verb && c.get(skip) == Some(&name.to_string()))
            .cloned()
            .unwrap_or_else(|| panic!("no `kubectl create {verb} ... {name}`"))
    };
    let cmd = find(&from_readme);
    assert_eq!(
        cmd,
        find(&from_manifest),
        "the README and market-maker.yaml's header create {name} differently"
    );
    let mut out = BTreeMap::new();
    for w in &cmd[skip + 1..] {
        if let Some(literal) = w.strip_prefix("--from-literal=") {
            let (k, v) = literal
                .split_once('=')
                .unwrap_or_else(|| panic!("{w}: KEY=VALUE"));
            out.insert(k.to_string(), v.to_string());
            continue;
        }
        let Some(spec) = w.strip_prefix("--from-file=") else {
            panic!("{w}: only --from-file and --from-literal are understood here");
        };
        match spec.split_once('=') {
            Some((k, _)) if kind == "Secret" => {
                out.insert(k.to_string(), made.value(k));
            }
            Some((k, path)) => {
                out.insert(k.to_string(), read(path));
            }
            None => {
                let p = repo(spec);
                assert!(
                    p.is_dir(),
                    "{spec} (from the repository root) is not a directory"
                );
                for f in std::fs::read_dir(&p).unwrap() {
                    let f = f.unwrap().path();
                    if f.is_file() {
                        let k = f.file_name().unwrap().to_string_lossy().into_owned();
                        out.insert(k, std::fs::read_to_string(&f).unwrap());
                    }
                }
            }
        }
    }
    out
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    list(pod, "/containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// A container port by number or by name.
fn resolve_port(container: &Value, port: &Value) -> u16 {
    if let Some(p) = port.as_u64() {
        return p as u16;
    }
    let name = port.as_str().unwrap();
    list(container, "/ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| port_of(&p["containerPort"]))
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// The ServiceMonitor's one endpoint: how the Prometheus Operator scrapes the sidecar.
fn service_monitor_endpoint(docs: &[Value]) -> Value {
    let sm = kube_kind(docs, "ServiceMonitor");
    let eps = list(sm, "/spec/endpoints");
    assert_eq!(eps.len(), 1, "one ServiceMonitor endpoint");
    eps[0].clone()
}

/// How Prometheus reaches the sidecar per the ServiceMonitor: https with the CA and server name
/// of its tlsConfig, basic auth with the user and password of its basicAuth, each read from the
/// Secret key it names, as the README's `kubectl create secret` makes it.
fn kube_scrape_access(docs: &[Value], made: &Made) -> Access {
    let ep = service_monitor_endpoint(docs);
    assert_eq!(
        text(&ep, "/scheme"),
        "https",
        "the ServiceMonitor scrapes https"
    );
    let from_secret = |r: &Value| {
        let (name, key) = (text(r, "/name"), text(r, "/key"));
        created_object("Secret", name, made)
            .remove(key)
            .unwrap_or_else(|| panic!("Secret {name} has no key {key}"))
    };
    Access {
        tls: Some((
            from_secret(at(&ep, "/tlsConfig/ca/secret")),
            text(&ep, "/tlsConfig/serverName").to_string(),
        )),
        user: Some((
            from_secret(at(&ep, "/basicAuth/username")),
            from_secret(at(&ep, "/basicAuth/password")),
        )),
    }
}

struct KubeSidecar {
    launch: Launch,
    made: Made,
    _scratch: Scratch,
}

/// The ocx-sentinel container of the Deployment as the kubelet would start it: the image's
/// entrypoint with the container's args and env, every volume mounted under a temporary root
/// (the ConfigMap from the manifest, the rules ConfigMap and the Secrets as the README creates
/// them, the data volume empty). None without openssl, which the web config's certificate
/// needs.
fn kube_sidecar(tag: &str) -> Option<KubeSidecar> {
    let docs = kube_docs();
    let dep = kube_kind(&docs, "Deployment");
    let pod = at(dep, "/spec/template/spec");
    let c = container(pod, "ocx-sentinel");
    let scratch = Scratch::new(tag);
    let server_name = text(&service_monitor_endpoint(&docs), "/tlsConfig/serverName").to_string();
    let made = Made::new(
        &scratch.0,
        &read("deploy/kubernetes/market-maker.yaml"),
        &[&format!("DNS:{server_name}")],
    )?;
    let root = Rooted::new(&scratch.0.join("root"));
    for m in list(c, "/volumeMounts") {
        let dir = root.path(text(m, "/mountPath"));
        std::fs::create_dir_all(&dir).unwrap();
        let v = list(pod, "/volumes")
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("no volume {}", m["name"]));
        let files: BTreeMap<String, String> = if let Some(cm) = v.get("configMap") {
            let name = text(cm, "/name");
            match docs
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
            {
                Some(doc) => at(doc, "/data")
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), root.map(v.as_str().unwrap())))
                    .collect(),
                None => created_object("ConfigMap", name, &made),
            }
        } else if let Some(s) = v.get("secret") {
            created_object("Secret", text(s, "/secretName"), &made)
        } else {
            assert!(
                v.get("persistentVolumeClaim").is_some() || v.get("emptyDir").is_some(),
                "volume {v}"
            );
            BTreeMap::new()
        };
        for (k, body) in files {
            write(&dir.join(k), &body);
        }
    }
    let entrypoint = match c.get("command") {
        Some(_) => strings(c, "/command"),
        None => image().entrypoint,
    };
    assert!(entrypoint[0].ends_with("/ocx-sentinel"), "{entrypoint:?}");
    let mut argv = vec![BIN.to_string()];
    argv.extend(entrypoint[1..].iter().cloned());
    argv.extend(strings(c, "/args").iter().map(|a| root.map(a)));
    let env = c
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| (text(e, "/name").to_string(), root.map(text(e, "/value"))))
        .collect();
    Some(KubeSidecar {
        launch: Launch {
            argv,
            env,
            cwd: scratch.0.clone(),
        },
        made,
        _scratch: scratch,
    })
}

#[test]
fn kubernetes_ports_probes_service_and_servicemonitor_agree_with_the_listeners() {
    let docs = kube_docs();
    let Some(k) = kube_sidecar("kube-ports") else {
        return;
    };
    let effective = k.launch.effective();
    let listen = effective.listen;
    assert!(
        listen.ip().is_unspecified(),
        "{listen}: Prometheus could not reach it"
    );
    let port = listen.port();
    // The kubelet probes the pod's IP, without credentials: the health listener, on every
    // interface of the pod, on a port of its own.
    let health = effective
        .health
        .expect("no health listener: the probes would need the scrape credentials");
    assert!(
        health.ip().is_unspecified(),
        "{health}: the kubelet could not reach it"
    );
    assert_ne!(health.port(), port);

    let dep = kube_kind(&docs, "Deployment");
    let tmpl = at(dep, "/spec/template");
    let pod = at(tmpl, "/spec");
    let c = container(pod, "ocx-sentinel");
    assert_eq!(resolve_port(c, &Value::from(port)), port);
    let declared: BTreeSet<u16> = list(c, "/ports")
        .iter()
        .filter_map(|p| port_of(&p["containerPort"]))
        .collect();
    assert_eq!(
        declared,
        BTreeSet::from([port, health.port()]),
        "containerPorts vs listen and health_listen"
    );
    assert_eq!(text(c, "/livenessProbe/httpGet/path"), "/-/healthy");
    assert_eq!(text(c, "/readinessProbe/httpGet/path"), "/-/ready");
    for probe in ["livenessProbe", "readinessProbe"] {
        let p = at(c, &format!("/{probe}/httpGet/port"));
        assert_eq!(resolve_port(c, p), health.port(), "{probe} port");
        // HTTP, and no credentials in the spec (httpHeaders would leak /metrics access).
        let get = at(c, &format!("/{probe}/httpGet"));
        assert!(
            get.get("httpHeaders").is_none(),
            "{probe} carries headers: {get}"
        );
        assert_ne!(
            get.get("scheme").and_then(Value::as_str),
            Some("HTTPS"),
            "{probe}: the health listener is plain HTTP"
        );
    }
    let ann = at(tmpl, "/metadata/annotations");
    assert_eq!(text(ann, "/prometheus.io~1scrape"), "true");
    assert_eq!(text(ann, "/prometheus.io~1scheme"), "https");
    assert_eq!(
        port_of(at(ann, "/prometheus.io~1port")),
        Some(port),
        "prometheus.io/port"
    );
    assert_eq!(text(ann, "/prometheus.io~1path"), "/metrics");

    // The Service selects this pod and forwards to the listener, and only to it.
    let svc = kube_kind(&docs, "Service");
    for (k, v) in at(svc, "/spec/selector").as_object().unwrap() {
        assert_eq!(&tmpl["metadata"]["labels"][k], v, "Service selector {k}");
    }
    let targets: Vec<u16> = list(svc, "/spec/ports")
        .iter()
        .map(|p| resolve_port(c, &p["targetPort"]))
        .collect();
    assert_eq!(targets, vec![port], "the Service's target ports");
    let sp = &list(svc, "/spec/ports")[0];
    assert_eq!(port_of(&sp["port"]), Some(port));
    // And the ServiceMonitor selects the Service and scrapes that port by name, https with the
    // CA and basic auth from a Secret the README creates.
    let sm = kube_kind(&docs, "ServiceMonitor");
    assert_eq!(text(sm, "/apiVersion"), "monitoring.coreos.com/v1");
    for (k, v) in at(sm, "/spec/selector/matchLabels").as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selector {k}"
        );
    }
    let ep = service_monitor_endpoint(&docs);
    assert_eq!(ep["port"], sp["name"], "ServiceMonitor endpoint port");
    assert_eq!(text(&ep, "/path"), "/metrics");
    // The certificate the instructions make must carry the name Prometheus checks (the run
    // test makes one that does; this is what tells the operator to).
    let san = format!("DNS:{}", text(&ep, "/tlsConfig/serverName"));
    for (what, t) in [
        (
            "market-maker.yaml's header",
            read("deploy/kubernetes/market-maker.yaml"),
        ),
        ("the README", read("README.md")),
    ] {
        assert!(
            t.contains(&san),
            "{what} does not say the certificate needs {san}"
        );
    }
    let access = kube_scrape_access(&docs, &k.made);
    let (user, password) = access.user.unwrap();
    assert_eq!(password, k.made.password, "the scrape Secret's password");
    // The user Prometheus sends is one web.yml has, with the hash of that password.
    let web: Value = serde_saphyr::from_str(&k.made.web_yml).unwrap();
    let hash = text(&web, &format!("/basic_auth_users/{user}"));
    assert!(bcrypt::verify(&password, hash).unwrap());

    // Non-root, read-only root filesystem, no privilege escalation, no capabilities.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let sc = at(c, "/securityContext");
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strings(sc, "/capabilities/drop"), vec!["ALL"]);
    for r in ["requests/cpu", "requests/memory", "limits/memory"] {
        at(c, &format!("/resources/{r}"));
    }
    // The key comes from a mounted file, not an env value.
    let env = &k.launch.env;
    assert!(env.iter().any(|(k, _)| k == "OCX_API_KEY_FILE"), "{env:?}");
    assert!(!env.iter().any(|(k, _)| k == "OCX_API_KEY"), "{env:?}");
}

/// The container as the kubelet starts it, with the Secrets made as the README says (a test
/// certificate for the ServiceMonitor's serverName): its probes pass on the health listener,
/// and it serves https with basic auth to what the ServiceMonitor gives Prometheus.
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_sidecar_container_runs_passes_its_probes_and_serves_https_with_basic_auth()
{
    let docs = kube_docs();
    let dep = kube_kind(&docs, "Deployment");
    let c = container(at(dep, "/spec/template/spec"), "ocx-sentinel");
    let ann = at(dep, "/spec/template/metadata/annotations");
    let Some(k) = kube_sidecar("kube-run") else {
        return;
    };
    let access = kube_scrape_access(&docs, &k.made);
    let probes = Probes {
        via: Via::Health,
        healthy: text(c, "/livenessProbe/httpGet/path"),
        ready: text(c, "/readinessProbe/httpGet/path"),
    };
    let metrics = text(ann, "/prometheus.io~1path");
    let (s, _exchange) = assert_runs(&k.launch, &k.launch.cwd, &access, probes, metrics).await;
    assert!(s.base.starts_with("https://"), "{}", s.base);
    // A wrong password is refused like none.
    let wrong = s
        .client
        .get(s.url(Via::Main, metrics))
        .basic_auth(&access.user.as_ref().unwrap().0, Some("not-the-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // The data dir is the mounted volume.
    let data = k.launch.cwd.join("root/var/lib/ocx-sentinel");
    assert!(
        std::fs::read_dir(&data).map(|d| d.count()).unwrap_or(0) > 0,
        "nothing written to the data volume:\n{}",
        s.log()
    );
}

// ---------------------------------------------------------------------------------------------
// systemd

const UNIT: &str = "deploy/systemd/ocx-sentinel.service";

/// (section, key, value) of every assignment in the unit, continued lines joined.
fn unit() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut cur = String::new();
    for line in read(UNIT).lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#') || t.starts_with(';')) {
            continue;
        }
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (k, v) = cur.split_once('=').unwrap_or_else(|| panic!("{cur}"));
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        cur.clear();
    }
    out
}

fn unit_values(key: &str) -> Vec<String> {
    unit()
        .into_iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v)
        .collect()
}

fn unit_value(key: &str) -> String {
    let v = unit_values(key);
    assert_eq!(v.len(), 1, "one {key}= in [Service]: {v:?}");
    v[0].clone()
}

/// The `install` lines of the unit's header comment: how the README puts the files in place.
fn install_lines() -> Vec<String> {
    read(UNIT)
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .filter(|l| l.starts_with("install "))
        .map(|l| l.split("  #").next().unwrap().trim().to_string())
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_systemd_accepts_it() {
    for want in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("MemoryDenyWriteExecute", "yes"),
        ("Restart", "on-failure"),
        ("StateDirectory", "ocx-sentinel"),
    ] {
        assert_eq!(unit_value(want.0), want.1, "{}=", want.0);
    }
    assert!(unit_values("SystemCallFilter").contains(&"@system-service".to_string()));
    let reload = unit_value("ExecReload");
    assert!(
        reload.contains("-HUP") && reload.contains("$MAINPID"),
        "{reload}"
    );
    let readme = read("README.md");
    for l in install_lines() {
        assert!(readme.contains(&l), "the README's systemd steps lack `{l}`");
    }

    if !peer("systemd-analyze") {
        return;
    }
    // verify insists the ExecStart program exists: the debug binary stands in for the
    // installed one.
    let scratch = Scratch::new("systemd-verify");
    let exec = unit_value("ExecStart");
    let prog = exec.split_whitespace().next().unwrap();
    let f = scratch.0.join("ocx-sentinel.service");
    write(&f, &read(UNIT).replace(prog, BIN));
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&f)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown or misspelt settings are only warnings (exit 0): any line about this unit fails.
    let ours: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("ocx-sentinel.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
    // systemd's own exposure score, 0 (locked down) to 10: "OK" is below 2.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&f)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze security: exposure above 2.0:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The unit's ExecStart as systemd would run it, after the header's install steps: specifiers
/// expanded (%d the credentials directory, %S /var/lib), credentials and the state directory
/// created, under a temporary root.
struct SystemdSidecar {
    launch: Launch,
    root: Rooted,
    made: Made,
    _scratch: Scratch,
}

/// The README's systemd steps (what the unit's header points to).
fn readme_systemd_section() -> String {
    let readme = read("README.md");
    let start = readme.find("\n### systemd\n").expect("README: ### systemd");
    let rest = &readme[start + 1..];
    let end = ["\n## ", "\n### "]
        .iter()
        .filter_map(|h| rest.find(h))
        .min()
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

/// None without openssl, which the web config's certificate needs.
fn systemd_sidecar(tag: &str) -> Option<SystemdSidecar> {
    let scratch = Scratch::new(tag);
    let made = Made::new(&scratch.0, &readme_systemd_section(), &[])?;
    let root = Rooted::new(&scratch.0.join("root"));
    let unit_name = Path::new(UNIT)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let creds = format!("/run/credentials/{unit_name}");
    let spec = |s: &str| s.replace("%d", &creds).replace("%S", "/var/lib");

    // The install steps, against the temporary root (the release binary: the debug one).
    let mut binary_dest = None;
    for l in install_lines() {
        let words: Vec<&str> = l.split_whitespace().collect();
        let mut args = Vec::new();
        let mut dirs = false;
        let mut i = 1;
        while i < words.len() {
            match words[i] {
                "-d" => dirs = true,
                "-m" => i += 1,
                w => args.push(w),
            }
            i += 1;
        }
        if dirs {
            for d in args {
                std::fs::create_dir_all(root.path(d)).unwrap();
            }
            continue;
        }
        let (dest, sources) = args.split_last().unwrap();
        for src in sources {
            if src.starts_with("target/") {
                binary_dest = Some(dest.to_string());
                continue;
            }
            for m in glob::glob(&format!("{REPO}/{src}")).unwrap() {
                let m = m.unwrap();
                let to = if dest.ends_with('/') {
                    root.path(dest).join(m.file_name().unwrap())
                } else {
                    root.path(dest)
                };
                let body = std::fs::read_to_string(&m).unwrap();
                write(&to, &root.map(&body));
            }
        }
    }
    // Credentials: LoadCredential=ID:PATH puts PATH's contents at %d/ID.
    let load = unit_values("LoadCredential");
    assert!(!load.is_empty(), "no LoadCredential=");
    for l in &load {
        let (id, path) = l.split_once(':').unwrap();
        assert!(path.starts_with("/etc/ocx-sentinel/credentials/"), "{l}");
        write(&root.path(&format!("{creds}/{id}")), &made.value(id));
    }
    for d in unit_values("StateDirectory") {
        std::fs::create_dir_all(root.path(&format!("/var/lib/{d}"))).unwrap();
    }
    let exec = spec(&unit_value("ExecStart"));
    let mut argv: Vec<String> = exec.split_whitespace().map(String::from).collect();
    assert_eq!(
        Some(&argv[0]),
        binary_dest.as_ref(),
        "ExecStart runs the installed binary"
    );
    argv[0] = BIN.into();
    for a in argv.iter_mut().skip(1) {
        *a = root.map(a);
    }
    let env = unit_values("Environment")
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap();
            (k.to_string(), root.map(&spec(v)))
        })
        .collect();
    Some(SystemdSidecar {
        launch: Launch {
            argv,
            env,
            // The service's working directory: / (no WorkingDirectory=), read-only there.
            cwd: root.root.clone(),
        },
        root,
        made,
        _scratch: scratch,
    })
}

/// How a Prometheus given the CA and the scrape password reaches the unit's sidecar: https
/// checked against `localhost` (a name in the test's certificate), as the one user of its
/// web.yml.
fn systemd_access(made: &Made) -> Access {
    let web: Value = serde_saphyr::from_str(&made.web_yml).unwrap();
    let users: Vec<&String> = at(&web, "/basic_auth_users")
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(users.len(), 1, "one user in web.yml: {users:?}");
    Access {
        tls: Some((made.value("ca.crt"), "localhost".into())),
        user: Some((users[0].clone(), made.password.clone())),
    }
}

#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_unit_runs_with_its_credentials_and_reloads_on_execreload() {
    let Some(sd) = systemd_sidecar("systemd-run") else {
        return;
    };
    let effective = sd.launch.effective();
    assert_eq!(
        effective.listen.port(),
        image().expose,
        "the same port as the image"
    );
    // A check on the host without credentials: loopback only.
    let health = effective.health.expect("no health listener");
    assert!(health.ip().is_loopback(), "{health}");
    let access = systemd_access(&sd.made);
    let probes = Probes {
        via: Via::Health,
        healthy: "/-/healthy",
        ready: "/-/ready",
    };
    let (mut s, _exchange) =
        assert_runs(&sd.launch, &sd.launch.cwd, &access, probes, "/metrics").await;
    assert!(s.base.starts_with("https://"), "{}", s.base);
    // The data dir is the StateDirectory.
    let data = sd.root.path("/var/lib/ocx-sentinel");
    assert!(
        std::fs::read_dir(&data).map(|d| d.count()).unwrap_or(0) > 0,
        "nothing written to the state directory:\n{}",
        s.log()
    );
    // ExecReload, as systemd runs it for `systemctl reload`.
    let reload = unit_value("ExecReload").replace("$MAINPID", &s.child.id().to_string());
    let words: Vec<&str> = reload.split_whitespace().collect();
    let st = Command::new(words[0]).args(&words[1..]).status().unwrap();
    assert!(st.success(), "{reload}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !s.log().contains("SIGHUP: reloading") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload logged:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_status(
        &mut s,
        Via::Main,
        "/-/healthy",
        &[200],
        Duration::from_secs(5),
    )
    .await;
    wait_status(
        &mut s,
        Via::Health,
        "/-/healthy",
        &[200],
        Duration::from_secs(5),
    )
    .await;
    assert!(s.child.try_wait().unwrap().is_none(), "SIGHUP stopped it");
    assert_eq!(
        loaded_rule_files(&s).await,
        shipped_rules(),
        "rules after the reload"
    );
}
