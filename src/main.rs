//! The `ocx-sentinel` command line: argument parsing, logging setup and signal handling; the work lives in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use ocx_sentinel::app::Sidecar;
use ocx_sentinel::config::{self, Overrides, RawConfig, Secret, Settings};
use ocx_sentinel::rules;
use ocx_sentinel::traces::log::{LogFormat, TraceAware};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "ocx-sentinel",
    version,
    about = "Monitoring and alerting sidecar for OCX perps market makers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as `text` or `json` (one object a line); with tracing on, a line written
    /// inside a sampled span carries its `trace_id` and `span_id`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sidecar against the exchange.
    Run(RunArgs),
    /// Validate a config file (and flags) and Prometheus rule files, without connecting anywhere.
    Check(CheckArgs),
    /// Run rule unit tests in promtool's test-file format (`promtool test rules`).
    Test {
        /// Test files (`rule_files`, `tests[]` with `input_series`, `alert_rule_test`,
        /// `promql_expr_test`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    // The simulator's subcommands exist only in builds with the `sim` feature (the default), so
    // a production build's `--help` does not offer what it cannot run.
    /// Start the built-in OCX simulator and the sidecar against it: no key, no network.
    #[cfg(feature = "sim")]
    Demo(with_sim::DemoArgs),
    /// Serve the OCX simulator alone (SSE streams and pull endpoints).
    #[cfg(feature = "sim")]
    Simulate(with_sim::SimArgs),
}

#[derive(Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Rule files to check (Prometheus rule-file format); the config is checked too when
    /// `--config` is given or no rule file is.
    rule_files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// YAML config file; flags override it, and flags alone are enough to run.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Exchange API base URL.
    #[arg(long, env = "OCX_API_BASE")]
    api_base: Option<String>,
    /// API key (prefer OCX_API_KEY or --api-key-file: command lines are visible to other users).
    #[arg(long, env = "OCX_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// File holding the API key.
    #[arg(long, env = "OCX_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// Address for /metrics, health and the status page [default: 0.0.0.0:9477].
    #[arg(long, env = "OCX_LISTEN")]
    listen: Option<String>,
    /// Address for a second listener serving only /-/healthy and /-/ready, plain HTTP without
    /// auth, for probes with no credentials (replaces the config's `health_listen:`) [default:
    /// none].
    #[arg(long, env = "OCX_HEALTH_LISTEN", value_name = "ADDR")]
    health_listen: Option<String>,
    /// Market whose events stream (order book) to follow; repeatable.
    #[arg(long = "market")]
    markets: Vec<String>,
    /// Ask the exchange for open positions only.
    #[arg(long)]
    open_only: bool,
    /// Server emit cadence in ms (100..=5000).
    #[arg(long)]
    interval_ms: Option<u64>,
    /// Account name (the `account` label); selects the account when the file defines several.
    #[arg(long)]
    account: Option<String>,
    /// Where fill dedup and counters survive restarts [default: ./data].
    #[arg(long, env = "OCX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Prometheus rule file or glob; repeatable; replaces the config's `rule_files:`.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Alertmanager-format file (route, receivers, inhibit_rules): where notifications go.
    #[arg(long, value_name = "FILE")]
    alerting: Option<PathBuf>,
    /// Prometheus exporter-toolkit web configuration file: TLS and basic auth for every
    /// endpoint (replaces the config's `web_config_file:`).
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
}

fn init_logging(format: LogFormatArg) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(format == LogFormat::Text && std::io::stderr().is_terminal())
        .event_format(TraceAware(format))
        .init();
}

fn settings_from(args: RunArgs) -> Result<Settings> {
    let (raw, origin) = match &args.config {
        Some(p) => (config::load_file(p)?, p.display().to_string()),
        None => (RawConfig::default(), "flags".to_string()),
    };
    let flags = Overrides {
        listen: args.listen,
        health_listen: args.health_listen,
        api_base: args.api_base,
        api_key: args.api_key.map(Secret::new),
        api_key_file: args.api_key_file,
        markets: args.markets,
        open_only: args.open_only,
        interval_ms: args.interval_ms,
        account: args.account,
        data_dir: args.data_dir,
        rules: args.rules,
        alerting: args.alerting,
        web_config_file: args.web_config_file,
        config_path: args.config.clone(),
        otel_env: config::otel_env(std::env::vars()),
    };
    Ok(Settings::build(raw, flags, &origin)?)
}

