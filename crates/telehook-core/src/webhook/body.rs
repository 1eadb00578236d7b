//! Reading the body: at most `max_body_bytes` (`http_body_util::Limited`) within
//! `body_read_timeout`.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::error::Rejection;
use super::head::too_large;

/// Reads the whole body, refusing it if it is larger than `limit` bytes or still arriving
/// after `timeout`. A single-chunk body is not copied.
pub(super) async fn read<B>(
    body: B,
    limit: usize,
    timeout: Duration,
    rt: &crate::rt::Rt,
) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: fmt::Display,
{
    // A body that says it is too large (a known length) is refused without reading it.
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large(limit));
    }
    // `Limited` needs errors that convert into a boxed error: keep the transport's message.
    let mut reading = pin!(collect(Limited::new(
        body.map_err(|e| e.to_string()),
        limit
    )));
    // A body already in memory (most adapters, every test) is read on the first poll: it
    // needs no timer.
    let first = std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
    let result = match first {
        Poll::Ready(result) => result,
        Poll::Pending => match rt.timeout(timeout, reading).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    limit_ms = timeout.as_millis() as u64,
                    "webhook request refused: the body did not arrive within body_read_timeout"
                );
                return Err(Rejection::BodyTimeout { limit: timeout });
            }
        },
    };
    match result {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large(limit)),
        Err(e) => {
            tracing::warn!(error = %e, "webhook request refused: the body could not be read");
            Err(Rejection::BodyUnreadable {
                message: e.to_string(),
            })
        }
    }
}

/// The body's data frames in one buffer; the first chunk is kept as it is while it is the
/// only one (`Collected::to_bytes` would queue every chunk first).
async fn collect<B: Body>(body: B) -> Result<Bytes, B::Error> {
    let mut body = pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    while let Some(frame) = body.as_mut().frame().await {
        let Ok(mut data) = frame?.into_data() else {
            continue;
        };
        let chunk = data.copy_to_bytes(data.remaining());
        match (&first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(head), None) => {
                let mut buf = BytesMut::with_capacity(head.len() + chunk.len());
                buf.extend_from_slice(head);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    Ok(match rest {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use http_body_util::{Full, StreamBody};

    fn chunks(parts: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = String> {
        let frames: Vec<Result<http_body::Frame<Bytes>, String>> = parts
            .iter()
            .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    const LONG: Duration = Duration::from_secs(60);

    /// `super::read` on tokio's timer (a custom runtime's is tested in `crate::rt`).
    async fn read<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, Rejection>
    where
        B: Body,
        B::Error: fmt::Display,
    {
        super::read(body, limit, timeout, &crate::rt::Rt::Tokio).await
    }

    #[tokio::test]
    async fn chunks_are_joined_up_to_the_limit() {
        let body = read(chunks(&[b"ab", b"cd", b"e"]), 5, LONG).await.unwrap();
        assert_eq!(body, "abcde");
    }

    #[tokio::test]
    async fn one_byte_over_the_limit_is_413_even_without_a_length() {
        let err = read(chunks(&[b"abc", b"def"]), 5, LONG).await.unwrap_err();
        assert_eq!(err, Rejection::PayloadTooLarge { limit: 5 });
    }

    #[tokio::test]
    async fn a_known_length_over_the_limit_is_refused_before_reading() {
        let err = read(Full::new(Bytes::from_static(b"abcdef")), 5, LONG)
            .await
            .unwrap_err();
        assert_eq!(err.status(), 413);
    }

    #[tokio::test]
    async fn a_single_chunk_is_not_copied() {
        let data = Bytes::from_static(b"{\"update_id\":1}");
        let body = read(Full::new(data.clone()), 1024, LONG).await.unwrap();
        assert_eq!(body.as_ptr(), data.as_ptr());
    }

    #[tokio::test]
    async fn a_transport_error_is_400_with_its_message() {
        let frames: Vec<Result<http_body::Frame<Bytes>, String>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"{"))),
            Err("connection reset".into()),
        ];
        let err = read(
            StreamBody::new(futures_util::stream::iter(frames)),
            64,
            LONG,
        )
        .await
        .unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("connection reset"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_is_408() {
        let stalled = StreamBody::new(
            futures_util::stream::iter([Ok::<_, String>(http_body::Frame::data(
                Bytes::from_static(b"{\"upd"),
            ))])
            .chain(futures_util::stream::pending()),
        );
        let limit = Duration::from_secs(10);
        let err = read(stalled, 1024, limit).await.unwrap_err();
        assert_eq!(err, Rejection::BodyTimeout { limit });
        assert_eq!(err.status(), 408);
    }
}
