//! The config file: load, interpolate, validate and compile it into an immutable
//! [`Config`] snapshot.
//!
//! This module does no network IO and holds no runtime state. It reads the config file
//! and the files that `${file:...}` and `ca_file` name, and nothing else. Every problem in
//! a file is collected and reported at once, each as `FILE:LINE:COLUMN: yaml.path: message`;
//! no message ever contains a secret or raw config text.

mod compile;
mod interp;
mod locate;
mod parse;
pub(crate) mod raw;
mod units;

use crate::secret::Secret;
use http::{HeaderName, Method, StatusCode};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use locate::YamlPath;
pub use units::{format_duration, parse_duration, parse_size};

/// A validated config: everything the sidecar needs, with defaults filled in.
#[derive(Debug)]
pub struct Config {
    /// The file this was read from (for messages and reloads).
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub log: LogConfig,
    pub unmatched: Unmatched,
    pub workers: Option<usize>,
    pub shutdown_grace: Duration,
    pub tls_intercept: Option<crate::intercept::InterceptConfig>,
    /// Sorted by name.
    pub providers: Vec<Arc<ProviderConfig>>,
    /// In file order: the first matching route wins.
    pub routes: Vec<Arc<RouteConfig>>,
    /// Things that are valid but probably not what the operator meant.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmatched {
    Forward,
    Deny,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    /// RFC 6749 §2.3.1: HTTP Basic with form-urlencoded id and secret.
    Basic,
    /// RFC 6749 §2.3.1: `client_id` and `client_secret` in the request body.
    Post,
    /// RFC 7523 §2.2: a JWT signed with the client's private key, new per request.
    PrivateKeyJwt(PrivateKeyJwt),
    /// A JWT read from a file at every request (a projected service-account token).
    AssertionFile(PathBuf),
    /// RFC 8705: a client certificate on the TLS connection to the token endpoint.
    TlsClientAuth {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PrivateKeyJwt {
    pub key_file: PathBuf,
    pub alg: crate::token::SigningAlg,
    pub key_id: Option<String>,
    /// The assertion's `aud`: `assertion_audience`, default the token URL.
    pub audience: String,
}

/// The OAuth2 grant a provider uses.
#[derive(Clone, Debug)]
pub enum Grant {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 6749 §6, with rotation. `initial` is the stored token when `store` holds one,
    /// else the configured one; identity uses the configured one, so rotations never make
    /// a reload look like a new provider.
    RefreshToken {
        initial: Secret,
        configured: Option<Secret>,
        store: Option<PathBuf>,
    },
    /// RFC 8693: one token per subject token taken from the request.
    TokenExchange(Exchange),
}

impl Grant {
    pub fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken { .. } => "refresh_token",
            Grant::TokenExchange(_) => "token_exchange",
        }
    }
}

/// RFC 8693 token exchange settings.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The request header that carries the subject token, and the prefix before it.
    pub header: HeaderName,
    pub prefix: String,
    pub subject_token_type: String,
    pub actor_token_file: Option<PathBuf>,
    pub actor_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub max_subjects: usize,
    pub forward_subject_header: bool,
}

/// Where a provider's token comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// An OAuth2 token endpoint (including the `azure_ad` preset).
    OAuth,
    /// A bearer token in a file, re-read when it changes.
    StaticFile(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Retries {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// One OAuth2 provider: how to get a token.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub token_url: reqwest::Url,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_auth: ClientAuth,
    pub grant: Grant,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub extra_params: Vec<(String, String)>,
    /// `None`: the SPEC §5 default, min(5 min, half the lifetime).
    pub refresh_before_expiry: Option<Duration>,
    pub timeout: Duration,
    pub retries: Retries,
    pub prefetch: bool,
    pub idle_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub expose_token: bool,
}

impl ProviderConfig {
    /// What identifies the token this provider hands out. Two configs with the same key
    /// would fetch the same token, so a reload may keep the cached one.
    pub fn identity(&self) -> String {
        let secret_fingerprint = self.client_secret.as_ref().map(|s| fingerprint(s.expose()));
        let grant = match &self.grant {
            Grant::ClientCredentials => "client_credentials".to_string(),
            Grant::RefreshToken {
                configured, store, ..
            } => {
                format!(
                    "refresh_token:{:?}:{store:?}",
                    configured.as_ref().map(|c| fingerprint(c.expose()))
                )
            }
            Grant::TokenExchange(x) => format!("token_exchange:{x:?}"),
        };
        format!(
            "{:?}|{grant}|{}|{}|{:?}|{:?}|{}|{:?}|{:?}|{:?}|{:?}",
            self.kind,
            self.token_url,
            self.client_id,
            secret_fingerprint,
            self.client_auth,
            self.scopes.join(" "),
            self.audience,
            self.resource,
            self.extra_params,
            // Trust for the IdP is part of the HTTP client a source is built with.
            self.ca_file,
        ) + &self.key_material_fingerprint()
    }

    /// Keys and certificates are loaded when a source is built: a rotated file (say, by
    /// cert-manager) must make a reload build a new source.
    fn key_material_fingerprint(&self) -> String {
        let files: Vec<&Path> = match &self.client_auth {
            ClientAuth::PrivateKeyJwt(p) => vec![&p.key_file],
            ClientAuth::TlsClientAuth {
                cert_file,
                key_file,
            } => vec![cert_file, key_file],
            _ => vec![],
        };
        files
            .iter()
            .map(|f| {
                format!(
                    "|{:?}",
                    std::fs::read(f).ok().map(|b| fingerprint_bytes(&b))
                )
            })
            .collect()
    }
}

fn fingerprint_bytes(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// A non-reversible, non-cryptographic fingerprint, so that identity keys change when a
/// secret changes without holding the secret.
fn fingerprint(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Which requests a route selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Exact host name, lowercase, any port.
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; any subdomain at any depth, not the apex.
    Suffix(String),
    /// `host:port`: that host on that port only.
    WithPort(String, u16),
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Suffix(s) => write!(f, "*{s}"),
            HostPattern::WithPort(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTokenError {
    Reject,
    Forward,
}

/// Where a route sends its requests instead of the request's own target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// The upstream URL's path without a trailing `/` (empty for the root).
    pub base_path: String,
    /// `authority` as a prebuilt `Host` header value.
    pub host_header: http::HeaderValue,
}

#[derive(Clone, Debug)]
pub struct RouteConfig {
    pub name: String,
    pub host: Option<HostPattern>,
    /// Without a trailing `/`; matched on segment boundaries.
    pub path_prefix: Option<String>,
    pub methods: Option<Vec<Method>>,
    pub provider: String,
    pub upstream: Option<Upstream>,
    pub strip_prefix: bool,
    pub preserve_host: bool,
    pub header: HeaderName,
    pub value_prefix: String,
    pub overwrite: bool,
    pub retry_on: Vec<StatusCode>,
    pub max_replay_body: u64,
    pub on_token_error: OnTokenError,
    pub intercept: bool,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
}

/// Every problem found in a config file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(p)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and compiles the config file at `path`, with variables from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!(
                "{}: cannot read config file: {}",
                path.display(),
                interp::io_reason(&e)
            )],
        })?;
        Self::from_text(path, &text, &|name| std::env::var(name).ok())
    }

    /// Compiles config `text`; `source` is only used in messages.
    pub fn from_text(
        source: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        compile::compile(source, text, env)
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<ProviderConfig>> {
        self.providers.iter().find(|p| p.name == name)
    }
}
