//! Tunnels: CONNECT (`HTTPS_PROXY` and `http_proxy` traffic) and HTTP/1.1 upgrades
//! (WebSocket). A CONNECT to an authority that an intercepting route names is served:
//! its first bytes decide how (SPEC §4, [`sniff`]). TLS is terminated with a minted
//! certificate (`tls_intercept`); plain HTTP (h2c prior knowledge, as gRPC clients send
//! through `http_proxy`, or HTTP/1.1) is served as it is. Either way the requests inside
//! are proxied like plain ones, to the CONNECT's authority. A header cannot be added
//! inside TLS that the sidecar does not terminate: without `tls_intercept`, a CONNECT to
//! a routed host on 443 is refused with an explanation before the tunnel opens (443 is
//! TLS by convention), and TLS arriving in a tunnel to any other port is closed and
//! counted. Other CONNECTs follow `unmatched`: a blind tunnel (never looked into), or 403
//! `no_route`. Blind tunnels close when either side closes, or after
//! [`TUNNEL_IDLE_TIMEOUT`] without a byte either way; served tunnels keep the listener's
//! `limits`.

use super::guard;
use super::sniff::{self, Protocol, Silent};
use super::splice::splice;
use crate::config::{Config, Limits, Unmatched};
use crate::error::{Body, ProxyError};
use crate::metrics::{TunnelKind, TunnelRefusal};
use crate::route;
use crate::runtime::{Runtime, Snapshot};
use futures_util::future::BoxFuture;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

const TUNNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A tunnel (or an upgraded connection) with no traffic either way for this long is closed.
pub const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The default port of plain http, for routes named by host without a port.
const HTTP_DEFAULT_PORT: u16 = 80;

