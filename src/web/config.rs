//! The web configuration file (`--web.config.file`, `web_config_file:`): the format of Prometheus's exporter-toolkit (TLS, basic auth users, response headers, rate limit), parsed strictly, validated with file:line:column, and built into what the listener serves with.
//!
//! Parse, validate, build, as the sidecar's own config: [`RawWebConfig`] is what the file says
//! (unknown keys are errors, as the toolkit's `UnmarshalStrict`), the private `Builder` checks
//! every field and collects every problem, and [`WebConfig`] is the result: a rustls
//! `ServerConfig` ready to accept with, the users' bcrypt hashes, the extra headers. Relative
//! paths are relative to the web configuration file's directory, as in the toolkit.
//!
//! Where rustls cannot do what a field asks (TLS 1.0 and 1.1, CBC cipher suites, the P-521
//! curve), the file is refused with an error naming the field, never silently served with
//! something else.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::{cipher_suite as cs, kx_group};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::tls::{AnyClientCert, RequireSans};
use crate::config::{Secret, locate_yaml_error, parse_duration};

/// The file as written: the toolkit's four sections, every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebConfig {
    pub tls_server_config: Option<Spanned<RawTls>>,
    pub http_server_config: Option<RawHttp>,
    /// User name to bcrypt hash.
    pub basic_auth_users: Option<BTreeMap<String, Spanned<Secret>>>,
    pub rate_limit: Option<Spanned<RawRateLimit>>,
}

/// `tls_server_config:`, with the toolkit's names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The certificate (chain) inline, PEM.
    pub cert: Option<Spanned<String>>,
    /// The private key inline, PEM.
    pub key: Option<Spanned<Secret>>,
    /// Client CA certificates inline, PEM.
    pub client_ca: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub client_auth_type: Option<Spanned<String>>,
    pub client_ca_file: Option<Spanned<String>>,
    pub cipher_suites: Option<Vec<Spanned<String>>>,
    pub curve_preferences: Option<Vec<Spanned<String>>>,
    pub min_version: Option<Spanned<String>>,
    pub max_version: Option<Spanned<String>>,
    pub prefer_server_cipher_suites: Option<Spanned<bool>>,
    pub client_allowed_sans: Option<Vec<Spanned<String>>>,
}

/// `http_server_config:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub http2: Option<Spanned<bool>>,
    pub headers: Option<BTreeMap<String, Spanned<String>>>,
}

/// `rate_limit:`: a token bucket over every request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub interval: Option<Spanned<String>>,
    pub burst: Option<Spanned<u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Every problem found, one line each, each naming file:line:column and the field.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// `rate_limit:` built: one request per `interval` on average, bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub interval: Duration,
    pub burst: u32,
}

/// A loaded, validated web configuration. The empty one (no file) serves plain HTTP with no
/// checks.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub(crate) tls: Option<Arc<ServerConfig>>,
    /// User name and bcrypt hash, as the file lists them.
    pub(crate) users: Vec<(String, Secret)>,
    /// The index of the user with the costliest hash: an unknown user's password is checked
    /// against it, so a wrong name costs as long as a wrong password and timing tells nothing.
    pub(crate) decoy: usize,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) rate_limit: Option<RateLimit>,
    /// What was read, in order (the file, then the files it names), with a hash of the bytes
    /// read: the watcher re-reads them to notice a change.
    pub(crate) sources: Vec<(PathBuf, u64)>,
    summary: Summary,
}

