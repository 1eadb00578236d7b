//! What a NATS failure looks like inside [`QueueError::Engine`].

use std::time::Duration;

use telehook_queue::QueueError;

/// A NATS JetStream failure, carried by [`QueueError::Engine`] (downcast the source to read it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// A call did not finish within the queue's `op_timeout` (a node down, a leader election,
    /// a partition): nothing is known about its outcome; the operation is safe to repeat.
    #[error("NATS {op} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        op: &'static str,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The client or the server refused or failed a call.
    #[error("NATS {op} failed")]
    Client {
        /// What was being done.
        op: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A setting or a stored message the queue cannot use.
    #[error("NATS queue: {0}")]
    Invalid(String),
}

impl NatsError {
    pub(crate) fn client(
        op: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Client {
            op,
            source: source.into(),
        }
    }
}

impl From<NatsError> for QueueError {
    fn from(e: NatsError) -> Self {
        QueueError::Engine(Box::new(e))
    }
}

/// Runs `fut` under `after`; a timeout or an error becomes a [`NatsError`].
pub(crate) async fn timed<T, E>(
    op: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, NatsError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(NatsError::client(op, e)),
        Err(_) => Err(NatsError::Timeout { op, after }),
    }
}

/// The error and its sources, as one line (to recognise a server's refusal by its text).
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
