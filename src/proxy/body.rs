//! The app's request body on its way upstream: a limit on how long it may send nothing
//! (`body_read_timeout`), errors that say whose fault they are (the app's, never the
//! upstream's: SPEC §6), and the shared budget for replay buffers.

use crate::error::{BoxError, ProxyError};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Why the app's body failed.
#[derive(Debug)]
pub enum AppBodyError {
    /// Nothing arrived for this long.
    Stalled(Duration),
    /// Bad chunk framing, an early close, a reset stream.
    Malformed(hyper::Error),
}

impl fmt::Display for AppBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppBodyError::Stalled(d) => write!(
                f,
                "the request body sent nothing for {}",
                crate::config::format_duration(*d)
            ),
            AppBodyError::Malformed(e) => write!(f, "reading the request body failed: {e}"),
        }
    }
}

impl std::error::Error for AppBodyError {}

impl AppBodyError {
    pub fn to_proxy_error(&self) -> ProxyError {
        match self {
            AppBodyError::Stalled(_) => ProxyError::RequestTimeout {
                detail: self.to_string(),
            },
            AppBodyError::Malformed(_) => ProxyError::BadRequest {
                detail: self.to_string(),
            },
        }
    }

    /// The app-body error somewhere in `e`'s chain of causes, if that is what failed.
    pub fn find<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e AppBodyError> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(found) = err.downcast_ref::<AppBodyError>() {
                return Some(found);
            }
            cur = err.source();
        }
        None
    }
}

/// The app's body, failing with [`AppBodyError::Stalled`] when no frame arrives for
/// `stall`. The timer is created the first time the body has to wait (never for a body
/// that is already complete) and re-armed, not re-created, at each later wait.
pub struct AppBody {
    inner: Incoming,
    stall: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current wait.
    armed: bool,
}

impl AppBody {
    pub fn new(inner: Incoming, stall: Duration) -> Self {
        AppBody {
            inner,
            stall,
            timer: None,
            armed: false,
        }
    }
}

impl hyper::body::Body for AppBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(|e| AppBodyError::Malformed(e).into())))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.stall;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.armed {
                    timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(AppBodyError::Stalled(this.stall).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
