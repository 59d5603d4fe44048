//! The proxied response body: streamed frame by frame from the upstream, with
//! the read timeout and the route's deadline (the client's response body
//! returns the connection to the pool once it was read to its exact end).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::error::{Cause, UpstreamAborted};
use super::pool::Stream;
use crate::client::ResponseBody;
use crate::http::BoxError;

/// An upstream response body (see the module docs). A failure mid-body is an
/// [`UpstreamAborted`] error: the listener must abort the client connection.
pub struct ProxiedBody {
    inner: ResponseBody<Stream>,
    /// `scheme://host:port`, for the abort's log line.
    target: String,
    read_timeout: Duration,
    deadline: Instant,
    route_timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl ProxiedBody {
    pub(crate) fn new(
        inner: ResponseBody<Stream>,
        target: String,
        read_timeout: Duration,
        deadline: Instant,
        route_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            target,
            read_timeout,
            deadline,
            route_timeout,
            timer: None,
            armed: false,
        }
    }

    fn abort(
        &mut self,
        cause: Cause,
        note: String,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let target = self.target.clone();
        Poll::Ready(Some(Err(Box::new(UpstreamAborted {
            cause,
            target,
            note,
        }))))
    }
}

impl Body for ProxiedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                let cause = super::cause_of(&error);
                this.abort(cause, error.to_string())
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                // Only a wait arms the timer: a body already in hand costs no timer.
                let now = Instant::now();
                let until = (now + this.read_timeout).min(this.deadline);
                if !this.armed {
                    this.armed = true;
                    let until = tokio::time::Instant::from_std(until);
                    match &mut this.timer {
                        Some(timer) => timer.as_mut().reset(until),
                        None => this.timer = Some(Box::pin(tokio::time::sleep_until(until))),
                    }
                }
                let fired = this
                    .timer
                    .as_mut()
                    .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                if !fired {
                    return Poll::Pending;
                }
                let note = if Instant::now() >= this.deadline {
                    format!(
                        "the route's timeout ({} s) passed",
                        this.route_timeout.as_secs_f64()
                    )
                } else {
                    format!(
                        "no bytes for read_timeout ({} s)",
                        this.read_timeout.as_secs_f64()
                    )
                };
                this.abort(Cause::Timeout, note)
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

/// A body of unknown length with its first frame read: `(body, Some(length))`
/// when that frame completed it (or it was empty), else `(the whole body, None)`.
/// The client's body failing is [`UpstreamError::ClientGone`].
pub(crate) async fn peek(
    mut body: crate::http::Body,
) -> Result<(crate::http::Body, Option<u64>), super::UpstreamError> {
    use http_body_util::BodyExt;
    let gone = |e: BoxError| super::UpstreamError::ClientGone {
        note: e.to_string(),
    };
    let Some(first) = body.frame().await else {
        return Ok((crate::http::full(Bytes::new()), Some(0)));
    };
    let first = first.map_err(gone)?;
    let mut second = None;
    if !body.is_end_stream() {
        // Python's server hands over what it has read: a body whose end came with its
        // first part goes out with Content-Length. Give the connection one turn to
        // decode what it already holds (a chunked body's last chunk) before deciding.
        tokio::task::yield_now().await;
        let ready = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)));
        match ready.await {
            Poll::Ready(None) => {
                if let Some(data) = first.data_ref() {
                    let data = data.clone();
                    let length = data.len() as u64;
                    return Ok((crate::http::full(data), Some(length)));
                }
            }
            Poll::Ready(Some(next)) => second = Some(next.map_err(gone)?),
            Poll::Pending => {}
        }
    }
    if body.is_end_stream() {
        let whole = match (first.data_ref(), second.as_ref().map(Frame::data_ref)) {
            (Some(data), None) => Some(data.clone()),
            (Some(a), Some(Some(b))) => Some([a.as_ref(), b.as_ref()].concat().into()),
            _ => None,
        };
        if let Some(data) = whole {
            let length = data.len() as u64;
            return Ok((crate::http::full(data), Some(length)));
        }
    }
    let rest = Prepended {
        first: Some(first),
        second,
        rest: body,
    };
    Ok((crate::http::boxed(rest), None))
}

/// A body whose first frame (or two) was already read.
struct Prepended {
    first: Option<Frame<Bytes>>,
    second: Option<Frame<Bytes>>,
    rest: crate::http::Body,
}

impl Body for Prepended {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take().or_else(|| this.second.take()) {
            return Poll::Ready(Some(Ok(first)));
        }
        Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.second.is_none() && self.rest.is_end_stream()
    }
}
