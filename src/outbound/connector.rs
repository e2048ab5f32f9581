//! The upstream client's connector: a direct TCP connection, or one through the egress
//! proxy — a `CONNECT` tunnel for TLS destinations (and for plain ones when the client
//! must own the connection end to end: h2c, upgrades), else a connection to the proxy
//! that hyper's client sends absolute-form requests on (`Connected::proxy(true)`).
//!
//! TLS, when the destination needs it, is added on top by the caller's TLS connector, so
//! through a tunnel it runs end to end with the destination, verified as usual.
//!
//! hyper-util's `Tunnel` connector is not used: it accepts only a 200, names neither the
//! proxy nor the status in its errors, and has no deadline of its own. The handshake here
//! is short: one request head out, one response head back (at most [`MAX_HEAD`] bytes),
//! any 2xx accepted, everything bounded by the connect timeout.

use super::{Egress, ProxyEndpoint};
use http::uri::Scheme;
use http::{HeaderValue, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest `CONNECT` response head read from a proxy.
const MAX_HEAD: usize = 8 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects to destinations as its [`Egress`] says. Cheap to clone (one per connection).
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    egress: Egress,
    /// Plain-http destinations get a tunnel too (h2c prior knowledge and upgrades need the
    /// connection to themselves; a proxy would not pass them on in absolute-form).
    tunnel_plain: bool,
    /// For the proxy's `CONNECT` answer (the TCP connect has the `HttpConnector`'s).
    timeout: Duration,
}

impl Connector {
    /// `http` connects (to destinations, or to the proxy); `timeout` bounds the wait for
    /// the proxy's answer to a `CONNECT`.
    pub fn new(http: HttpConnector, egress: Egress, tunnel_plain: bool, timeout: Duration) -> Self {
        Connector {
            http,
            egress,
            tunnel_plain,
            timeout,
        }
    }

    /// The proxy a request to `uri` is sent to in absolute-form (and so needs
    /// `Proxy-Authorization` on the request itself), if any.
    pub fn absolute_form_via(&self, uri: &Uri) -> Option<&Arc<ProxyEndpoint>> {
        if self.tunnel_plain || uri.scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        self.egress.proxy_for(uri.host()?)
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let proxy = dst.host().and_then(|h| self.egress.proxy_for(h)).cloned();
        let tunnel = dst.scheme() != Some(&Scheme::HTTP) || self.tunnel_plain;
        let timeout = self.timeout;
        Box::pin(async move {
            let Some(proxy) = proxy else {
                let io = http.call(dst).await?;
                return Ok(Stream { io, proxied: false });
            };
            let io = http
                .call(proxy.uri().clone())
                .await
                .map_err(|e| TunnelError::unreachable(&proxy, &e))?;
            if !tunnel {
                return Ok(Stream { io, proxied: true });
            }
            let target = target(&dst).ok_or_else(|| TunnelError {
                message: "the destination has no host to CONNECT to".into(),
            })?;
            let tcp = io.into_inner();
            let tcp = tokio::time::timeout(timeout, handshake(tcp, &target, &proxy))
                .await
                .map_err(|_| TunnelError {
                    message: format!(
                        "the egress proxy {proxy} did not answer the CONNECT to {target} within {timeout:?}"
                    ),
                })??;
            Ok(Stream {
                io: TokioIo::new(tcp),
                proxied: false,
            })
        })
    }
}

/// A raw tunnel to `target` (`host:port`) through `proxy`, for callers that splice bytes
/// themselves rather than send requests (blind `CONNECT` tunnels of unmatched traffic):
/// TCP to the proxy and its `CONNECT` answer, both within `timeout`.
pub async fn tunnel_through(
    proxy: &ProxyEndpoint,
    target: &str,
    timeout: Duration,
) -> Result<TcpStream, TunnelError> {
    let opened = async {
        let tcp = TcpStream::connect(proxy.authority())
            .await
            .map_err(|e| TunnelError::unreachable(proxy, &e))?;
        let _ = tcp.set_nodelay(true);
        handshake(tcp, target, proxy).await
    };
    tokio::time::timeout(timeout, opened)
        .await
        .map_err(|_| TunnelError {
            message: format!(
                "the egress proxy {proxy} did not open a tunnel to {target} within {timeout:?}"
            ),
        })?
}

