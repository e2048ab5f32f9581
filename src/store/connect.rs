//! Building a connection to the store: one server through redis-rs's connection manager
//! (reconnects by itself, resubscribes), or a Redis Cluster connection (follows slots and
//! failovers), both RESP3 so publications arrive on the same connection as replies.
//!
//! TLS: redis-rs builds its own rustls `ClientConfig` (with the process's crypto
//! provider, which is ring: the only one compiled in) and takes trust only as PEM roots,
//! not as a config. So for `rediss://` this module hands it the system roots (loaded
//! once per store, filtered like `trust` filters them) plus `ca_file`, and certificate
//! verification stays on: a URL asking for `#insecure` is refused. redis-rs still reads
//! the system roots itself on each TLS connect and discards them for ours.

use super::{Endpoint, StoreConfig, StoreError};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo,
    ProtocolVersion, PushInfo, RedisError, RedisResult, TlsCertificates,
};
use base64::Engine as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where push messages go: the store's waiters.
pub(super) type PushHandler = Arc<dyn Fn(PushInfo) + Send + Sync>;

/// A live (or, for one server, lazily connecting) connection.
pub(super) struct Conn {
    link: Link,
    /// The pattern subscription is in place on this connection (the connection manager
    /// and the cluster connection renew it after reconnects).
    pub(super) subscribed: AtomicBool,
}

#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Sends `cmd` and converts the reply. Unbounded: callers add the timeout.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.link.clone() {
            Link::Single(mut c) => cmd.query_async(&mut c).await,
            Link::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    /// Subscribes to `pattern`; publications go to the handler given at connect.
    pub(super) async fn psubscribe(&self, pattern: &str) -> RedisResult<()> {
        match self.link.clone() {
            Link::Single(mut c) => c.psubscribe(pattern).await?,
            Link::Cluster(mut c) => c.psubscribe(pattern).await?,
        }
        self.subscribed.store(true, Ordering::Release);
        Ok(())
    }
}

/// What a connection is built from; checked once, when the store is built.
pub(super) struct Connector {
    nodes: Nodes,
    tls: Option<TlsCertificates>,
    /// Bound on one reply.
    timeout: Duration,
    /// Bound on connecting (TCP, TLS, HELLO/AUTH, for a cluster its slot map).
    pub(super) connect_timeout: Duration,
}

enum Nodes {
    Single(Box<ConnectionInfo>),
    Cluster(Vec<ConnectionInfo>),
}

