//! Safe on a shared network (issue 10; SPEC §4, §6, §7), through the real binary and raw
//! bytes on loopback sockets, so that no client library normalises a path, adds a header
//! or retries for us. Each test asserts the exact status, `x-token-sidecar-error` and JSON
//! `error` the contract names.
//!
//! Every test starts its own `token-sidecar` process (`Binary`); `IT_BINARY=path` runs
//! them against another build, which is how each was seen to fail before issue 10.

mod admin;
mod browsers;
mod budget;
mod clients;
mod egress;
mod http10;
mod limits;
mod paths;

use crate::support::sidecar::Binary;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// How long any single answer may take before the test fails (no test waits forever).
const ANSWER: Duration = Duration::from_secs(10);

/// Starts the binary with loopback listeners and waits until it is healthy.
async fn start(yaml: &str) -> Binary {
    start_at("127.0.0.1", "127.0.0.1", yaml).await
}

/// Starts the binary with `listen` on `proxy_ip` and `admin_listen` on `admin_ip`.
async fn start_at(proxy_ip: &str, admin_ip: &str, yaml: &str) -> Binary {
    let mut bin = Binary::start_at(proxy_ip, admin_ip, yaml, &[], &[]);
    bin.wait_healthy().await;
    bin
}

/// One HTTP response as it came off the wire.
struct Resp {
    /// `HTTP/1.1` or `HTTP/1.0`.
    version: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {:?} {:?}",
            self.version,
            self.status,
            self.headers,
            self.text()
        )
    }
}

/// The proxy's own error: `status`, `x-token-sidecar-error: code` and `{"error": code}`.
#[track_caller]
fn assert_refused(resp: &Resp, status: u16, code: &str) {
    assert_eq!(resp.status, status, "want {status} {code}, got {resp:?}");
    assert_eq!(resp.header("x-token-sidecar-error"), Some(code), "{resp:?}");
    assert_eq!(resp.json()["error"], code, "{resp:?}");
}

/// A raw HTTP/1.1 client connection: bytes out, responses parsed as they arrive (bytes
/// past one response stay buffered for the next).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The request was CONNECT: a 2xx answer opens a tunnel and has no body.
    tunnel_expected: bool,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn::over(TcpStream::connect(addr).await.unwrap())
    }

    fn over(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            tunnel_expected: false,
        }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.unwrap();
    }

    /// The next response (to a request that was not HEAD).
    async fn response(&mut self) -> Resp {
        self.read_response(false).await
    }

    /// The next response to a HEAD request (a head, never a body).
    async fn head_response(&mut self) -> Resp {
        self.read_response(true).await
    }

    async fn read_response(&mut self, head_only: bool) -> Resp {
        match timeout(ANSWER, self.try_response(head_only)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("no response: {e}"),
            Err(_) => panic!("no response within {ANSWER:?}"),
        }
    }

    /// The next response, or the error that ended the connection first.
    async fn try_response(&mut self, head_only: bool) -> std::io::Result<Resp> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut resp = Resp {
            version,
            status,
            headers,
            body: Vec::new(),
        };
        let no_body = head_only
            || status < 200
            || status == 204
            || status == 304
            || (self.tunnel_expected && (200..300).contains(&status));
        if no_body {
            return Ok(resp);
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            resp.body = self.chunked().await?;
        } else if let Some(n) = resp.header("content-length") {
            let n: usize = n.parse().unwrap();
            while self.buf.len() < n {
                self.fill().await?;
            }
            resp.body = self.buf.drain(..n).collect();
        } else {
            // Delimited by the end of the connection.
            while self.fill().await.is_ok() {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    async fn chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                self.fill().await?;
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return Ok(body);
            }
        }
    }

    /// Reads more bytes into the buffer; an error at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// True when the server closes the connection (end of stream or reset) within
    /// `limit`; whatever it sends before is discarded.
    async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Err(_) => return false,
                Ok(Err(_)) => return true,
                Ok(Ok(())) => self.buf.clear(),
            }
        }
    }
}

/// One of this machine's addresses that is not loopback, if it has one. Connecting a UDP
/// socket sends nothing; it only asks the kernel which source address it would use.
fn outside_ip() -> Option<IpAddr> {
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    udp.connect("203.0.113.1:9").ok()?;
    let ip = udp.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `raw` on a fresh connection to `addr` and returns the response.
async fn exchange(addr: SocketAddr, raw: impl AsRef<[u8]>) -> Resp {
    let mut c = Conn::open(addr).await;
    c.send(raw).await;
    c.response().await
}

/// `CONNECT authority` on a fresh connection: the proxy's answer (200 means a tunnel).
async fn connect(proxy: SocketAddr, authority: &str) -> Resp {
    let mut c = Conn::open(proxy).await;
    c.tunnel_expected = true;
    c.send(format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    ))
    .await;
    c.response().await
}