/// Why a connection through the egress proxy failed. Names the proxy by `host:port` and
/// the destination, never the credentials; it has no source, so its text is the whole
/// story a caller's "innermost cause" finds.
#[derive(Debug)]
pub struct TunnelError {
    message: String,
}

impl TunnelError {
    fn unreachable(proxy: &ProxyEndpoint, e: &(dyn std::error::Error + 'static)) -> Self {
        let mut root = e.to_string();
        let mut cur = e.source();
        while let Some(next) = cur {
            root = format!("{root}: {next}");
            cur = next.source();
        }
        TunnelError {
            message: format!("cannot connect to the egress proxy {proxy}: {root}"),
        }
    }
}

impl std::fmt::Display for TunnelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TunnelError {}

/// `host:port` of `dst`, the port defaulting by scheme.
fn target(dst: &Uri) -> Option<String> {
    let host = dst.host()?;
    let port = dst
        .port_u16()
        .unwrap_or(if dst.scheme() == Some(&Scheme::HTTP) {
            80
        } else {
            443
        });
    Some(format!("{host}:{port}"))
}

/// Sends `CONNECT target` (with the proxy's `Proxy-Authorization` from the start, not
/// after a 407) and reads the answer's head: a 2xx opens the tunnel.
async fn handshake(
    mut tcp: TcpStream,
    target: &str,
    proxy: &ProxyEndpoint,
) -> Result<TcpStream, TunnelError> {
    let io_error = |e: io::Error| TunnelError {
        message: format!("the egress proxy {proxy} failed during the CONNECT to {target}: {e}"),
    };
    let head = connect_head(target, proxy.auth());
    tcp.write_all(&head).await.map_err(io_error)?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let end = loop {
        if len == buf.len() {
            return Err(TunnelError {
                message: format!("the egress proxy {proxy} answered the CONNECT to {target} with a head over {MAX_HEAD} bytes"),
            });
        }
        let n = tcp.read(&mut buf[len..]).await.map_err(io_error)?;
        if n == 0 {
            return Err(TunnelError {
                message: format!("the egress proxy {proxy} closed the connection instead of answering the CONNECT to {target}"),
            });
        }
        len += n;
        if let Some(i) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    match status(&buf[..end]) {
        // Nothing may follow the head: the client speaks first in a tunnel (TLS, h2c and
        // HTTP/1.1 all do), so bytes here would be the proxy's, not the destination's.
        Some(s) if (200..300).contains(&s) && end == len => Ok(tcp),
        Some(s) if (200..300).contains(&s) => Err(TunnelError {
            message: format!("the egress proxy {proxy} sent data after accepting the CONNECT to {target}"),
        }),
        Some(407) => Err(TunnelError {
            message: format!(
                "the egress proxy {proxy} answered 407 (proxy authentication required) to the CONNECT to {target}: {}",
                match proxy.auth() {
                    Some(_) => "it did not accept the credentials in egress_proxy",
                    None => "egress_proxy has no credentials (http://user:password@host:port)",
                }
            ),
        }),
        Some(s) => Err(TunnelError {
            message: format!("the egress proxy {proxy} refused the CONNECT to {target} with status {s}"),
        }),
        None => Err(TunnelError {
            message: format!("the egress proxy {proxy} answered the CONNECT to {target} with something that is not HTTP/1.x"),
        }),
    }
}

/// The `CONNECT` request head.
fn connect_head(target: &str, auth: Option<&HeaderValue>) -> Vec<u8> {
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(auth) = auth {
        head.extend_from_slice(b"Proxy-Authorization: ");
        head.extend_from_slice(auth.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The status code of an HTTP/1.x response head.
fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    (version.starts_with("HTTP/1.") && code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
        .then(|| code.parse().ok())
        .flatten()
}

/// A connection [`Connector`] made: TCP to the destination, to the proxy (requests in
/// absolute-form), or a tunnel through the proxy.
pub struct Stream {
    io: TokioIo<TcpStream>,
    /// Requests on this connection go to the proxy in absolute-form.
    proxied: bool,
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::{connect_head, handshake, status};
    use crate::outbound::ProxyEndpoint;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A one-shot proxy answering `answer` to whatever head it receives, which it returns.
    async fn answer_once(
        answer: &'static [u8],
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 512];
            while !head.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).await.unwrap();
                head.extend_from_slice(&b[..n]);
            }
            let _ = s.write_all(answer).await;
            head
        });
        (addr, task)
    }