/// `check`: the config (when asked for, or when there is nothing else) and every rule file; all
/// problems are printed, each naming file:line:column, before the exit status says whether any.
fn check(args: CheckArgs) -> Result<()> {
    let mut failed = 0usize;
    let mut files = args.rule_files.clone();
    if args.run.config.is_some() || args.rule_files.is_empty() {
        let settings = settings_from(args.run)?;
        // The rule files the config (`rule_files:`) or `--rules` names are checked too.
        if let rules::runner::RuleSource::Paths(patterns) = &settings.rules.source {
            match rules::runner::expand(patterns) {
                Ok(found) => {
                    for f in found {
                        if !files.contains(&f) {
                            files.push(f);
                        }
                    }
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{e}");
                }
            }
        }
        // And the alerting file, as `run` would load it (receivers built, secrets files read).
        if let Some(ocx_sentinel::config::AlertingSource::File(path)) = &settings.alerting {
            match ocx_sentinel::notify::config::load_file(path) {
                Ok(cfg) => match ocx_sentinel::notify::wire::integrations(&cfg) {
                    Ok(_) => println!(
                        "alerting ok: {}: {} receiver(s), {} route(s), {} inhibit rule(s)",
                        path.display(),
                        cfg.receivers.len(),
                        cfg.route.nodes().len(),
                        cfg.inhibit_rules.len()
                    ),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{}: {e}", path.display());
                    }
                },
                Err(e) => {
                    failed += 1;
                    eprintln!("{e}");
                }
            }
        }
        if let Some(f) = &settings.web.config {
            println!(
                "web config ok: {}: {}",
                f.path.display(),
                f.loaded.describe()
            );
        }
        println!(
            "config ok: {} account(s), {} stream(s), listen {}{}",
            settings.accounts.len(),
            settings
                .accounts
                .iter()
                .map(|a| 1 + a.markets.len())
                .sum::<usize>(),
            settings.listen,
            settings
                .web
                .health_listen
                .map(|h| format!(", health listen {h}"))
                .unwrap_or_default()
        );
    }
    for path in &files {
        match rules::file::load_file(path) {
            Ok(f) => {
                let rules: usize = f.groups.iter().map(|g| g.rules.len()).sum();
                println!(
                    "rules ok: {}: {} group(s), {rules} rule(s)",
                    path.display(),
                    f.groups.len()
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("{e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} file(s) have errors",
            files.len().max(failed)
        );
    }
    Ok(())
}

/// `test`: promtool's unit-test format, promtool's output, exit 1 when any test fails.
fn test_rules(files: &[PathBuf]) -> Result<()> {
    let mut failed = 0usize;
    for path in files {
        match rules::unittest::run_file(path) {
            Ok(report) => {
                print!("{}", report.text());
                if !report.passed() {
                    failed += 1;
                }
            }
            Err(e) => {
                failed += 1;
                println!("Unit Testing:  {}\n  FAILED:\n    {e}\n", path.display());
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} test file(s) failed", files.len());
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// SIGHUP reloads the rule files, as it does Prometheus's (the outcome is logged by the engine,
/// and a bad file keeps the previous rules).
async fn reload_on_sighup(rules: ocx_sentinel::rules::runner::RulesHandle) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the rule files");
            let _ = rules.reload().await;
        }
    }
    #[cfg(not(unix))]
    let _ = rules;
}

/// In a build without the simulator, `demo` and `simulate` are not subcommands; someone following
/// the README's `demo` line is told why instead of getting clap's bare "unrecognized subcommand".
#[cfg(not(feature = "sim"))]
fn refuse_simulator_commands() {
    if let Some(cmd) = std::env::args_os()
        .nth(1)
        .filter(|a| a == "demo" || a == "simulate")
    {
        eprintln!(
            "error: `{}` needs the built-in OCX simulator, and this ocx-sentinel was built without it \
             (cargo feature `sim`, left out by --no-default-features); rebuild with default features to get `demo` and `simulate`",
            cmd.to_string_lossy()
        );
        std::process::exit(2);
    }
}

fn main() -> ExitCode {
    #[cfg(not(feature = "sim"))]
    refuse_simulator_commands();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line; no backtrace for config errors.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => {
            let settings = settings_from(args)?;
            let sidecar = Sidecar::start(settings).await?;
            tracing::info!(url = %sidecar.base_url(), health = ?sidecar.health_addr, "ocx-sentinel listening");
            let hup = tokio::spawn(reload_on_sighup(sidecar.rules.clone()));
            shutdown_signal().await;
            hup.abort();
            tracing::info!("shutting down");
            sidecar.shutdown().await;
        }
        Command::Check(args) => check(args)?,
        Command::Test { files } => test_rules(&files)?,
        #[cfg(feature = "sim")]
        Command::Demo(a) => with_sim::demo(a).await?,
        #[cfg(feature = "sim")]
        Command::Simulate(a) => with_sim::simulate(a).await?,
    }
    Ok(())
}

/// The simulator's subcommands, `demo` and `simulate`: compiled only with the `sim` feature.
#[cfg(feature = "sim")]
mod with_sim {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use anyhow::{Context, Result};
    use clap::Args;
    use ocx_sentinel::app;
    use ocx_sentinel::config::{self, WebSettings};
    use ocx_sentinel::sim::{self, Faults, SimConfig, TsFormat};

    use super::shutdown_signal;

    #[derive(Args, Debug)]
    pub struct DemoArgs {
        /// Address for /metrics and the status page.
        #[arg(long, default_value = "127.0.0.1:9477")]
        listen: SocketAddr,
        /// Seed of the simulated market.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Keep the demo's data dir here (default: a temporary directory removed on exit).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Prometheus exporter-toolkit web configuration file: TLS and basic auth.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
        /// Address for a second listener serving only /-/healthy and /-/ready, plain HTTP
        /// without auth, for probes with no credentials [default: none].
        #[arg(long, value_name = "ADDR")]
        health_listen: Option<SocketAddr>,
    }

    #[derive(Args, Debug)]
    pub struct SimArgs {
        #[arg(long, default_value = "127.0.0.1:9478")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Comma-separated market ids.
        #[arg(long, value_delimiter = ',')]
        markets: Vec<String>,
        /// Require this API key (x-api-key, Bearer, or cookie).
        #[arg(long)]
        api_key: Option<String>,
        /// Heartbeat interval when idle, in seconds.
        #[arg(long, default_value_t = 15)]
        heartbeat_secs: u64,
        /// World step period in ms.
        #[arg(long, default_value_t = 200)]
        tick_ms: u64,
        /// Write timestamps as unix milliseconds instead of ISO-8601.
        #[arg(long)]
        millis_timestamps: bool,
        /// Fault: close each stream after N events.
        #[arg(long)]
        drop_every: Option<u64>,
        /// Fault: every Nth delta skips a sequence number.
        #[arg(long)]
        skip_seq_every: Option<u64>,
        /// Fault: send no heartbeats.
        #[arg(long)]
        stop_heartbeats: bool,
        /// Fault: go silent (no events, no heartbeats) after N events.
        #[arg(long)]
        silent_after: Option<u64>,
        /// Fault: every Nth event is an `error` event.
        #[arg(long)]
        error_every: Option<u64>,
        /// Fault: error events are retryable.
        #[arg(long)]
        error_retryable: bool,
        /// Fault: every Nth event carries malformed JSON.
        #[arg(long)]
        malformed_every: Option<u64>,
        /// Fault: answer every request with this HTTP status (401, 429, 500, 503).
        #[arg(long)]
        http_status: Option<u16>,
        /// Fault: Retry-After seconds sent with 429/503.
        #[arg(long)]
        retry_after_secs: Option<u64>,
        /// Fault: every Nth trade is never streamed but listed by /perps/trades.
        #[arg(long)]
        drop_fill_every: Option<u64>,
        /// Fault: answer only the pull endpoints with this HTTP status.
        #[arg(long)]
        rest_status: Option<u16>,
        /// Scripted inventory excursion, the demo's shape: AFTER seconds after the start the
        /// position on MARKET jumps to STEPS quantity steps, is held 40s, closed, and the market
        /// stays flat 20s more; again every 2 minutes.
        #[arg(long, value_name = "MARKET:STEPS:AFTER", value_parser = parse_excursion)]
        excursion: Option<(String, i64, u64)>,
    }

    fn parse_excursion(s: &str) -> Result<(String, i64, u64), String> {
        let usage = || format!("{s:?}: expected MARKET:STEPS:AFTER_SECS, e.g. SOL-PERP:200:60");
        let mut parts = s.split(':');
        let (Some(market), Some(steps), Some(after), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(usage());
        };
        let steps: i64 = steps.parse().map_err(|_| usage())?;
        let after: u64 = after.parse().map_err(|_| usage())?;
        if market.is_empty() || steps <= 0 {
            return Err(usage());
        }
        Ok((market.to_string(), steps, after))
    }

    pub async fn demo(args: DemoArgs) -> Result<()> {
        let DemoArgs {
            listen,
            seed,
            data_dir,
            web_config_file,
            health_listen,
        } = args;
        // A bad file stops the demo before anything starts, naming file:line and the field.
        let web = match &web_config_file {
            Some(path) => WebSettings::with_file(path)?,
            None => WebSettings::default(),
        };
        let web = WebSettings {
            health_listen,
            ..web
        };
        // A fresh demo each time unless asked to keep one: its fills are simulated.
        let (dir, temporary) = match data_dir {
            Some(d) => (d, false),
            None => (
                std::env::temp_dir().join(format!("ocx-sentinel-demo-{}", std::process::id())),
                true,
            ),
        };
        // Traces too, when the standard OTEL_* variables name a collector.
        let tracing = config::tracing_from_env(config::otel_env(std::env::vars()))?;
        let traces_to = tracing
            .as_ref()
            .map(|t| format!("{} ({})", t.endpoint, t.protocol.as_str()));
        let (sim, sidecar) = app::start_demo(listen, seed, Some(dir.clone()), web, tracing)
            .await
            .context("starting the demo")?;
        println!("ocx-sentinel demo");
        println!("  simulator (OCX API):  {}", sim.base_url());
        println!("  metrics:              {}/metrics", sidecar.base_url());
        println!("  status page:          {}/", sidecar.base_url());
        if let Some(to) = traces_to {
            println!("  traces (OTLP):        {to}");
        }
        println!("  readiness:            {}/-/ready", sidecar.base_url());
        if let Some(h) = sidecar.health_addr {
            println!("  probes (no auth):     http://{h}/-/healthy, http://{h}/-/ready");
        }
        println!(
            "  alerts:               {}/api/v1/alerts",
            sidecar.base_url()
        );
        println!("Notifications print below as they are sent (receiver demo-stdout).");
        println!("Ctrl-C to stop.");
        shutdown_signal().await;
        sidecar.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_millis(300), sim.shutdown()).await;
        if temporary {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    }

    pub async fn simulate(a: SimArgs) -> Result<()> {
        let mut cfg = SimConfig {
            seed: a.seed,
            api_key: a.api_key,
            heartbeat_interval: Duration::from_secs(a.heartbeat_secs.max(1)),
            tick: Duration::from_millis(a.tick_ms.max(1)),
            timestamps: if a.millis_timestamps {
                TsFormat::Millis
            } else {
                TsFormat::Iso
            },
            faults: Faults {
                drop_every: a.drop_every,
                skip_seq_every: a.skip_seq_every,
                stop_heartbeats: a.stop_heartbeats,
                silent_after: a.silent_after,
                error_every: a.error_every,
                error_retryable: a.error_retryable,
                malformed_every: a.malformed_every,
                http_status: a.http_status,
                retry_after_secs: a.retry_after_secs,
                drop_fill_every: a.drop_fill_every,
                rest_status: a.rest_status,
                ..Faults::default()
            },
            ..SimConfig::default()
        };
        if !a.markets.is_empty() {
            cfg.markets = a.markets;
        }
        if let Some((market, steps, after)) = a.excursion {
            if !cfg.markets.contains(&market) {
                anyhow::bail!("--excursion: the simulator has no market {market:?}");
            }
            cfg.excursion = Some(app::demo_excursion_on(
                &cfg,
                &market,
                steps,
                Duration::from_secs(after),
            ));
        }
        let sim = sim::start(cfg, a.listen)
            .await
            .with_context(|| format!("starting the simulator on {}", a.listen))?;
        println!("OCX simulator on {}", sim.base_url());
        println!("  curl -N {}/perps/stream/user", sim.base_url());
        shutdown_signal().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), sim.shutdown()).await;
        Ok(())
    }
}
