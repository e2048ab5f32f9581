//! The config file exactly as written: serde structs that mirror SPEC §3 key for key.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silently
//! disabled feature. Scalars are kept as text ([`Text`]) so that `${VAR}` interpolation,
//! durations and sizes are all handled, with all errors collected, by `compile`.

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// Any YAML scalar (string, number, boolean), as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar value (string or number)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<Text>,
    pub admin_listen: Option<Text>,
    pub log: Option<RawLog>,
    pub unmatched: Option<Text>,
    pub workers: Option<Text>,
    pub shutdown_grace: Option<Text>,
    pub readiness: Option<Text>,
    pub tls_intercept: Option<RawTlsIntercept>,
    pub limits: Option<RawLimits>,
    pub tunnel_ports: Option<Vec<Text>>,
    pub server_names: Option<Vec<Text>>,
    pub admin_token_file: Option<Text>,
    pub egress_proxy: Option<Text>,
    pub no_proxy: Option<Vec<Text>>,
    pub token_store: Option<RawTokenStore>,
    /// Parsed entry by entry by `parse` (so each entry reports its own problems); here
    /// only so that serde's field list knows the keys.
    #[allow(dead_code, reason = "read by parse, entry by entry")]
    pub providers: Option<IgnoredAny>,
    #[allow(dead_code, reason = "read by parse, entry by entry")]
    pub routes: Option<IgnoredAny>,
    #[allow(dead_code, reason = "read by parse, entry by entry")]
    pub clients: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub header_read_timeout: Option<Text>,
    pub body_read_timeout: Option<Text>,
    pub idle_timeout: Option<Text>,
    pub max_connections: Option<Text>,
    pub max_buffered_bodies: Option<Text>,
}

/// One `clients` entry: `name: { password: ... }`, or the short `name: password`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub password: Option<Text>,
    /// Written as `name: password`: the password's YAML path is the entry's own.
    #[serde(skip)]
    pub short: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsIntercept {
    pub ca_cert_file: Option<Text>,
    pub ca_key_file: Option<Text>,
    pub leaf_validity: Option<Text>,
    pub cache_size: Option<Text>,
}

/// `token_store` (SPEC §9).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenStore {
    pub redis: Option<RawRedis>,
    pub encryption_key: Option<Text>,
    pub lease: Option<Text>,
}

/// `token_store.redis`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Option<Text>,
    pub urls: Option<Vec<Text>>,
    pub cluster: Option<bool>,
    pub username: Option<Text>,
    pub password: Option<Text>,
    pub ca_file: Option<Text>,
    pub key_prefix: Option<Text>,
    pub timeout: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<Text>,
    pub level: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: Option<Text>,
    pub token_url: Option<Text>,
    pub client_id: Option<Text>,
    pub client_secret: Option<Text>,
    pub client_auth: Option<Text>,
    pub grant_type: Option<Text>,
    pub scopes: Option<Vec<Text>>,
    pub audience: Option<Text>,
    pub resource: Option<Text>,
    pub extra_params: Option<BTreeMap<String, Text>>,
    pub refresh_before_expiry: Option<Text>,
    pub timeout: Option<Text>,
    pub retries: Option<RawRetries>,
    pub prefetch: Option<bool>,
    pub idle_timeout: Option<Text>,
    pub allow_http: Option<bool>,
    pub ca_file: Option<Text>,
    pub expose_token: Option<bool>,
    pub private_key_file: Option<Text>,
    pub signing_alg: Option<Text>,
    pub key_id: Option<Text>,
    pub assertion_audience: Option<Text>,
    pub client_assertion_file: Option<Text>,
    pub client_cert_file: Option<Text>,
    pub client_key_file: Option<Text>,
    pub tenant_id: Option<Text>,
    pub authority: Option<Text>,
    pub token_file: Option<Text>,
    pub subject_token_from: Option<RawSubjectFrom>,
    pub subject_token_type: Option<Text>,
    pub actor_token_file: Option<Text>,
    pub actor_token_type: Option<Text>,
    pub requested_token_type: Option<Text>,
    pub max_subjects: Option<Text>,
    pub forward_subject_header: Option<bool>,
    pub refresh_token: Option<Text>,
    pub refresh_token_store: Option<Text>,
    pub egress_proxy: Option<Text>,
    pub no_proxy: Option<Vec<Text>>,
    pub dpop: Option<RawDpop>,
    // Keys of token sources that are specified (SPEC §3) but not built yet. They are
    // recognised so that `compile` can refuse them by name instead of "unknown field".
}

/// `providers.<name>.dpop` (SPEC §10).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    pub key_file: Option<Text>,
    pub alg: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubjectFrom {
    pub header: Option<Text>,
    pub prefix: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    pub max_attempts: Option<Text>,
    pub initial_backoff: Option<Text>,
    pub max_backoff: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<Text>,
    #[serde(rename = "match")]
    pub match_: Option<RawMatch>,
    pub provider: Option<Text>,
    pub upstream: Option<Text>,
    pub strip_prefix: Option<bool>,
    pub preserve_host: Option<bool>,
    pub header: Option<Text>,
    pub value_prefix: Option<Text>,
    pub overwrite: Option<bool>,
    pub retry_on: Option<Vec<Text>>,
    pub max_replay_body: Option<Text>,
    pub on_token_error: Option<Text>,
    pub intercept: Option<bool>,
    pub ca_file: Option<Text>,
    pub connect_timeout: Option<Text>,
    pub upstream_timeout: Option<Text>,
    pub clients: Option<Vec<Text>>,
    pub allowed_origins: Option<Vec<Text>>,
    pub allow_http: Option<bool>,
    pub egress_proxy: Option<Text>,
    pub no_proxy: Option<Vec<Text>>,
    pub sign: Option<RawSign>,
}

/// `routes[].sign` (SPEC §10).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSign {
    pub key_file: Option<Text>,
    pub hmac_key_file: Option<Text>,
    pub key_id: Option<Text>,
    pub alg: Option<Text>,
    pub components: Option<Vec<Text>>,
    pub label: Option<Text>,
    pub expires_in: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub host: Option<Text>,
    pub path_prefix: Option<Text>,
    pub methods: Option<Vec<Text>>,
}
