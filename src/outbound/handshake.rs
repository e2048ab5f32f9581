//! The `CONNECT` handshake with the egress proxy: one request head out (credentials
//! from the start, not after a 407), one response head back (at most [`MAX_HEAD`] bytes),
//! any 2xx accepted. Nothing after the head is read: it is the destination's.

use super::ProxyEndpoint;
use http::HeaderValue;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest `CONNECT` response head read from a proxy.
const MAX_HEAD: usize = 8 * 1024;

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
    pub(super) message: String,
}

impl TunnelError {
    pub(super) fn unreachable(
        proxy: &ProxyEndpoint,
        e: &(dyn std::error::Error + 'static),
    ) -> Self {
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

/// Sends `CONNECT target` (with the proxy's `Proxy-Authorization` from the start, not
/// after a 407) and reads the answer's head: a 2xx opens the tunnel.
pub(super) async fn handshake(
    mut tcp: TcpStream,
    target: &str,
    proxy: &ProxyEndpoint,
) -> Result<TcpStream, TunnelError> {
    let io_error = |e: io::Error| TunnelError {
        message: format!("the egress proxy {proxy} failed during the CONNECT to {target}: {e}"),
    };
    let head = connect_head(target, proxy.auth());
    tcp.write_all(&head).await.map_err(io_error)?;
    let head = read_head(&mut tcp).await.map_err(|e| match e {
        HeadError::Io(e) => io_error(e),
        HeadError::Closed => TunnelError {
            message: format!("the egress proxy {proxy} closed the connection instead of answering the CONNECT to {target}"),
        },
        HeadError::TooLarge => TunnelError {
            message: format!("the egress proxy {proxy} answered the CONNECT to {target} with a head over {MAX_HEAD} bytes"),
        },
    })?;
    match status(&head) {
        // Whatever follows the head is the destination's and stays unread in the socket:
        // servers that speak first (an h2 server's SETTINGS, an SSH or SMTP banner) may
        // have it arrive together with the proxy's answer.
        Some(s) if (200..300).contains(&s) => Ok(tcp),
        Some(407) => Err(TunnelError {
            message: format!(
                "the egress proxy {proxy} answered 407 (proxy authentication required) to the CONNECT to {target}: {}",
                proxy.auth_refusal()
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

/// Why a `CONNECT` answer's head could not be read.
enum HeadError {
    Io(io::Error),
    Closed,
    TooLarge,
}

/// Reads a response head from `tcp`, up to and including its blank line, and not one
/// byte further: what follows belongs to the tunnel's destination. Bytes are peeked
/// first and only the head's part is consumed, so this takes a couple of reads rather
/// than one per byte.
async fn read_head(tcp: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(256);
    let mut peeked = vec![0u8; MAX_HEAD];
    loop {
        let room = MAX_HEAD - head.len();
        if room == 0 {
            return Err(HeadError::TooLarge);
        }
        let n = tcp.peek(&mut peeked[..room]).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        // The blank line may straddle what was consumed before and what is peeked now.
        let from = head.len().saturating_sub(3);
        let before = head.len();
        head.extend_from_slice(&peeked[..n]);
        let end = head[from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| from + i + 4);
        head.truncate(end.unwrap_or(head.len()));
        tcp.read_exact(&mut peeked[..head.len() - before])
            .await
            .map_err(HeadError::Io)?;
        if end.is_some() {
            return Ok(head);
        }
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
        let (got, _) = run(b"SSH-2.0-OpenSSH\r\n\r\n", "http://ADDR").await;
        assert!(got.unwrap_err().contains("not HTTP/1.x"));
        let (got, _) = run(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            "http://ADDR",
        )
        .await;
        assert!(got.unwrap_err().contains("has no credentials"));
    }

    /// A proxy that answers in `parts`, a pause between each, then closes.
    async fn answer_in_parts(parts: &'static [&'static [u8]]) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 512];
            let _ = s.read(&mut b).await.unwrap();
            for part in parts {
                s.write_all(part).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        });
        TcpStream::connect(addr).await.unwrap()
    }

    /// What the destination sends first (an h2 server's SETTINGS, an SSH banner) may
    /// arrive with the proxy's answer, or with the head's last bytes: it is the tunnel's.
    #[tokio::test]
    async fn bytes_after_the_head_are_the_destinations() {
        let proxy = ProxyEndpoint::parse("http://127.0.0.1:9").unwrap();
        let cases: [&'static [&'static [u8]]; 3] = [
            &[b"HTTP/1.1 200 OK\r\n\r\nEARLY"],
            &[b"HTTP/1.1 200 OK\r\nVia: x\r\n\r", b"\nEARLY"],
            &[b"HTTP/1.1 200", b" OK\r\n", b"\r\nEA", b"RLY"],
        ];
        for parts in cases {
            let tcp = answer_in_parts(parts).await;
            let mut tcp = handshake(tcp, "ssh.example:22", &proxy).await.unwrap();
            let mut rest = Vec::new();
            tcp.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"EARLY", "{parts:?}");
        }
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