/// What a log line says about a configuration (never a secret).
#[derive(Debug, Clone, Default)]
struct Summary {
    tls: bool,
    http2: bool,
    client_auth: &'static str,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.summary.tls)
            .field("http2", &self.summary.http2)
            .field("client_auth", &self.summary.client_auth)
            .field(
                "users",
                &self.users.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            )
            .field("headers", &self.headers.len())
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl WebConfig {
    /// Whether connections are TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether requests need `basic_auth_users` credentials.
    pub fn basic_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// One line for the log and `check`: TLS or not, client certificates, users (names only).
    pub fn describe(&self) -> String {
        let tls = if self.summary.tls {
            format!(
                "TLS (client certificates: {}, HTTP/2 {})",
                self.summary.client_auth,
                if self.summary.http2 { "on" } else { "off" }
            )
        } else {
            "plain HTTP".to_string()
        };
        let users = match self.users.len() {
            0 => "no basic auth".to_string(),
            n => format!("basic auth with {n} user(s)"),
        };
        format!("{tls}, {users}")
    }
}

/// Reads and builds the file at `path`; every problem is reported at once.
pub fn load_file(path: &Path) -> Result<WebConfig, WebConfigError> {
    load_traced(path).0
}

/// As [`load_file`], and also what was read (path and content hash, the file first), whether
/// or not it loaded: a file that failed is tried again when any of them changes.
pub(crate) fn load_traced(path: &Path) -> (Result<WebConfig, WebConfigError>, Vec<(PathBuf, u64)>) {
    let mut sources = Vec::new();
    let text = match std::fs::read(path) {
        Ok(bytes) => {
            sources.push((path.to_path_buf(), content_hash(Some(&bytes))));
            bytes
        }
        Err(source) => {
            sources.push((path.to_path_buf(), content_hash(None)));
            let err = WebConfigError::Read {
                path: path.display().to_string(),
                source,
            };
            return (Err(err), sources);
        }
    };
    let origin = path.display().to_string();
    let Ok(text) = String::from_utf8(text) else {
        let err = WebConfigError::Invalid(vec![format!("{origin}: not UTF-8 text")]);
        return (Err(err), sources);
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let result = build(&text, &origin, dir, &mut sources).map(|mut c| {
        c.sources = sources.clone();
        c
    });
    (result, sources)
}

/// Builds a configuration from `text`; `origin` names it in errors and `dir` is what relative
/// paths in it are relative to.
pub fn parse_str(text: &str, origin: &str, dir: &Path) -> Result<WebConfig, WebConfigError> {
    build(text, origin, dir, &mut Vec::new())
}

fn build(
    text: &str,
    origin: &str,
    dir: &Path,
    sources: &mut Vec<(PathBuf, u64)>,
) -> Result<WebConfig, WebConfigError> {
    let raw = if text.trim().is_empty() {
        // An empty file is valid, as in the toolkit: plain HTTP, no users.
        RawWebConfig::default()
    } else {
        serde_saphyr::from_str::<RawWebConfig>(text).map_err(|e| {
            let (at, message) = locate_yaml_error(origin, &e.to_string());
            WebConfigError::Invalid(vec![format!("{at}: {message}")])
        })?
    };
    let mut b = Builder {
        origin,
        dir,
        errors: Vec::new(),
        sources,
    };
    let http2 = raw
        .http_server_config
        .as_ref()
        .and_then(|h| h.http2.as_ref())
        .is_none_or(|v| v.value);
    let headers = raw
        .http_server_config
        .as_ref()
        .map(|h| b.headers(h))
        .unwrap_or_default();
    let (tls, client_auth) = match &raw.tls_server_config {
        Some(t) => b.tls(t, http2),
        None => (None, "none"),
    };
    let (users, decoy) = b.users(raw.basic_auth_users.as_ref());
    let rate_limit = raw.rate_limit.as_ref().and_then(|r| b.rate_limit(r));
    if !b.errors.is_empty() {
        return Err(WebConfigError::Invalid(b.errors));
    }
    Ok(WebConfig {
        summary: Summary {
            tls: tls.is_some(),
            http2,
            client_auth,
        },
        tls,
        users,
        decoy,
        headers,
        rate_limit,
        sources: Vec::new(),
    })
}

/// A hash of a file's bytes (or of its absence), to notice changes without keeping the bytes
/// (keys among them) around.
pub(crate) fn content_hash(bytes: Option<&[u8]>) -> u64 {
    // `DefaultHasher::new()` has fixed keys: the same bytes hash the same within the process,
    // which is all change detection needs.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The response headers the toolkit lets a file set, with the values it accepts (none listed:
/// any value).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// The `client_auth_type` values, the toolkit's (Go's `tls.ClientAuthType` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "NoClientCert" => Self::NoClientCert,
            "RequestClientCert" => Self::RequestClientCert,
            // The toolkit keeps the old name for compatibility; so do we.
            "RequireAnyClientCert" | "RequireClientCert" => Self::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => Self::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => Self::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::NoClientCert => "NoClientCert",
            Self::RequestClientCert => "RequestClientCert",
            Self::RequireAnyClientCert => "RequireAnyClientCert",
            Self::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            Self::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }

    fn verifies(self) -> bool {
        matches!(
            self,
            Self::VerifyClientCertIfGiven | Self::RequireAndVerifyClientCert
        )
    }
}

/// Go's cipher suite names for the TLS 1.2 suites rustls (with ring) has.
fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

const TLS12_SUITE_NAMES: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, \
     TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, \
     TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";

/// Go accepts the TLS 1.3 suites' names in `cipher_suites` and ignores them (TLS 1.3's suites
/// are not configurable there); so does this.
const TLS13_SUITE_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Collects every problem while building; one method per section.
struct Builder<'a> {
    origin: &'a str,
    dir: &'a Path,
    errors: Vec<String>,
    sources: &'a mut Vec<(PathBuf, u64)>,
}

