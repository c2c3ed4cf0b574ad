//! `tracing:` and the standard `OTEL_*` environment variables: where spans go over OTLP, how they are sampled, and the resource that names this process.
//!
//! The file's keys win over the environment, which fills in what the file leaves out (as an
//! OpenTelemetry SDK lets code override its environment). Tracing is off unless an endpoint is
//! set in one of the two: with no collector configured nothing is attempted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Builder, Secret, read_secret_file};

/// The OTLP exporter's default timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`'s default, 10s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `OTEL_BSP_MAX_QUEUE_SIZE`'s default.
pub const DEFAULT_QUEUE: usize = 2048;
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`'s default.
pub const DEFAULT_BATCH: usize = 512;
/// `OTEL_BSP_SCHEDULE_DELAY`'s default.
pub const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(5);

/// `tracing:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub otlp: Option<RawOtlp>,
    /// The parent-based ratio sampler's ratio, 0..=1.
    pub sampling_ratio: Option<Spanned<f64>>,
    /// `service.name`; `ocx-sentinel` unless set here or in `OTEL_SERVICE_NAME`.
    pub service_name: Option<Spanned<String>>,
    /// Spans waiting for export; more are dropped and counted.
    pub max_queue_size: Option<Spanned<u64>>,
    pub max_export_batch_size: Option<Spanned<u64>>,
    /// How long a partial batch waits before it is exported.
    pub schedule_delay: Option<Spanned<String>>,
}

/// `tracing.otlp:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    pub endpoint: Option<Spanned<String>>,
    /// `grpc` or `http/protobuf`.
    pub protocol: Option<Spanned<String>>,
    pub headers: Option<BTreeMap<String, Secret>>,
    /// Header values read from files (a collector's token kept out of the config).
    pub header_files: Option<BTreeMap<String, Spanned<String>>>,
    pub timeout: Option<Spanned<String>>,
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Which spans are recorded (`OTEL_TRACES_SAMPLER`'s choices).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedRatio(f64),
}

/// Validated tracing settings; `None` in [`super::Settings::tracing`] means off.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// Used as given for gRPC; for HTTP it is the full URL of the traces path (the file's and
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`'s as given; `OTEL_EXPORTER_OTLP_ENDPOINT` gets
    /// `/v1/traces` appended, as the specification says).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Header names and values; the values are secrets (never logged).
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
    pub sampling: Sampling,
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`, decoded; ours (`service.*`, `ocx.account`) win.
    pub resource: Vec<(String, String)>,
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    pub schedule_delay: Duration,
}

/// Collects the `OTEL_*` variables a process was started with (main passes `std::env::vars()`).
pub fn otel_env(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(k, _)| k.starts_with("OTEL_"))
        .collect()
}

/// Tracing from the `OTEL_*` variables alone (`demo` has no config file): `None` when they set no
/// endpoint; every problem at once, naming the variable.
pub fn tracing_from_env(
    otel_env: BTreeMap<String, String>,
) -> Result<Option<TraceSettings>, super::ConfigError> {
    let flags = super::Overrides {
        otel_env,
        ..super::Overrides::default()
    };
    let mut b = Builder {
        origin: "environment",
        flags: &flags,
        errors: Vec::new(),
    };
    let t = b.tracing(None);
    if b.errors.is_empty() {
        Ok(t)
    } else {
        Err(super::ConfigError::Invalid(b.errors))
    }
}

