//! The `body` step for a request body of unknown length (`Transfer-Encoding:
//! chunked`, HTTP/2 without `Content-Length`): counted as it streams to the
//! upstream, the twin of `bastion.gateway.hygiene._counting`.
//!
//! The frame that takes the body past the route's `max_body` is not passed
//! on: the body fails instead, which ends the upload (the upstream connection
//! is then dropped, never reused), and the gateway answers Python's 413
//! `body_too_large` (audited at step `proxy`, where Python's proxy step meets
//! the same error). Nothing is buffered beyond the frame in hand. The rest of
//! the client's body is kept until the 413 has been sent ([`Over::hold`]): an
//! HTTP/2 stream whose request body is dropped first is reset before the
//! answer can go out.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::http::{Body, BoxError};

/// The body grew past the route's limit.
#[derive(Debug)]
pub struct TooLarge {
    pub limit: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body is larger than {} bytes", self.limit)
    }
}

impl std::error::Error for TooLarge {}

/// Whether a [`Counted`] body went over its limit, and the rest of it.
#[derive(Default)]
pub struct Over {
    flag: AtomicBool,
    rest: Mutex<Option<Body>>,
}

impl Over {
    /// The body went past its limit.
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn set(&self, rest: Option<Body>) {
        *self.rest.lock().unwrap_or_else(|e| e.into_inner()) = rest;
        self.flag.store(true, Ordering::Release);
    }

    /// `response` keeping the rest of the client's body until it has been sent.
    pub fn hold(&self, response: http::Response<Body>) -> http::Response<Body> {
        let rest = self.rest.lock().unwrap_or_else(|e| e.into_inner()).take();
        match rest {
            Some(rest) => response.map(|body| crate::http::boxed(Holding { body, _rest: rest })),
            None => response,
        }
    }
}

/// `response` keeping the request's unread `body` until it has been sent: an
/// HTTP/2 answer before the request's end (a refusal that reads no body) is
/// then followed by a reset of the request's half with `NO_ERROR`, where
/// dropping the body first would reset the stream (`CANCEL`) before the
/// answer goes out (RFC 9113 §8.1).
pub fn hold_body(response: http::Response<Body>, body: Body) -> http::Response<Body> {
    if http_body::Body::is_end_stream(&body) {
        return response;
    }
    response.map(|answer| {
        crate::http::boxed(Holding {
            body: answer,
            _rest: body,
        })
    })
}

/// A response body that keeps another body alive until it is dropped.
struct Holding {
    body: Body,
    _rest: Body,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body counted against `limit` bytes; `over` is set when it failed
/// for its size (the gateway reads it to render the 413).
pub struct Counted {
    inner: Option<Body>,
    limit: u64,
    received: u64,
    over: Arc<Over>,
}

impl Counted {
    /// `body` counted against `limit`; [`Over`] tells whether it went over.
    pub fn new(body: Body, limit: u64) -> (Self, Arc<Over>) {
        let over = Arc::new(Over::default());
        let counted = Counted {
            inner: Some(body),
            limit,
            received: 0,
            over: over.clone(),
        };
        (counted, over)
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let too_large = |limit| Poll::Ready(Some(Err(Box::new(TooLarge { limit }) as BoxError)));
        let Some(inner) = this.inner.as_mut() else {
            return too_large(this.limit);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.received = this.received.saturating_add(data.len() as u64);
                if this.received > this.limit {
                    this.over.set(this.inner.take());
                    return too_large(this.limit);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .map_or(true, |inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, |inner| inner.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;

    /// A body of several frames, its length unknown.
    struct Parts(VecDeque<Bytes>);

    impl http_body::Body for Parts {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn streamed(parts: &[&'static [u8]]) -> Body {
        crate::http::boxed(Parts(parts.iter().map(|p| Bytes::from_static(p)).collect()))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_passes_whole() {
        let (counted, over) = Counted::new(streamed(&[b"abc", b"defg"]), 7);
        let bytes = counted.collect().await.map(|c| c.to_bytes());
        assert_eq!(bytes.ok().as_deref(), Some(&b"abcdefg"[..]));
        assert!(!over.is_set());
    }

    #[tokio::test]
    async fn the_frame_past_the_limit_fails_the_body() {
        let (mut counted, over) = Counted::new(streamed(&[b"abc", b"defg", b"h"]), 6);
        let first = counted.frame().await.and_then(|f| f.ok()?.into_data().ok());
        assert_eq!(first.as_deref(), Some(&b"abc"[..]));
        let second = counted.frame().await.map(|f| f.map(|_| ()));
        let error = second.and_then(|r| r.err()).map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("the request body is larger than 6 bytes")
        );
        assert!(over.is_set());
        assert!(counted.frame().await.is_some_and(|f| f.is_err()));
        // The rest of the body rides with the answer until it is sent.
        let held = over.hold(http::Response::new(crate::http::full("413")));
        assert!(over.rest.lock().is_ok_and(|rest| rest.is_none()));
        let answer = held.into_body().collect().await.map(|c| c.to_bytes());
        assert_eq!(answer.ok().as_deref(), Some(&b"413"[..]));
    }

    /// A body that tells when it is dropped.
    struct Watched(Arc<AtomicBool>);

    impl http_body::Body for Watched {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Pending
        }
    }

    impl Drop for Watched {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }

    #[tokio::test]
    async fn an_unread_request_body_lives_until_the_answer_is_sent() {
        let dropped = Arc::new(AtomicBool::new(false));
        let unread = crate::http::boxed(Watched(Arc::clone(&dropped)));
        let held = hold_body(http::Response::new(crate::http::full("413")), unread);
        assert!(!dropped.load(Ordering::Acquire));
        let mut body = held.into_body();
        let frame = body.frame().await.and_then(|f| f.ok()?.into_data().ok());
        assert_eq!(frame.as_deref(), Some(&b"413"[..]));
        assert!(
            !dropped.load(Ordering::Acquire),
            "kept while the answer is out"
        );
        drop(body);
        assert!(dropped.load(Ordering::Acquire));
    }
}
