//! [`StreamingBody`]: a request body the suite controls chunk by chunk, to play clients that
//! stall or trickle.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::{self, BoxStream, StreamExt as _};

/// A request body that arrives as the case says: part of it and then nothing (a stalled
/// client), or one byte at a time with pauses (a trickling client).
///
/// It is an `http_body::Body` (for hyper, axum and every tower-based client) and a
/// `futures` `Stream` of `Result<Bytes, Infallible>` (for clients that stream a body from one,
/// such as awc or reqwest).
pub struct StreamingBody {
    chunks: BoxStream<'static, Result<Bytes, Infallible>>,
}

impl fmt::Debug for StreamingBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingBody").finish_non_exhaustive()
    }
}

impl StreamingBody {
    /// Sends `first`, then nothing ever again: the body never finishes.
    pub fn stalling(first: Bytes) -> Self {
        let chunks = stream::once(async move { Ok(first) }).chain(stream::pending());
        Self {
            chunks: chunks.boxed(),
        }
    }

    /// Sends `body` one byte at a time, waiting `every` before each byte.
    pub fn trickling(body: Bytes, every: Duration) -> Self {
        let chunks = stream::unfold(body, move |mut rest| async move {
            if rest.is_empty() {
                return None;
            }
            tokio::time::sleep(every).await;
            let byte = rest.split_to(1);
            Some((Ok(byte), rest))
        });
        Self {
            chunks: chunks.boxed(),
        }
    }
}

impl Stream for StreamingBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.chunks.poll_next_unpin(cx)
    }
}

impl http_body::Body for StreamingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.chunks
            .poll_next_unpin(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(http_body::Frame::data)))
    }
}