/// Serves the requests inside a served tunnel (the proxy's own lifecycle).
pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// Answers a CONNECT: served (its requests handled by the handler `inner` makes for the
/// tunnel's authority and the scheme they are proxied as), refused, or a blind tunnel.
pub async fn connect(
    runtime: &Arc<Runtime>,
    snap: &Snapshot,
    req: Request<Incoming>,
    inner: impl FnOnce(Arc<Runtime>, Authority, Scheme) -> Handler + Send + 'static,
) -> Result<Response<Body>, ProxyError> {
    let bad = |d: &str| ProxyError::BadRequest {
        detail: d.to_string(),
    };
    let authority = req
        .uri()
        .authority()
        .cloned()
        .ok_or_else(|| bad("CONNECT needs a host:port target"))?;
    let port = authority
        .port_u16()
        .ok_or_else(|| bad("CONNECT needs a host:port target"))?;
    let host = authority.host();
    // Never the proxy's own listeners, whichever branch would take the CONNECT.
    let own = guard::Reach {
        own: &runtime.own,
        no_local: false,
    };
    guard::destination(host, port, own).await?;
    let routes = &snap.config.routes;
    // Routed as `https://host:port` (TLS inside) or as `http://host:port` (plain inside).
    let tls_routed = route::names_host(routes, host, port);
    let plain_routed = route::names_host_by(routes, host, port, HTTP_DEFAULT_PORT);
    if tls_routed || plain_routed {
        let tls = match (&snap.interceptor, tls_routed) {
            (Some(interceptor), true) => Some(interceptor.server_config(host).map_err(|e| {
                ProxyError::UpstreamUnavailable {
                    detail: format!("cannot intercept {host}: {e}"),
                }
            })?),
            (None, true) if port == route::CONNECT_DEFAULT_PORT => {
                return Err(ProxyError::InterceptUnavailable {
                    detail: format!(
                        "{host}:{port} is routed, but its traffic is TLS-encrypted and tls_intercept is not configured, so no header can be added; \
                         send plain http:// through the proxy and let the route's upstream speak https, or configure tls_intercept"
                    ),
                });
            }
            _ => None,
        };
        let routed = Routed {
            authority,
            tls,
            tls_routed,
            config: snap.config.clone(),
        };
        let runtime = runtime.clone();
        // Counted from here, before the `200` leaves the listener's graceful watch.
        let tracked = runtime.tunnels.track();
        tokio::spawn(async move {
            let _tracked = tracked;
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => serve_routed(&runtime, upgraded, routed, inner).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        return Ok(established());
    }
    if snap.config.unmatched == Unmatched::Deny {
        return Err(ProxyError::NoRoute {
            detail: format!("no route matches CONNECT {host}:{port}"),
        });
    }
    let upstream = open_blind(runtime, &snap.config, &authority).await?;
    splice_blind(runtime, req, upstream);
    Ok(established())
}

/// Splices the app's side of an accepted blind CONNECT with `upstream` once the `200`
/// is out; counted as a tunnel from now (before the `200` leaves the listener's watch).
fn splice_blind(runtime: &Arc<Runtime>, req: Request<Incoming>, upstream: TcpStream) {
    let runtime = runtime.clone();
    let tracked = runtime.tunnels.track();
    tokio::spawn(async move {
        let _tracked = tracked;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let _active = runtime.metrics.tunnel_opened(TunnelKind::Blind);
                splice(TokioIo::new(upgraded), upstream, TUNNEL_IDLE_TIMEOUT).await;
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
}

/// An accepted CONNECT to an authority some route names.
struct Routed {
    authority: Authority,
    /// The minted certificate's server config, when TLS can be intercepted.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// A route names the authority as `https://` (else only as `http://`).
    tls_routed: bool,
    /// The config of the CONNECT's snapshot (limits, `unmatched`, `tunnel_ports`).
    config: Arc<Config>,
}

/// Serves a routed tunnel by what its first bytes are (within `header_read_timeout`):
/// plain HTTP as it is, TLS intercepted when it can be. TLS that cannot be intercepted
/// is closed and counted; in a tunnel that only a plain-http route names it is
/// unmatched traffic, so it follows `unmatched` (a blind tunnel or nothing).
async fn serve_routed(
    runtime: &Arc<Runtime>,
    upgraded: hyper::upgrade::Upgraded,
    routed: Routed,
    inner: impl FnOnce(Arc<Runtime>, Authority, Scheme) -> Handler,
) {
    let started = Instant::now();
    let Routed {
        authority,
        tls,
        tls_routed,
        config,
    } = routed;
    let (host, port) = (authority.host(), authority.port_u16());
    let limits = &config.limits;
    let (protocol, io) =
        match sniff::sniff(TokioIo::new(upgraded), limits.header_read_timeout).await {
            Ok(sniffed) => sniffed,
            Err(Silent::TimedOut) => {
                runtime
                    .metrics
                    .tunnel_refused(TunnelRefusal::HeaderReadTimeout);
                tracing::debug!(
                    host,
                    port,
                    "closing a tunnel that sent nothing within header_read_timeout"
                );
                return;
            }
            Err(Silent::Closed) => return,
        };
    if protocol == Protocol::Http {
        let _active = runtime.metrics.tunnel_opened(TunnelKind::Plaintext);
        let handler = inner(runtime.clone(), authority.clone(), Scheme::HTTP);
        let limits = remaining(limits, started);
        let drain = runtime.tunnels.draining();
        crate::listener::serve_inside(io, move |req| handler(req), &limits, drain).await;
        return;
    }
    match (tls, on_tls(tls_routed, config.unmatched)) {
        (Some(tls), _) => {
            let handler = inner(runtime.clone(), authority.clone(), Scheme::HTTPS);
            intercept(runtime, io, tls, authority, handler, limits, started).await;
        }
        (None, TlsWithoutInterception::Refuse(why)) => {
            runtime.metrics.tunnel_refused(why);
            match why {
                TunnelRefusal::TlsNotIntercepted => tracing::warn!(host, port, "closing a tunnel to a routed host: TLS arrived and tls_intercept is not configured, so no header can be added (send plain http://, or configure tls_intercept)"),
                _ => tracing::debug!(host, port, "closing a tunnel: TLS arrived where only a plain-http route names the host, and unmatched is deny"),
            }
        }
        (None, TlsWithoutInterception::Blind) => {
            match open_blind(runtime, &config, &authority).await {
                Ok(upstream) => {
                    let _active = runtime.metrics.tunnel_opened(TunnelKind::Blind);
                    splice(io, upstream, TUNNEL_IDLE_TIMEOUT).await;
                }
                Err(e) => {
                    tracing::debug!(host, port, error = %e, "closing a tunnel that cannot be opened")
                }
            }
        }
    }
}

/// What becomes of TLS in a routed tunnel that cannot intercept it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsWithoutInterception {
    Refuse(TunnelRefusal),
    /// Unmatched traffic under `unmatched: forward`.
    Blind,
}

/// TLS to an authority a route names as `https://` (`tls_routed`) cannot get its header
/// without `tls_intercept`: closed. Where only a plain-http route names it (a pattern
/// without a port, CONNECT to port 80), TLS is traffic no route selects: `unmatched`.
fn on_tls(tls_routed: bool, unmatched: Unmatched) -> TlsWithoutInterception {
    match (tls_routed, unmatched) {
        (true, _) => TlsWithoutInterception::Refuse(TunnelRefusal::TlsNotIntercepted),
        (false, Unmatched::Deny) => TlsWithoutInterception::Refuse(TunnelRefusal::NoRoute),
        (false, Unmatched::Forward) => TlsWithoutInterception::Blind,
    }
}

/// `limits` with what is left of `header_read_timeout` since `started` (the tunnel's
/// protocol detection and handshake count towards the first request head).
fn remaining(limits: &Limits, started: Instant) -> Limits {
    Limits {
        header_read_timeout: limits.header_read_timeout.saturating_sub(started.elapsed()),
        ..limits.clone()
    }
}

/// Connects a blind tunnel: only to `tunnel_ports`, never to the proxy itself, and on a
/// shared listener never to loopback or link-local addresses (SPEC §4 Shared egress).
/// There, every failure reads the same, so a refusal never tells an open port from a
/// closed one.
async fn open_blind(
    runtime: &Runtime,
    config: &Config,
    authority: &Authority,
) -> Result<TcpStream, ProxyError> {
    let (host, port) = (authority.host(), authority.port_u16().unwrap_or(443));
    let shared = config.shared_egress();
    if !config.tunnel_ports.allows(port) {
        return Err(ProxyError::DestinationForbidden {
            detail: format!("tunnels go only to tunnel_ports, not to port {port}"),
        });
    }
    let reach = guard::Reach {
        own: &runtime.own,
        no_local: shared,
    };
    let checked = guard::destination(host, port, reach)
        .await
        .map_err(|e| match e {
            ProxyError::DestinationForbidden { .. } => e,
            _ if shared => ProxyError::UpstreamUnavailable {
                detail: format!("cannot open a tunnel to {authority}"),
            },
            _ => e,
        })?;
    if let Some(proxy) = config.egress.proxy_for(host) {
        // SPEC §11: unmatched tunnels leave by the top-level egress proxy too; the proxy
        // gets the name, so the address checked above is not pinned.
        let target = format!("{host}:{port}");
        return crate::outbound::tunnel_through(proxy, &target, TUNNEL_CONNECT_TIMEOUT)
            .await
            .map_err(|e| ProxyError::UpstreamUnavailable {
                detail: match shared {
                    true => format!("cannot open a tunnel to {authority}"),
                    false => e.to_string(),
                },
            });
    }
    let connecting = async {
        match checked {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect(authority.as_str()).await,
        }
    };
    let failed = |what: String| match shared {
        true => ProxyError::UpstreamUnavailable {
            detail: format!("cannot open a tunnel to {authority}"),
        },
        false => ProxyError::UpstreamUnavailable { detail: what },
    };
    match tokio::time::timeout(TUNNEL_CONNECT_TIMEOUT, connecting).await {
        Err(_) if !shared => Err(ProxyError::UpstreamTimeout {
            detail: format!("connecting to {authority} timed out"),
        }),
        Err(_) => Err(failed(String::new())),
        Ok(Err(e)) => Err(failed(format!("cannot connect to {authority}: {e}"))),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

fn established() -> Response<Body> {
    let mut resp = Response::new(crate::error::full(""));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Terminates TLS on the app's side of the tunnel and serves the requests inside
/// (HTTP/1.1 or h2, by ALPN) with `handler`, under the listener's `limits` (the
/// handshake counts towards the first request head, timed from `started`).
async fn intercept<S>(
    runtime: &Runtime,
    stream: S,
    tls: Arc<rustls::ServerConfig>,
    authority: Authority,
    handler: Handler,
    limits: &Limits,
    started: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // Typically the app does not trust the CA yet: say so clearly.
            tracing::warn!(host = authority.host(), port = authority.port_u16(), error = %e, "TLS handshake with the app failed (does the app trust the tls_intercept CA?)");
            return;
        }
        Err(_) => return,
    };
    let _active = runtime.metrics.tunnel_opened(TunnelKind::Intercepted);
    let limits = remaining(limits, started);
    let drain = runtime.tunnels.draining();
    crate::listener::serve_inside(stream, move |req| handler(req), &limits, drain).await;
}

/// Splices the app's and the upstream's sides of an accepted upgrade (after `101`).
pub(super) fn splice_upgrade(
    runtime: &Arc<Runtime>,
    client_side: hyper::upgrade::OnUpgrade,
    upstream_side: hyper::upgrade::OnUpgrade,
) {
    let runtime = runtime.clone();
    let tracked = runtime.tunnels.track();
    tokio::spawn(async move {
        let _tracked = tracked;
        match (client_side.await, upstream_side.await) {
            (Ok(a), Ok(b)) => {
                let _active = runtime.metrics.tunnel_opened(TunnelKind::Upgrade);
                splice(TokioIo::new(a), TokioIo::new(b), TUNNEL_IDLE_TIMEOUT).await;
            }
            _ => tracing::debug!("upgrade did not complete"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_that_cannot_be_intercepted_is_refused_unless_no_route_wanted_it() {
        use TlsWithoutInterception::*;
        let cases = [
            (
                true,
                Unmatched::Forward,
                Refuse(TunnelRefusal::TlsNotIntercepted),
            ),
            (
                true,
                Unmatched::Deny,
                Refuse(TunnelRefusal::TlsNotIntercepted),
            ),
            (false, Unmatched::Deny, Refuse(TunnelRefusal::NoRoute)),
            (false, Unmatched::Forward, Blind),
        ];
        for (tls_routed, unmatched, want) in cases {
            assert_eq!(
                on_tls(tls_routed, unmatched),
                want,
                "{tls_routed} {unmatched:?}"
            );
        }
    }
}
