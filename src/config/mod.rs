//! The config file: load, interpolate, validate and compile it into an immutable
//! [`Config`] snapshot.
//!
//! This module does no network IO and holds no runtime state. It reads the config file
//! and the files the config names (`${file:...}`, `ca_file`, keys, certificates, the
//! refresh-token store, `admin_token_file`), and nothing else. Key material is loaded
//! here, once, and carried in the compiled config, so the runtime never reads a key file.
//! Every problem in a file is collected and reported at once, in file order, each as
//! `FILE:LINE:COLUMN: yaml.path: message`, with the nearest key or value when one is
//! misspelt (`suggest`); warnings are located the same way; no message ever contains a
//! secret or raw config text. `schema` names every block with serde's field list for it:
//! unknown keys and `docs/config.md` are both checked against it.
//!
//! How `match.host` selects hosts and ports (SPEC §4 Ports) is defined here, in `host`,
//! so that validation (which routes shadow others) and `route` agree.
//!
//! `config` imports neither `route` nor `token`: what both need sits below it (`keys`,
//! `secret`, `trust`, `intercept`).

mod compile;
mod egress;
mod host;
mod interp;
mod locate;
mod parse;
#[cfg(test)]
mod props;
pub(crate) mod raw;
mod schema;
mod sender;
mod suggest;
mod token_key;
mod units;

use crate::intercept::Interceptor;
use crate::keys::{ClientIdentity, SigningKey};
use crate::outbound::Egress;
use crate::secret::Secret;
use crate::sender::Signer;
use http::{HeaderName, Method, StatusCode};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use egress::{Limits, ProxyClient, TunnelPorts};
pub use host::{
    is_loopback_host, normalize_origin, parse_host_pattern, parse_server_name, strip_port,
    HostName, HostPattern, PortMatch,
};
pub use locate::YamlPath;
pub use schema::RESTART_ONLY;
pub use sender::{Dpop, RouteDpop};
pub use token_key::TokenKey;
pub use units::{format_duration, parse_duration, parse_size};