impl Connector {
    pub(super) fn new(cfg: &StoreConfig) -> Result<Connector, StoreError> {
        let (nodes, tls) = match &cfg.endpoint {
            Endpoint::Standalone(url) => {
                let info = node(url, cfg, "url")?;
                let tls = is_tls(&info);
                (Nodes::Single(Box::new(info)), tls)
            }
            Endpoint::Cluster(urls) => {
                if urls.is_empty() {
                    return Err(StoreError::Url(
                        "cluster: true needs seed nodes in urls".into(),
                    ));
                }
                let infos = urls
                    .iter()
                    .enumerate()
                    .map(|(i, u)| node(u, cfg, &format!("urls[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                let tls = is_tls(&infos[0]);
                if infos.iter().any(|i| is_tls(i) != tls) {
                    return Err(StoreError::Url(
                        "urls mix redis:// and rediss:// nodes".into(),
                    ));
                }
                (Nodes::Cluster(infos), tls)
            }
        };
        let tls = match (tls, &cfg.ca_file) {
            (false, Some(_)) => {
                return Err(StoreError::CaFile(
                    "is only used with rediss:// (TLS) URLs".into(),
                ))
            }
            (false, None) => None,
            (true, ca_file) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(roots_pem(ca_file.as_deref()).map_err(StoreError::CaFile)?),
            }),
        };
        Ok(Connector {
            nodes,
            tls,
            timeout: cfg.timeout,
            connect_timeout: connect_timeout(cfg.timeout),
        })
    }

    /// A new connection. For one server it connects lazily (on the first command); a
    /// cluster connection is established here, since it needs the slot map.
    pub(super) async fn connect(&self, pushes: PushHandler) -> RedisResult<Conn> {
        let push = move |p: PushInfo| -> Result<(), std::convert::Infallible> {
            pushes(p);
            Ok(())
        };
        let link = match &self.nodes {
            Nodes::Single(info) => {
                let client = match &self.tls {
                    Some(certs) => Client::build_with_tls((**info).clone(), certs.clone())?,
                    None => Client::open((**info).clone())?,
                };
                // Few quick retries inside the manager: the store's reconnect loop is the
                // long backoff, and every command is cut at `timeout` anyway.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500))
                    .set_push_sender(push)
                    .set_automatic_resubscription();
                Link::Single(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            Nodes::Cluster(infos) => {
                let mut builder = ClusterClientBuilder::new(infos.clone())
                    .use_protocol(ProtocolVersion::RESP3)
                    .push_sender(push)
                    .connection_timeout(self.connect_timeout)
                    .response_timeout(self.timeout)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
                if let Some(certs) = &self.tls {
                    builder = builder.certs(certs.clone());
                }
                Link::Cluster(builder.build()?.get_async_connection().await?)
            }
        };
        Ok(Conn {
            link,
            subscribed: AtomicBool::new(false),
        })
    }
}

/// Connecting takes more round trips than an operation (a TLS handshake over a long
/// link can alone exceed a 250 ms `timeout`), and only the background reconnect loop
/// waits for it: four operation timeouts, at least a second.
fn connect_timeout(timeout: Duration) -> Duration {
    (timeout * 4).max(Duration::from_secs(1))
}

/// One node's connection info: the URL's address and database, our credentials, RESP3.
fn node(url: &str, cfg: &StoreConfig, field: &str) -> Result<ConnectionInfo, StoreError> {
    let scheme_ok = url.starts_with("redis://") || url.starts_with("rediss://");
    // The URL itself is never echoed: it may hold a password.
    let info = scheme_ok
        .then(|| url.into_connection_info().ok())
        .flatten()
        .ok_or_else(|| {
            StoreError::Url(format!(
                "{field} is not a redis:// or rediss:// URL with a host"
            ))
        })?;
    if let ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
        return Err(StoreError::Url(format!(
            "{field}: certificate verification cannot be switched off"
        )));
    }
    let mut settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    if let Some(user) = &cfg.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &cfg.password {
        settings = settings.set_password(password.expose());
    }
    Ok(info.set_redis_settings(settings))
}

fn is_tls(info: &ConnectionInfo) -> bool {
    matches!(info.addr(), ConnectionAddr::TcpTls { .. })
}

/// The system roots that rustls accepts as trust anchors plus every certificate in
/// `ca_file`, as PEM (the only form redis-rs takes).
fn roots_pem(ca_file: Option<&Path>) -> Result<Vec<u8>, String> {
    // A second loader of the system roots next to `trust::system_roots` (which is
    // private to `trust`): the wiring should move this into `trust`, so one place loads
    // them.
    let loaded = rustls_native_certs::load_native_certs();
    let mut pem = Vec::new();
    for cert in loaded.certs {
        if rustls::RootCertStore::empty().add(cert.clone()).is_ok() {
            push_pem(&mut pem, &cert);
        }
    }
    if let Some(path) = ca_file {
        for cert in crate::trust::load_pem_certs(path)? {
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| format!("{}: unusable certificate: {e}", path.display()))?;
            push_pem(&mut pem, &cert);
        }
    }
    Ok(pem)
}

fn push_pem(out: &mut Vec<u8>, der: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
}

/// A short reason for a failure: the error's category and, from the server, its code and
/// message. redis-rs errors name no credentials; the URL is never part of them.
pub(super) fn reason(e: &RedisError) -> String {
    if e.is_connection_refusal() {
        return "connection refused".into();
    }
    if e.is_timeout() {
        return "connection timed out".into();
    }
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{}: {code} {detail}", e.category()),
        (Some(code), None) => format!("{}: {code}", e.category()),
        _ => e.category().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn cfg(endpoint: Endpoint) -> StoreConfig {
        StoreConfig {
            endpoint,
            username: Some("sidecar".into()),
            password: Some(Secret::new("pw-not-in-errors")),
            ca_file: None,
            key_prefix: "p:".into(),
            timeout: Duration::from_millis(250),
            encryption_key: Secret::new("k".repeat(32)),
        }
    }

    fn err(c: StoreConfig) -> String {
        match Connector::new(&c) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in ["http://u:pw-in-url@h:1", "redis//h", "", "unix:///tmp/s"] {
            let msg = err(cfg(Endpoint::Standalone(url.into())));
            assert!(
                msg.contains("url is not a redis:// or rediss:// URL"),
                "{msg}"
            );
            assert!(!msg.contains("pw"), "{msg}");
        }
        let msg = err(cfg(Endpoint::Cluster(vec![
            "redis://a:1".into(),
            "bogus".into(),
        ])));
        assert!(msg.contains("urls[1]"), "{msg}");
        let msg = err(cfg(Endpoint::Cluster(vec![])));
        assert!(msg.contains("seed nodes"), "{msg}");
        let msg = err(cfg(Endpoint::Cluster(vec![
            "redis://a:1".into(),
            "rediss://b:2".into(),
        ])));
        assert!(msg.contains("mix"), "{msg}");
        let msg = err(cfg(Endpoint::Standalone("rediss://h:1/#insecure".into())));
        assert!(msg.contains("cannot be switched off"), "{msg}");
    }

    #[test]
    fn ca_file_needs_tls_and_must_be_readable() {
        let mut c = cfg(Endpoint::Standalone("redis://h:1".into()));
        c.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(err(c.clone()).contains("only used with rediss://"));
        c.endpoint = Endpoint::Standalone("rediss://h:1".into());
        let msg = err(c);
        assert!(
            msg.starts_with("token_store.redis.ca_file: cannot read"),
            "{msg}"
        );
    }

    #[test]
    fn credentials_and_resp3_are_set_on_every_node() {
        let c = cfg(Endpoint::Standalone("redis://h:1/3".into()));
        let info = node("redis://h:1/3", &c, "url").unwrap();
        let s = info.redis_settings();
        assert_eq!(s.username(), Some("sidecar"));
        assert_eq!(s.password(), Some("pw-not-in-errors"));
        assert_eq!(s.protocol(), ProtocolVersion::RESP3);
        assert_eq!(s.db(), 3);
    }

    #[test]
    fn pem_round_trips_through_rustls() {
        use rustls::pki_types::pem::PemObject;
        let der: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let mut pem = Vec::new();
        push_pem(&mut pem, &der);
        push_pem(&mut pem, &der[..10]);
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), &der[..]);
        assert_eq!(certs[1].as_ref(), &der[..10]);
    }
}
