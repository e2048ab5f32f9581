//! The settings that matter when others share the proxy (SPEC §4, §7): resource limits,
//! proxy clients, the ports blind tunnels may reach, and the names the proxy answers to.
//!
//! Plain data with defaults; validation is in `compile`, enforcement in the runtime.

use crate::secret::Secret;
use std::time::Duration;

/// `limits`: what any one client can make the proxy hold (SPEC §4 Limits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From accept (protocol detection included) to the end of the request head.
    pub header_read_timeout: Duration,
    /// A request body that sends nothing for this long is cut off (408 `request_timeout`).
    pub body_read_timeout: Duration,
    /// HTTP/1.1 keep-alive and h2 connections without a request are closed after this.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Bytes of replay buffers, all requests together; past it, bodies stream unreplayable.
    pub max_buffered_bodies: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_connections: 10_000,
            max_buffered_bodies: 64 << 20,
        }
    }
}

/// One entry of top-level `clients`: who may use the proxy, with `Proxy-Authorization:
/// Basic` (SPEC §4 Proxy clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyClient {
    /// The Basic-auth user-id: visible ASCII without `:`; safe to log.
    pub name: String,
    /// Never empty; compare in constant time.
    pub password: Secret,
}

/// True when a proxy listening on `ip` is reachable from other machines (SPEC §4 Shared
/// egress): any address but a loopback one, `0.0.0.0` and `::` included.
pub(crate) fn is_shared_egress(ip: std::net::IpAddr) -> bool {
    !ip.to_canonical().is_loopback()
}

/// RFC 7617: a Basic-auth user-id may not contain ':'. Names are also kept to visible
/// ASCII, since they are logged with each request.
pub(crate) fn valid_client_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Where blind CONNECT tunnels (unmatched, under `unmatched: forward`) may go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunnelPorts {
    /// Any port: the default with a loopback `listen`.
    Any,
    /// These ports only, sorted, without duplicates: `tunnel_ports`, or `[443]` by
    /// default when `listen` is not loopback. Empty: no blind tunnel at all.
    Only(Vec<u16>),
}

impl TunnelPorts {
    pub fn allows(&self, port: u16) -> bool {
        match self {
            TunnelPorts::Any => true,
            TunnelPorts::Only(ports) => ports.binary_search(&port).is_ok(),
        }
    }
}
