//! Reading the body: at most `max_body_bytes` (`http_body_util::Limited`) within
//! `body_read_timeout`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::error::Rejection;
use super::head::too_large;

/// Reads the whole body, refusing it if it is larger than `limit` bytes or still arriving
/// after `timeout`. A single-chunk body is not copied.
pub(super) async fn read<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: fmt::Display,
{
    // A body that says it is too large (a known length) is refused without reading it.
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large(limit));
    }
    // `Limited` needs errors that convert into a boxed error: keep the transport's message.
    let body = Limited::new(body.map_err(|e| e.to_string()), limit);
    match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large(limit)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "webhook request refused: the body could not be read");
            Err(Rejection::BodyUnreadable {
                message: e.to_string(),
            })
        }
        Err(_) => {
            tracing::warn!(
                limit_ms = timeout.as_millis() as u64,
                "webhook request refused: the body did not arrive within body_read_timeout"
            );
            Err(Rejection::BodyTimeout { limit: timeout })
        }
    }
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