    async fn run(answer: &'static [u8], url: &str) -> (Result<(), String>, String) {
        let (addr, task) = answer_once(answer).await;
        let proxy = ProxyEndpoint::parse(&url.replace("ADDR", &addr.to_string())).unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let got = handshake(tcp, "api.example:443", &proxy).await;
        let head = String::from_utf8(task.await.unwrap()).unwrap();
        (got.map(drop).map_err(|e| e.to_string()), head)
    }

    #[tokio::test]
    async fn any_2xx_opens_the_tunnel_and_credentials_go_first() {
        let (got, head) = run(
            b"HTTP/1.1 200 Connection established\r\n\r\n",
            "http://u%40x:p%3Aw@ADDR",
        )
        .await;
        assert_eq!(got, Ok(()));
        // base64("u@x:p:w")
        assert_eq!(head, "CONNECT api.example:443 HTTP/1.1\r\nHost: api.example:443\r\nProxy-Authorization: Basic dUB4OnA6dw==\r\n\r\n");
        let (got, _) = run(b"HTTP/1.0 204 No Content\r\nVia: x\r\n\r\n", "http://ADDR").await;
        assert_eq!(got, Ok(()));
    }

    #[tokio::test]
    async fn refusals_name_the_proxy_and_status_but_no_secret() {
        let (got, _) = run(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
            "http://user:hunter2@ADDR",
        )
        .await;
        let e = got.unwrap_err();
        assert!(
            e.contains("answered 407") && e.contains("did not accept the credentials"),
            "{e}"
        );
        assert!(
            e.contains("127.0.0.1:") && !e.contains("hunter2") && !e.contains("user"),
            "{e}"
        );
        let (got, _) = run(b"HTTP/1.1 403 Forbidden\r\n\r\n", "http://ADDR").await;
        assert!(got
            .unwrap_err()
            .contains("refused the CONNECT to api.example:443 with status 403"));
        let (got, _) = run(b"HTTP/1.1 200 OK\r\n\r\nEARLY", "http://ADDR").await;
        assert!(got.unwrap_err().contains("sent data after accepting"));
        let (got, _) = run(b"SSH-2.0-OpenSSH\r\n\r\n", "http://ADDR").await;
        assert!(got.unwrap_err().contains("not HTTP/1.x"));
        let (got, _) = run(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            "http://ADDR",
        )
        .await;
        assert!(got.unwrap_err().contains("has no credentials"));
    }

    #[tokio::test]
    async fn a_raw_tunnel_for_blind_connects() {
        let (addr, task) = answer_once(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
        let proxy = ProxyEndpoint::parse(&format!("http://u:p@{addr}")).unwrap();
        let timeout = std::time::Duration::from_secs(5);
        assert!(super::tunnel_through(&proxy, "db.example:5432", timeout)
            .await
            .is_ok());
        let head = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(
            head.starts_with("CONNECT db.example:5432 HTTP/1.1\r\n"),
            "{head}"
        );
        // Nothing listens there any more.
        let e = super::tunnel_through(&proxy, "db.example:5432", timeout)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot connect to the egress proxy {addr}")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_head_that_never_ends_is_cut_off() {
        static LONG: [u8; 9000] = [b'x'; 9000];
        let (got, _) = run(&LONG, "http://ADDR").await;
        assert!(got.unwrap_err().contains("over 8192 bytes"));
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(status(b"HTTP/1.0 407\r\n\r\n"), Some(407));
        assert_eq!(status(b"HTTP/2 200\r\n\r\n"), None);
        assert_eq!(status(b"HTTP/1.1 2000 OK\r\n\r\n"), None);
        assert_eq!(status(b"HTTP/1.1 +20 OK\r\n\r\n"), None);
        assert_eq!(
            connect_head("[::1]:8443", None),
            b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"
        );
    }
}
