//! What an accepted CONNECT tunnel carries (SPEC §4 Plaintext HTTP inside CONNECT): its
//! first bytes tell a TLS ClientHello from plain HTTP (HTTP/1.1, or the h2c connection
//! preface of a gRPC client that tunnels through `http_proxy`). The bytes read to decide
//! are handed back in front of the stream ([`Rewind`]), so whoever serves the tunnel
//! (the TLS acceptor, hyper, a blind splice) reads the stream from its first byte.
//!
//! Bounded: at most [`SNIFF_BYTES`] are read to decide, within the time the caller gives.

use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Enough to read a TLS record header's content type and version.
const SNIFF_BYTES: usize = 3;

/// What the first bytes of a tunnel are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A TLS handshake record (`0x16`, then a `0x03 0x0N` version).
    Tls,
    /// Anything else: served as HTTP (hyper tells the h2c preface from HTTP/1.1, and
    /// answers what is neither with 400).
    Http,
}

/// Why a tunnel was closed before its protocol was known.
#[derive(Debug)]
pub enum Silent {
    /// Nothing decisive arrived within the time given.
    TimedOut,
    /// The app closed the tunnel (or it failed) first.
    Closed,
}

/// Reads the first bytes of `io` (within `within`) and returns what they are, with the
/// stream rewound to its start.
pub async fn sniff<S: AsyncRead + Unpin>(
    mut io: S,
    within: Duration,
) -> Result<(Protocol, Rewind<S>), Silent> {
    let mut head = [0u8; SNIFF_BYTES];
    let mut filled = 0;
    let decided = tokio::time::timeout(within, async {
        loop {
            if let Some(p) = classify(&head[..filled]) {
                return Ok(p);
            }
            match io.read(&mut head[filled..]).await {
                Ok(0) | Err(_) => return Err(Silent::Closed),
                Ok(n) => filled += n,
            }
        }
    })
    .await
    .map_err(|_| Silent::TimedOut)??;
    let prefix = Bytes::copy_from_slice(&head[..filled]);
    Ok((decided, Rewind { prefix, inner: io }))
}

/// What `head` (the first bytes of a tunnel) shows; `None` while more bytes are needed.
/// HTTP methods and the h2c preface (`PRI * HTTP/2.0`) are ASCII tokens, so a first byte
/// of `0x16` (a TLS handshake record) can never start HTTP.
pub fn classify(head: &[u8]) -> Option<Protocol> {
    match head {
        [] | [0x16] | [0x16, 0x03] => None,
        [0x16, 0x03, minor, ..] if *minor <= 0x04 => Some(Protocol::Tls),
        _ => Some(Protocol::Http),
    }
}

/// A stream with bytes already read from it put back in front.
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn tls_handshakes_are_told_from_http() {
        let cases: [(&[u8], Option<Protocol>); 11] = [
            (b"", None),
            (&[0x16], None),
            (&[0x16, 0x03], None),
            (&[0x16, 0x03, 0x01, 0x02, 0x00], Some(Protocol::Tls)),
            (&[0x16, 0x03, 0x03], Some(Protocol::Tls)),
            // Not a TLS version: not TLS (and hyper will refuse it as HTTP).
            (&[0x16, 0x03, 0x09], Some(Protocol::Http)),
            (&[0x16, b'x'], Some(Protocol::Http)),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Some(Protocol::Http)),
            (b"G", Some(Protocol::Http)),
            (b"GET / HTTP/1.1\r\n", Some(Protocol::Http)),
            (b"POST", Some(Protocol::Http)),
        ];
        for (head, want) in cases {
            assert_eq!(classify(head), want, "{head:?}");
        }
    }

    #[tokio::test]
    async fn the_sniffed_bytes_are_read_again_and_writes_pass_through() {
        let (app, mut peer) = tokio::io::duplex(1024);
        peer.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let (p, mut io) = sniff(app, Duration::from_secs(5)).await.unwrap();
        assert_eq!(p, Protocol::Http);
        let mut got = vec![0u8; 16];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"PRI * HTTP/2.0\r\n");
        io.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        peer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }

    #[tokio::test]
    async fn a_record_header_split_over_reads_is_waited_for() {
        let (app, mut peer) = tokio::io::duplex(1024);
        let sniffing = tokio::spawn(sniff(app, Duration::from_secs(5)));
        for b in [0x16u8, 0x03, 0x01, 0x00] {
            peer.write_all(&[b]).await.unwrap();
            tokio::task::yield_now().await;
        }
        let (p, mut io) = sniffing.await.unwrap().unwrap();
        assert_eq!(p, Protocol::Tls);
        let mut got = [0u8; 4];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x16, 0x03, 0x01, 0x00]);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_and_early_close_end_the_sniff() {
        let (app, _peer) = tokio::io::duplex(1024);
        let r = sniff(app, Duration::from_secs(3)).await;
        assert!(matches!(r, Err(Silent::TimedOut)), "{:?}", r.err());
        let (app, mut peer) = tokio::io::duplex(1024);
        peer.write_all(&[0x16]).await.unwrap();
        drop(peer);
        let r = sniff(app, Duration::from_secs(3)).await;
        assert!(matches!(r, Err(Silent::Closed)), "{:?}", r.err());
    }
}