/// A validated config: everything the sidecar needs, with defaults filled in.
pub struct Config {
    /// The file this was read from (for messages and reloads).
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub log: LogConfig,
    pub unmatched: Unmatched,
    pub workers: Option<usize>,
    pub shutdown_grace: Duration,
    /// When `/readyz` answers 200 (`readiness`).
    pub readiness: Readiness,
    /// The interception CA (`tls_intercept`), loaded once here.
    pub tls_intercept: Option<Arc<Interceptor>>,
    /// Sorted by name.
    pub providers: Vec<Arc<ProviderConfig>>,
    /// In file order: the first matching route wins.
    pub routes: Vec<Arc<RouteConfig>>,
    /// `limits`, defaults filled in.
    pub limits: Limits,
    /// `clients`, sorted by name. Empty: no `Proxy-Authorization` is asked for.
    pub clients: Vec<ProxyClient>,
    /// The effective `tunnel_ports` (explicit, else by how `listen` is exposed).
    pub tunnel_ports: TunnelPorts,
    /// `server_names`: lowercase host names or IP addresses (IPv6 in brackets), no ports.
    pub server_names: Vec<String>,
    /// `admin_token_file`, and the token read from it when this config was compiled.
    pub admin_token_file: Option<PathBuf>,
    pub admin_token: Option<Secret>,
    /// How traffic that matched no route goes out: the top-level `egress_proxy` and
    /// `no_proxy` (SPEC §11).
    pub egress: Egress,
    /// `token_store`: the Redis replicas share tokens through (SPEC §9).
    pub token_store: Option<TokenStoreConfig>,
    /// Things that are valid but probably not what the operator meant, each as
    /// `FILE:LINE:COLUMN: yaml.path: message` where it has a place in the file.
    pub warnings: Vec<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("source", &self.source)
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("log", &self.log)
            .field("unmatched", &self.unmatched)
            .field("workers", &self.workers)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("readiness", &self.readiness)
            .field(
                "tls_intercept",
                &self.tls_intercept.as_ref().map(|_| "[redacted]"),
            )
            .field("providers", &self.providers)
            .field("routes", &self.routes)
            .field("limits", &self.limits)
            .field("clients", &self.clients)
            .field("tunnel_ports", &self.tunnel_ports)
            .field("server_names", &self.server_names)
            .field("admin_token_file", &self.admin_token_file)
            .field("admin_token", &self.admin_token)
            .field("egress", &self.egress)
            .field("token_store", &self.token_store)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// `token_store`, checked: the store's settings and the fetch lease.
#[derive(Clone, Debug)]
pub struct TokenStoreConfig {
    pub store: crate::store::StoreConfig,
    /// How long a replica holds the fetch lease (`SET NX PX`); longer than every
    /// provider's `timeout`.
    pub lease: Duration,
    /// A digest of all of the above: equal ids, the same store. A reload keeps the store
    /// (and the token sources that use it) while the id stays the same.
    pub id: crate::secret::Fingerprint,
}

impl TokenStoreConfig {
    pub fn new(store: crate::store::StoreConfig, lease: Duration) -> TokenStoreConfig {
        let id = store.fingerprint(lease);
        TokenStoreConfig { store, lease, id }
    }
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

/// What `/readyz` waits for before it answers 200 (`readiness`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Readiness {
    /// Every provider with `prefetch: true` holds a valid token (the default). Right
    /// for a sidecar: the pod starts taking traffic once its tokens are there.
    #[default]
    Tokens,
    /// The listeners accept connections. Right for shared egress behind a Service: in a
    /// long IdP outage the pods stay endpoints, and apps get 503 `token_unavailable`
    /// (which says what is wrong) instead of connections refused by an empty Service.
    Listening,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmatched {
    Forward,
    Deny,
}

#[derive(Clone, Debug, PartialEq, Eq)]
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
        /// The certificate chain and key, loaded from those files.
        identity: Arc<ClientIdentity>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateKeyJwt {
    pub key_file: PathBuf,
    /// The key loaded from `key_file`, with its `signing_alg`.
    pub key: Arc<SigningKey>,
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
    /// else the configured one; the [`TokenKey`] uses the configured one, so rotations never make
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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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

/// Where a provider's token comes from: its `kind`.
#[derive(Clone, Debug)]
pub enum TokenOrigin {
    /// An OAuth2 token endpoint (`kind: oauth2`, and the `azure_ad` preset).
    OAuth(Arc<OAuthClient>),
    /// `kind: static_file`: a bearer token in a file, re-read when it changes.
    StaticFile { token_file: PathBuf },
}

impl TokenOrigin {
    /// The OAuth2 client, unless the token comes from a file.
    pub fn oauth(&self) -> Option<&Arc<OAuthClient>> {
        match self {
            TokenOrigin::OAuth(client) => Some(client),
            TokenOrigin::StaticFile { .. } => None,
        }
    }

    /// The OAuth2 grant, unless the token comes from a file.
    pub fn grant(&self) -> Option<&Grant> {
        self.oauth().map(|client| &client.grant)
    }

    /// The grant's name, or `static_file`, for logs.
    pub fn grant_name(&self) -> &'static str {
        self.grant().map_or("static_file", Grant::name)
    }
}

/// The sidecar as the OAuth2 client of an IdP: the token endpoint, the client's
/// credentials, the grant and what the token is asked for.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    pub token_url: reqwest::Url,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_auth: ClientAuth,
    pub grant: Grant,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub extra_params: Vec<(String, String)>,
    /// Trust for the token endpoint, beside the system roots.
    pub ca_file: Option<PathBuf>,
    /// How token requests go out: the provider's `egress_proxy` and `no_proxy`, each
    /// else the top level's (SPEC §11).
    pub egress: Egress,
    /// `dpop`: token requests carry proofs, and the token must come back as `DPoP`.
    pub dpop: Option<Arc<Dpop>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Retries {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// One provider: where its token comes from, and how its token source fetches and keeps
/// it.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub name: String,
    pub origin: TokenOrigin,
    /// `None`: the SPEC §5 default, min(5 min, half the lifetime).
    pub refresh_before_expiry: Option<Duration>,
    /// How long one fetch, all its attempts included, may take.
    pub timeout: Duration,
    /// Attempts per fetch, and the backoff between failed fetches.
    pub retries: Retries,
    pub prefetch: bool,
    pub idle_timeout: Duration,
    pub expose_token: bool,
    /// The provider's `egress_proxy` and `no_proxy`, each else the top level's: how its
    /// token requests go out, and what its routes inherit (SPEC §11).
    pub egress: Egress,
    /// What identifies this provider's token (built from `origin`).
    pub key: TokenKey,
}

/// `/v2` is a prefix of `/v2`, `/v2/`, `/v2/x`, but not of `/v2x`.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
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
    /// `clients`: the proxy clients this route serves; `None`: every client.
    pub clients: Option<Vec<String>>,
    /// `allowed_origins`, normalised ([`normalize_origin`]); default none.
    pub allowed_origins: Vec<String>,
    /// `allow_http`: the token may travel over plain http to a non-loopback host.
    pub allow_http: bool,
    /// How this route's upstream traffic goes out: its `egress_proxy` and `no_proxy`,
    /// each else its provider's, else the top level's (SPEC §11).
    pub egress: Egress,
    /// The provider's `dpop`: every request gets a fresh proof (SPEC §10).
    pub dpop: Option<Arc<RouteDpop>>,
    /// `sign`: HTTP message signatures (SPEC §10).
    pub sign: Option<Arc<Signer>>,
}

impl RouteConfig {
    /// True when this route selects every request `later` would, so that `later`, coming
    /// after it, can never match.
    pub fn covers(&self, later: &RouteConfig) -> bool {
        let host = match (&self.host, &later.host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a.covers(b),
        };
        let path = match (&self.path_prefix, &later.path_prefix) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => path_has_prefix(b, a),
        };
        let methods = match (&self.methods, &later.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
        };
        host && path && methods
    }
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

    /// True when `listen` is not a loopback address: other machines' clients reach the
    /// proxy, so it trusts them less and its defaults tighten (SPEC §4 Shared egress).
    pub fn shared_egress(&self) -> bool {
        egress::is_shared_egress(self.listen.ip())
    }

    /// The proxy client called `name` (the Basic-auth user-id), if `clients` defines it.
    pub fn client(&self, name: &str) -> Option<&ProxyClient> {
        self.clients.iter().find(|c| c.name == name)
    }

    /// True when `host` (a `Host` header's name without its port; IPv6 in brackets) names
    /// this proxy: a loopback name or address, the `listen` address, or one of
    /// `server_names` (SPEC §4 Browsers: what a route without `match.host` accepts).
    pub fn is_own_name(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let is_listen_ip = bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical() == self.listen.ip().to_canonical());
        is_loopback_host(host)
            || is_listen_ip
            || self.server_names.iter().any(|n| host::same_host(n, host))
    }
}