impl Builder<'_> {
    /// `tracing:` over the `OTEL_*` environment.
    pub(super) fn tracing(&mut self, raw: Option<&RawTracing>) -> Option<TraceSettings> {
        let env = &self.flags.otel_env;
        let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        match get("OTEL_TRACES_EXPORTER") {
            None | Some("otlp") => {}
            Some("none") => return None,
            Some(other) => {
                self.errors.push(format!(
                    "environment: OTEL_TRACES_EXPORTER: {other:?} is not supported (otlp or none)"
                ));
                return None;
            }
        }
        let empty = RawOtlp::default();
        let otlp = raw.and_then(|r| r.otlp.as_ref()).unwrap_or(&empty);

        let protocol = match &otlp.protocol {
            Some(p) => self.protocol(&p.value, &format!("{}: tracing.otlp.protocol", self.at(p))),
            None => match get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v))
                .or_else(|| {
                    get("OTEL_EXPORTER_OTLP_PROTOCOL").map(|v| ("OTEL_EXPORTER_OTLP_PROTOCOL", v))
                }) {
                Some((name, v)) => self.protocol(v, &format!("environment: {name}")),
                // The specification's default.
                None => Some(OtlpProtocol::HttpProtobuf),
            },
        };
        let endpoint = match &otlp.endpoint {
            Some(e) if e.value.trim().is_empty() => {
                self.errors.push(format!(
                    "{}: tracing.otlp.endpoint: must be a URL (leave the key out to export no traces)",
                    self.at(e)
                ));
                None
            }
            Some(e) => Some((
                e.value.trim().to_string(),
                format!("{}: tracing.otlp.endpoint", self.at(e)),
                true,
            )),
            None => get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .map(|v| {
                    (
                        v.to_string(),
                        "environment: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".to_string(),
                        true,
                    )
                })
                .or_else(|| {
                    get("OTEL_EXPORTER_OTLP_ENDPOINT").map(|v| {
                        (
                            v.to_string(),
                            "environment: OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                            false,
                        )
                    })
                }),
        };
        // No endpoint anywhere: off, and nothing else is checked (an `OTEL_*` variable meant
        // for another program must not stop this one).
        let (endpoint, whence, as_given) = endpoint?;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            self.errors.push(format!(
                "{whence}: {endpoint:?} is not an http:// or https:// URL"
            ));
        } else if endpoint.split_once("://").is_some_and(|(_, rest)| {
            rest.split(['/', '?'])
                .next()
                .is_some_and(|a| a.contains('@'))
        }) {
            // The endpoint is logged at start; credentials belong in headers, which never are.
            // The URL is not quoted here for the same reason.
            self.errors.push(format!(
                "{whence}: credentials in the URL are not allowed: put them in tracing.otlp.headers (or header_files)"
            ));
        }
        // A bad protocol is reported; the rest is still checked, so every problem shows at once.
        let protocol_ok = protocol.is_some();
        let protocol = protocol.unwrap_or(OtlpProtocol::HttpProtobuf);
        let endpoint = match (protocol, as_given) {
            (OtlpProtocol::HttpProtobuf, false) => {
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            }
            _ => endpoint,
        };

        let mut headers: Vec<(String, Secret)> = Vec::new();
        if let Some(h) = &otlp.headers {
            headers.extend(h.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())));
        }
        if let Some(files) = &otlp.header_files {
            for (k, path) in files {
                match read_secret_file(&path.value) {
                    Ok(v) => headers.push((k.to_ascii_lowercase(), v)),
                    Err(e) => self.errors.push(format!(
                        "{}: tracing.otlp.header_files.{k}: {e}",
                        self.at(path)
                    )),
                }
            }
        }
        if otlp.headers.is_none() && otlp.header_files.is_none() {
            for name in [
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            ] {
                if let Some(v) = get(name) {
                    match parse_pairs(v) {
                        // The signal-specific variable's values win for the same key.
                        Ok(pairs) => {
                            for (k, v) in pairs {
                                let k = k.to_ascii_lowercase();
                                headers.retain(|(h, _)| *h != k);
                                headers.push((k, Secret::new(v)));
                            }
                        }
                        // The value is a secret: only its shape is named.
                        Err(e) => self.errors.push(format!("environment: {name}: {e}")),
                    }
                }
            }
        }
        for (k, _) in &headers {
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                self.errors
                    .push(format!("tracing.otlp.headers: {k:?} is not a header name"));
            }
        }

        let timeout = match &otlp.timeout {
            Some(_) => self
                .duration(
                    &otlp.timeout,
                    "tracing.otlp.timeout",
                    Duration::from_millis(1),
                )
                .unwrap_or(DEFAULT_TIMEOUT),
            None => self.env_millis(
                get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                    .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", v))
                    .or_else(|| {
                        get("OTEL_EXPORTER_OTLP_TIMEOUT").map(|v| ("OTEL_EXPORTER_OTLP_TIMEOUT", v))
                    }),
                DEFAULT_TIMEOUT,
            ),
        };

        let sampling = match raw.and_then(|r| r.sampling_ratio.as_ref()) {
            Some(r) if (0.0..=1.0).contains(&r.value) => Sampling::ParentBasedRatio(r.value),
            Some(r) => {
                self.errors.push(format!(
                    "{}: tracing.sampling_ratio: {} is not between 0 and 1",
                    self.at(r),
                    r.value
                ));
                Sampling::ParentBasedAlwaysOn
            }
            None => self.env_sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG")),
        };

        let service_name = match raw.and_then(|r| r.service_name.as_ref()) {
            Some(s) if !s.value.trim().is_empty() => s.value.trim().to_string(),
            Some(s) => {
                self.errors.push(format!(
                    "{}: tracing.service_name: must not be empty",
                    self.at(s)
                ));
                String::new()
            }
            None => get("OTEL_SERVICE_NAME")
                .unwrap_or("ocx-sentinel")
                .to_string(),
        };
        let resource = match get("OTEL_RESOURCE_ATTRIBUTES").map(parse_pairs) {
            None => Vec::new(),
            Some(Ok(pairs)) => pairs,
            Some(Err(e)) => {
                self.errors
                    .push(format!("environment: OTEL_RESOURCE_ATTRIBUTES: {e}"));
                Vec::new()
            }
        };

        let raw_or = |f: fn(&RawTracing) -> &Option<Spanned<u64>>| raw.map(f).cloned().flatten();
        let max_queue_size = match raw_or(|r| &r.max_queue_size) {
            Some(v) => self.at_least(&Some(v), "tracing.max_queue_size", 1, DEFAULT_QUEUE),
            None => self.env_count(
                get("OTEL_BSP_MAX_QUEUE_SIZE"),
                "OTEL_BSP_MAX_QUEUE_SIZE",
                DEFAULT_QUEUE,
            ),
        };
        let max_export_batch_size = match raw_or(|r| &r.max_export_batch_size) {
            Some(v) => self.at_least(&Some(v), "tracing.max_export_batch_size", 1, DEFAULT_BATCH),
            None => self.env_count(
                get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                DEFAULT_BATCH,
            ),
        };
        let schedule_delay = match raw.and_then(|r| r.schedule_delay.as_ref()) {
            Some(_) => self
                .duration(
                    &raw.and_then(|r| r.schedule_delay.clone()),
                    "tracing.schedule_delay",
                    Duration::from_millis(1),
                )
                .unwrap_or(DEFAULT_SCHEDULE_DELAY),
            None => self.env_millis(
                get("OTEL_BSP_SCHEDULE_DELAY").map(|v| ("OTEL_BSP_SCHEDULE_DELAY", v)),
                DEFAULT_SCHEDULE_DELAY,
            ),
        };
        if !protocol_ok {
            return None;
        }
        Some(TraceSettings {
            endpoint,
            protocol,
            headers,
            timeout,
            sampling,
            service_name,
            resource,
            max_queue_size,
            // A batch larger than the queue could never fill.
            max_export_batch_size: max_export_batch_size.min(max_queue_size),
            schedule_delay,
        })
    }

    fn protocol(&mut self, v: &str, whence: &str) -> Option<OtlpProtocol> {
        match v.trim() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            other => {
                let hint = if other == "http/json" {
                    " (http/json is not supported)"
                } else {
                    ""
                };
                self.errors.push(format!(
                    "{whence}: {other:?} is not an OTLP protocol: grpc or http/protobuf{hint}"
                ));
                None
            }
        }
    }

    /// A variable in milliseconds (the specification's unit for the OTLP and batch timeouts).
    fn env_millis(&mut self, var: Option<(&str, &str)>, default: Duration) -> Duration {
        let Some((name, v)) = var else {
            return default;
        };
        match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                self.errors.push(format!(
                    "environment: {name}: {v:?} is not a positive number of milliseconds"
                ));
                default
            }
        }
    }

    fn env_count(&mut self, v: Option<&str>, name: &str, default: usize) -> usize {
        let Some(v) = v else {
            return default;
        };
        match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                self.errors.push(format!(
                    "environment: {name}: {v:?} is not a positive whole number"
                ));
                default
            }
        }
    }

    fn env_sampler(&mut self, sampler: Option<&str>, arg: Option<&str>) -> Sampling {
        let ratio = |b: &mut Self| match arg {
            None => 1.0,
            Some(a) => match a.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    b.errors.push(format!(
                        "environment: OTEL_TRACES_SAMPLER_ARG: {a:?} is not a ratio between 0 and 1"
                    ));
                    1.0
                }
            },
        };
        match sampler {
            None | Some("parentbased_always_on") => Sampling::ParentBasedAlwaysOn,
            Some("always_on") => Sampling::AlwaysOn,
            Some("always_off") => Sampling::AlwaysOff,
            Some("parentbased_always_off") => Sampling::ParentBasedAlwaysOff,
            Some("traceidratio") => Sampling::Ratio(ratio(self)),
            Some("parentbased_traceidratio") => Sampling::ParentBasedRatio(ratio(self)),
            Some(other) => {
                self.errors.push(format!(
                    "environment: OTEL_TRACES_SAMPLER: {other:?} is not supported (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
                ));
                Sampling::ParentBasedAlwaysOn
            }
        }
    }
}

/// `key=value,key2=value2` with percent-encoded values (the W3C baggage form the `OTEL_*`
/// header and resource variables use). The error never quotes a value: header values are
/// secrets.
pub fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, item) in s.split(',').enumerate() {
        if item.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("entry {} has no `=`", i + 1));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("entry {} has an empty key", i + 1));
        }
        let v = percent_decode(v.trim())
            .ok_or_else(|| format!("entry {} ({k}) has a bad %-escape", i + 1))?;
        out.push((k.to_string(), v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
