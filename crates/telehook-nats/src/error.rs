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
    /// A client error; a server without JetStream gets a source saying what to do about it.
    pub(crate) fn client(
        op: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        let source = source.into();
        let source = if jetstream_missing(&chain(source.as_ref())) {
            Box::new(JetStreamDisabled(source))
        } else {
            source
        };
        Self::Client { op, source }
    }
}

/// The server answered without JetStream: the queue's streams need it.
#[derive(Debug, thiserror::Error)]
#[error(
    "JetStream is not enabled on the server: start nats-server with -js \
     (and -sd <dir> for where it stores the streams)"
)]
struct JetStreamDisabled(#[source] Box<dyn std::error::Error + Send + Sync>);

/// Whether an error's text is the client's or the server's "no JetStream here".
fn jetstream_missing(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("jetstream unavailable")
        || text.contains("jetstream not enabled")
        || text.contains("jetstreamunavailable")
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use telehook_queue::QueueError;

    use super::chain;

    /// A nats-server started WITHOUT `-js` on a free loopback port, killed on drop.
    struct PlainServer(std::process::Child, u16);

    impl PlainServer {
        fn start() -> Self {
            let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| {
                if std::path::Path::new("/usr/sbin/nats-server").exists() {
                    "/usr/sbin/nats-server".to_owned()
                } else {
                    "nats-server".to_owned()
                }
            });
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let child = std::process::Command::new(binary)
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("nats-server (set NATS_SERVER)");
            // Ready once it accepts connections (bounded: 10 s).
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Self(child, port)
        }
    }

    impl Drop for PlainServer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_without_jetstream_says_to_start_it_with_js() {
        let server = PlainServer::start();
        let refused = crate::NatsQueue::builder([format!("nats://127.0.0.1:{}", server.1)])
            .op_timeout(Duration::from_secs(10))
            .connect()
            .await;
        let Err(error @ QueueError::Engine(_)) = refused else {
            panic!("connected to a server without JetStream: {refused:?}");
        };
        let text = chain(&error);
        assert!(
            text.contains("JetStream is not enabled on the server: start nats-server with -js"),
            "{text}"
        );
    }
}
