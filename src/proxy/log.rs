//! The request log line (one per request, target `token_sidecar::proxy::log`) and the request
//! id. The line never holds a header value other than the request id, userinfo or a query
//! string; text fields are quoted by the formatter, so the text format is logfmt-clean
//! and the JSON format has typed numbers.

use super::target;
use super::Outcome;
use crate::listener::Peer;
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use std::fmt;
use std::time::Duration;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `x-request-id` taken from an app; a longer one is replaced.
const MAX_REQUEST_ID: usize = 128;

/// What the log line needs of the request, kept as cheap handles before the request is
/// consumed; nothing but the id when the line is not written (level above `info`).
pub(super) struct RequestLog {
    id: HeaderValue,
    seen: Option<Seen>,
}

struct Seen {
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    bytes_in: Option<u64>,
}

impl RequestLog {
    /// Reads the request, and gives it an `x-request-id` (the app's own when it sent a
    /// usable one, else a new one), which is forwarded upstream.
    pub fn start<B: hyper::body::Body>(req: &mut Request<B>) -> Self {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if usable(v) => v.clone(),
            _ => {
                let id = new_id();
                req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        let seen = tracing::enabled!(tracing::Level::INFO).then(|| Seen {
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: req.headers().get(http::header::HOST).cloned(),
            bytes_in: req.body().size_hint().exact(),
        });
        RequestLog { id, seen }
    }

    pub fn emit<B: hyper::body::Body>(
        &self,
        peer: Peer,
        out: &Outcome<'_>,
        resp: &Response<B>,
        took: Duration,
    ) {
        let Some(seen) = &self.seen else {
            return;
        };
        if !tracing::enabled!(tracing::Level::INFO) {
            return;
        }
        let host = target::request_host(&seen.uri, seen.host.as_ref()).unwrap_or("-");
        tracing::info!(
            request_id = self.id.to_str().unwrap_or("-"),
            route = out.route.map_or("-", |r| r.config.name.as_str()),
            provider = out.route.map_or("-", |r| r.config.provider.as_str()),
            client = out.client.unwrap_or("-"),
            peer = %peer.addr,
            method = seen.method.as_str(),
            host,
            path = seen.uri.path(),
            upstream = out.upstream.as_ref().map_or("-", |a| a.as_str()),
            status = resp.status().as_u16(),
            error = out.error.unwrap_or("-"),
            bytes_in = %Size(seen.bytes_in),
            bytes_out = %Size(resp.body().size_hint().exact()),
            latency_ms = millis(took),
            token = out.token,
            replayed = out.replayed,
            "request"
        );
    }
}

/// Milliseconds with at most three decimals (no float noise in the log).
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// A body size known from the head (`Content-Length`, or a complete body), else `-`
/// (streamed without a length).
struct Size(Option<u64>);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("-"),
        }
    }
}

/// An app's request id is kept when it is short, visible ASCII (it goes into logs).
fn usable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
}

/// 16 random hex digits.
fn new_id() -> HeaderValue {
    let mut buf = [0u8; 16];
    let n = fastrand::u64(..);
    for (i, b) in buf.iter_mut().enumerate() {
        let nibble = ((n >> (60 - 4 * i)) & 0xf) as u8;
        *b = b"0123456789abcdef"[nibble as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_or_made() {
        let mut req = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
        req.headers_mut()
            .insert("x-request-id", HeaderValue::from_static("app-42"));
        assert_eq!(RequestLog::start(&mut req).id, "app-42");
        let mut req = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
        let log = RequestLog::start(&mut req);
        assert_eq!(log.id.len(), 16);
        assert!(log.id.as_bytes().iter().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(req.headers()["x-request-id"], log.id, "forwarded upstream");
        let mut req = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
        req.headers_mut()
            .insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(RequestLog::start(&mut req).id, "has space");
    }

    #[test]
    fn the_request_is_read_only_when_the_line_is_written() {
        let at = |level| {
            tracing_subscriber::fmt()
                .with_max_level(level)
                .with_writer(std::io::sink)
                .finish()
        };
        let start = || {
            let mut req = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
            *req.uri_mut() = Uri::from_static("/a?b");
            RequestLog::start(&mut req)
        };
        let log = tracing::subscriber::with_default(at(tracing::Level::INFO), start);
        let seen = log.seen.expect("read at info");
        assert_eq!((seen.uri.path(), seen.bytes_in), ("/a", Some(0)));
        let log = tracing::subscriber::with_default(at(tracing::Level::WARN), start);
        assert!(log.seen.is_none(), "not read at warn");
        assert_eq!(log.id.len(), 16, "the request id is made at every level");
    }

    #[test]
    fn latency_has_at_most_three_decimals() {
        assert_eq!(
            millis(Duration::from_nanos(2_003_544_767)).to_string(),
            "2003.544"
        );
        assert_eq!(millis(Duration::from_micros(1500)).to_string(), "1.5");
        assert_eq!(Size(None).to_string(), "-");
        assert_eq!(Size(Some(12)).to_string(), "12");
    }
}