impl Builder<'_> {
    fn at<T>(&self, s: &Spanned<T>) -> String {
        format!(
            "{}:{}:{}",
            self.origin,
            s.referenced.line(),
            s.referenced.column()
        )
    }

    fn error<T>(&mut self, s: &Spanned<T>, field: &str, message: impl fmt::Display) {
        let at = self.at(s);
        self.errors.push(format!("{at}: {field}: {message}"));
    }

    /// Reads a file the configuration names, relative to its directory; the error names the
    /// path as written.
    fn read(&mut self, f: &Spanned<String>, field: &str) -> Option<Vec<u8>> {
        if f.value.trim().is_empty() {
            self.error(f, field, "is empty (name a file, or leave the key out)");
            return None;
        }
        let path = self.dir.join(&f.value);
        match std::fs::read(&path) {
            Ok(bytes) => {
                self.sources.push((path, content_hash(Some(&bytes))));
                Some(bytes)
            }
            Err(e) => {
                self.sources.push((path, content_hash(None)));
                self.error(f, field, format!("cannot read {}: {e}", f.value));
                None
            }
        }
    }

    /// Inline PEM or a file, not both; `None` (and an error when `needed`) when neither.
    fn pem_source(
        &mut self,
        inline: Option<(&Spanned<String>, &str)>,
        file: Option<(&Spanned<String>, &str)>,
    ) -> Option<(Vec<u8>, String, String)> {
        match (inline, file) {
            (Some((i, iname)), Some((_, fname))) => {
                self.error(
                    i,
                    &format!("tls_server_config.{iname}"),
                    format!("set {iname} or {fname}, not both"),
                );
                None
            }
            (Some((i, iname)), None) => Some((
                i.value.as_bytes().to_vec(),
                self.at(i),
                format!("tls_server_config.{iname}"),
            )),
            (None, Some((f, fname))) => {
                let field = format!("tls_server_config.{fname}");
                let bytes = self.read(f, &field)?;
                Some((bytes, self.at(f), field))
            }
            (None, None) => None,
        }
    }

    fn tls(
        &mut self,
        t: &Spanned<RawTls>,
        http2: bool,
    ) -> (Option<Arc<ServerConfig>>, &'static str) {
        let r = &t.value;
        // As the toolkit's `IsEnabled`: a certificate, a key or client authentication turns TLS
        // on. Other TLS settings alone would be silently ignored there; here they are an error,
        // since someone who wrote them believes TLS is on.
        let enabled = r.cert.is_some()
            || r.cert_file.is_some()
            || r.key.is_some()
            || r.key_file.is_some()
            || r.client_ca.is_some()
            || r.client_ca_file.is_some()
            || r.client_auth_type.is_some();
        if !enabled {
            let set: Vec<&str> = [
                ("cipher_suites", r.cipher_suites.is_some()),
                ("curve_preferences", r.curve_preferences.is_some()),
                ("min_version", r.min_version.is_some()),
                ("max_version", r.max_version.is_some()),
                (
                    "prefer_server_cipher_suites",
                    r.prefer_server_cipher_suites.is_some(),
                ),
                ("client_allowed_sans", r.client_allowed_sans.is_some()),
            ]
            .into_iter()
            .filter_map(|(n, on)| on.then_some(n))
            .collect();
            if !set.is_empty() {
                self.error(
                    t,
                    "tls_server_config",
                    format!(
                        "sets {} but no certificate, so TLS would be off: name cert_file and key_file (or cert and key)",
                        set.join(", ")
                    ),
                );
            }
            return (None, "none");
        }
        let before = self.errors.len();
        let certs = self.certificates(t);
        let key = self.private_key(t);
        let versions = self.versions(r);
        let provider = self.provider(r, &versions);
        let (client_auth, verifier) = self.client_auth(t, &provider);
        if self.errors.len() > before {
            return (None, "none");
        }
        let (Some(certs), Some(key), Some(provider), Some(verifier)) =
            (certs, key, provider, verifier)
        else {
            return (None, "none");
        };
        let built = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                b.with_client_cert_verifier(verifier)
                    .with_single_cert(certs, key)
                    .map_err(|e| match e {
                        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                            "the key does not belong to the certificate".to_string()
                        }
                        other => format!("cannot use this certificate and key: {other}"),
                    })
            });
        match built {
            Ok(mut config) => {
                // Go's `PreferServerCipherSuites`, the toolkit's default true.
                config.ignore_client_order = r
                    .prefer_server_cipher_suites
                    .as_ref()
                    .is_none_or(|v| v.value);
                // HTTP/2 is offered over TLS only, as the toolkit does.
                config.alpn_protocols = if http2 {
                    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
                } else {
                    vec![b"http/1.1".to_vec()]
                };
                (Some(Arc::new(config)), client_auth.name())
            }
            Err(e) => {
                self.error(t, "tls_server_config", e);
                (None, "none")
            }
        }
    }

    fn certificates(&mut self, t: &Spanned<RawTls>) -> Option<Vec<CertificateDer<'static>>> {
        let r = &t.value;
        let Some((bytes, at, field)) = self.pem_source(
            r.cert.as_ref().map(|c| (c, "cert")),
            r.cert_file.as_ref().map(|f| (f, "cert_file")),
        ) else {
            if r.cert.is_none() && r.cert_file.is_none() {
                self.error(t, "tls_server_config", "missing one of cert or cert_file");
            }
            return None;
        };
        match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
            Ok(certs) if !certs.is_empty() => Some(certs),
            Ok(_) => {
                self.errors
                    .push(format!("{at}: {field}: no PEM certificate in it"));
                None
            }
            Err(e) => {
                self.errors
                    .push(format!("{at}: {field}: not a PEM certificate: {e}"));
                None
            }
        }
    }

    fn private_key(&mut self, t: &Spanned<RawTls>) -> Option<PrivateKeyDer<'static>> {
        let r = &t.value;
        let inline = r.key.as_ref().map(|k| {
            // Only to share `pem_source`: the copy lives as long as this call.
            Spanned {
                value: k.value.expose().to_string(),
                referenced: k.referenced,
                defined: k.defined,
            }
        });
        let Some((bytes, at, field)) = self.pem_source(
            inline.as_ref().map(|k| (k, "key")),
            r.key_file.as_ref().map(|f| (f, "key_file")),
        ) else {
            if r.key.is_none() && r.key_file.is_none() {
                self.error(t, "tls_server_config", "missing one of key or key_file");
            }
            return None;
        };
        // The parser's error is not shown: it may quote a line of the key.
        match PrivateKeyDer::from_pem_slice(&bytes) {
            Ok(k) if rustls::crypto::ring::sign::any_supported_type(&k).is_ok() => Some(k),
            Ok(_) => {
                self.errors.push(format!(
                    "{at}: {field}: not a private key this server can use (RSA, ECDSA P-256 or P-384, Ed25519)"
                ));
                None
            }
            Err(_) => {
                self.errors.push(format!(
                    "{at}: {field}: no PEM private key in it (PKCS#8, PKCS#1 RSA or SEC1 EC)"
                ));
                None
            }
        }
    }

    fn version(&mut self, v: &Spanned<String>, field: &str) -> Option<u8> {
        match v.value.as_str() {
            "TLS12" => Some(12),
            "TLS13" => Some(13),
            "TLS10" | "TLS11" => {
                self.error(
                    v,
                    field,
                    format!(
                        "{} is not supported: this server speaks TLS 1.2 and 1.3 only (rustls); use TLS12 or TLS13",
                        v.value
                    ),
                );
                None
            }
            other => {
                self.error(
                    v,
                    field,
                    format!("unknown TLS version {other:?} (TLS12 or TLS13)"),
                );
                None
            }
        }
    }

    fn versions(&mut self, r: &RawTls) -> Vec<&'static SupportedProtocolVersion> {
        let min = match &r.min_version {
            Some(v) => self.version(v, "tls_server_config.min_version"),
            None => Some(12),
        };
        let max = match &r.max_version {
            Some(v) => self.version(v, "tls_server_config.max_version"),
            None => Some(13),
        };
        let (Some(min), Some(max)) = (min, max) else {
            return Vec::new();
        };
        if min > max {
            // UNWRAP: min > max means min is TLS13, which only a written min_version says.
            let v = r.min_version.as_ref().unwrap();
            self.error(
                v,
                "tls_server_config.min_version",
                "is above max_version: no version is left",
            );
            return Vec::new();
        }
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(n, _)| (min..=max).contains(n))
            .map(|(_, v)| v)
            .collect()
    }

    /// ring's provider narrowed to `cipher_suites` (TLS 1.2, in the order given) and
    /// `curve_preferences` (in order).
    fn provider(
        &mut self,
        r: &RawTls,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Option<CryptoProvider> {
        let mut provider = rustls::crypto::ring::default_provider();
        let mut ok = true;
        // An empty list means the defaults, as in Go.
        if let Some(list) = r.cipher_suites.as_ref().filter(|l| !l.is_empty()) {
            let mut tls12 = Vec::new();
            for name in list {
                match tls12_suite(&name.value) {
                    Some(s) if !tls12.contains(&s) => tls12.push(s),
                    Some(_) => {}
                    None if TLS13_SUITE_NAMES.contains(&name.value.as_str()) => {}
                    None => {
                        ok = false;
                        self.error(
                            name,
                            "tls_server_config.cipher_suites",
                            format!(
                                "{:?} is not a cipher suite this server has (rustls has no CBC or RSA key exchange suites); the TLS 1.2 suites are: {TLS12_SUITE_NAMES}",
                                name.value
                            ),
                        );
                    }
                }
            }
            if ok && tls12.is_empty() && versions.contains(&&rustls::version::TLS12) {
                ok = false;
                self.errors.push(format!(
                    "{}: tls_server_config.cipher_suites: lists no TLS 1.2 suite, so TLS 1.2 clients could not connect (list one, or set min_version: TLS13)",
                    self.at(&list[0])
                ));
            }
            let mut suites: Vec<SupportedCipherSuite> = provider
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .copied()
                .collect();
            suites.extend(tls12);
            provider.cipher_suites = suites;
        }
        if let Some(list) = &r.curve_preferences {
            let mut groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
            for name in list {
                let g = match name.value.as_str() {
                    "X25519" => kx_group::X25519,
                    "CurveP256" => kx_group::SECP256R1,
                    "CurveP384" => kx_group::SECP384R1,
                    "CurveP521" => {
                        ok = false;
                        self.error(
                            name,
                            "tls_server_config.curve_preferences",
                            "CurveP521 is not supported here (rustls with ring has X25519, CurveP256 and CurveP384)",
                        );
                        continue;
                    }
                    other => {
                        ok = false;
                        self.error(
                            name,
                            "tls_server_config.curve_preferences",
                            format!("unknown curve {other:?} (X25519, CurveP256 or CurveP384)"),
                        );
                        continue;
                    }
                };
                if !groups.iter().any(|x| x.name() == g.name()) {
                    groups.push(g);
                }
            }
            // An empty list means the defaults, as in Go.
            if !groups.is_empty() {
                provider.kx_groups = groups;
            }
        }
        (ok && !versions.is_empty()).then_some(provider)
    }

    fn client_auth(
        &mut self,
        t: &Spanned<RawTls>,
        provider: &Option<CryptoProvider>,
    ) -> (ClientAuth, Option<Arc<dyn ClientCertVerifier>>) {
        let r = &t.value;
        let mode = match &r.client_auth_type {
            None => ClientAuth::NoClientCert,
            Some(v) => match ClientAuth::parse(&v.value) {
                Some(m) => m,
                None => {
                    self.error(
                        v,
                        "tls_server_config.client_auth_type",
                        format!(
                            "invalid ClientAuth {:?} (NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)",
                            v.value
                        ),
                    );
                    return (ClientAuth::NoClientCert, None);
                }
            },
        };
        let ca = self.pem_source(
            r.client_ca.as_ref().map(|c| (c, "client_ca")),
            r.client_ca_file.as_ref().map(|f| (f, "client_ca_file")),
        );
        let ca_set = r.client_ca.is_some() || r.client_ca_file.is_some();
        if ca_set && mode == ClientAuth::NoClientCert {
            self.error(
                t,
                "tls_server_config.client_auth_type",
                "client CAs are configured without a client auth policy: set client_auth_type (RequireAndVerifyClientCert to require certificates they signed)",
            );
            return (mode, None);
        }
        if mode.verifies() && !ca_set {
            let at = r
                .client_auth_type
                .as_ref()
                .map_or_else(|| self.at(t), |v| self.at(v));
            self.errors.push(format!(
                "{at}: tls_server_config.client_auth_type: {} needs client_ca_file (or client_ca): the CAs client certificates are verified against",
                mode.name()
            ));
            return (mode, None);
        }
        let sans: Vec<String> = r
            .client_allowed_sans
            .iter()
            .flatten()
            .map(|s| s.value.clone())
            .collect();
        if !sans.is_empty() && mode == ClientAuth::NoClientCert {
            self.error(
                t,
                "tls_server_config.client_allowed_sans",
                "needs a client_auth_type that asks for a certificate (RequireAndVerifyClientCert)",
            );
            return (mode, None);
        }
        let Some(provider) = provider else {
            return (mode, None);
        };
        let schemes = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ClientCertVerifier> = match mode {
            ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
            ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
                Arc::new(AnyClientCert {
                    mandatory: mode == ClientAuth::RequireAnyClientCert,
                    schemes,
                })
            }
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
                let Some((bytes, at, field)) = ca else {
                    return (mode, None);
                };
                let mut roots = RootCertStore::empty();
                let mut bad = 0usize;
                for cert in CertificateDer::pem_slice_iter(&bytes) {
                    match cert.map(|c| roots.add(c)) {
                        Ok(Ok(())) => {}
                        _ => bad += 1,
                    }
                }
                if roots.is_empty() || bad > 0 {
                    self.errors.push(format!(
                        "{at}: {field}: {}",
                        if roots.is_empty() {
                            "no usable PEM certificate in it".to_string()
                        } else {
                            format!("{bad} certificate(s) in it cannot be used as a CA")
                        }
                    ));
                    return (mode, None);
                }
                let builder = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::new(provider.clone()),
                );
                let builder = if mode == ClientAuth::VerifyClientCertIfGiven {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                match builder.build() {
                    Ok(v) => v,
                    Err(e) => {
                        self.errors.push(format!("{at}: {field}: {e}"));
                        return (mode, None);
                    }
                }
            }
        };
        let verifier = if sans.is_empty() {
            verifier
        } else {
            Arc::new(RequireSans {
                inner: verifier,
                allowed: sans,
            })
        };
        (mode, Some(verifier))
    }

    fn users(
        &mut self,
        raw: Option<&BTreeMap<String, Spanned<Secret>>>,
    ) -> (Vec<(String, Secret)>, usize) {
        let mut users = Vec::new();
        let mut decoy = (0usize, 0u32);
        for (name, hash) in raw.into_iter().flatten() {
            let field = format!("basic_auth_users.{name}");
            if name.contains(':') {
                // Basic credentials are `user:password`, split at the first colon.
                self.error(
                    hash,
                    &field,
                    "a user name cannot contain ':' (it could never log in)",
                );
                continue;
            }
            // The parse error names what is wrong with the shape, never the text.
            match hash.value.expose().parse::<bcrypt::HashParts>() {
                Ok(parts) if (4..=31).contains(&parts.get_cost()) => {
                    if parts.get_cost() > decoy.1 {
                        decoy = (users.len(), parts.get_cost());
                    }
                    users.push((name.clone(), hash.value.clone()));
                }
                Ok(parts) => self.error(
                    hash,
                    &field,
                    format!("bcrypt cost {} is outside 4..=31", parts.get_cost()),
                ),
                Err(e) => self.error(
                    hash,
                    &field,
                    format!(
                        "not a bcrypt hash ({}); generate one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'",
                        bcrypt_reason(&e)
                    ),
                ),
            }
        }
        (users, decoy.0)
    }

    fn headers(&mut self, h: &RawHttp) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (name, value) in h.headers.iter().flatten() {
            let field = format!("http_server_config.headers.{name}");
            let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| n == name) else {
                let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
                self.error(
                    value,
                    &field,
                    format!(
                        "HTTP header {name:?} can not be configured (these can: {})",
                        names.join(", ")
                    ),
                );
                continue;
            };
            // A blank value leaves the header unset, as documented for the toolkit.
            if value.value.is_empty() {
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&value.value.as_str()) {
                self.error(
                    value,
                    &field,
                    format!(
                        "invalid value for {name}: {:?} (expected one of {})",
                        value.value,
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value.value),
            ) {
                (Ok(n), Ok(v)) => out.push((n, v)),
                _ => self.error(value, &field, "is not a valid header value"),
            }
        }
        out
    }

    fn rate_limit(&mut self, r: &Spanned<RawRateLimit>) -> Option<RateLimit> {
        let interval = match &r.value.interval {
            Some(v) => match parse_duration(&v.value) {
                Ok(d) => d,
                Err(e) => {
                    self.error(v, "rate_limit.interval", e);
                    return None;
                }
            },
            None => Duration::ZERO,
        };
        // A zero interval turns the limiter off, as in the toolkit.
        if interval.is_zero() {
            return None;
        }
        match &r.value.burst {
            Some(b) if b.value >= 1 && b.value <= u64::from(u32::MAX) => Some(RateLimit {
                interval,
                burst: b.value as u32,
            }),
            Some(b) => {
                self.error(
                    b,
                    "rate_limit.burst",
                    "must be at least 1 (0 would refuse every request)",
                );
                None
            }
            None => {
                self.error(
                    r,
                    "rate_limit.burst",
                    "missing: with an interval, say how many requests may come at once",
                );
                None
            }
        }
    }
}

/// bcrypt's reason, without its `Invalid hash:` prefix.
fn bcrypt_reason(e: &bcrypt::BcryptError) -> String {
    match e {
        bcrypt::BcryptError::InvalidHash(why) => (*why).to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
