//! [`Emulator`]: the server and its bots.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::config::{Limits, Timing};
use crate::error::EmulatorError;
use crate::handle::BotHandle;
use crate::state::{Shared, lock};

/// Configures an [`Emulator`]: bots, listen address, timing, limits.
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    tokens: Vec<String>,
    listen: SocketAddr,
    timing: Timing,
    limits: Limits,
}

impl EmulatorBuilder {
    /// Serves a bot with this token (may be called several times).
    #[must_use]
    pub fn bot(mut self, token: impl Into<String>) -> Self {
        self.tokens.push(token.into());
        self
    }

    /// The address to listen on. Default `127.0.0.1:0`: a free port, see [`Emulator::base_url`].
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Timings (Telegram's by default); see [`Timing::scaled`] for fast tests.
    #[must_use]
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Caps on what is kept per bot.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Binds the address and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<Emulator, EmulatorError> {
        self.timing.validate()?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: self.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: self.listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            bots: Mutex::new(HashMap::new()),
            timing: self.timing,
            limits: self.limits,
            shutdown: tokio::sync::watch::Sender::new(false),
            closed: tokio::sync::watch::Sender::new(false),
        });
        let emulator = Emulator {
            shared: Arc::clone(&shared),
            addr,
            _guard: Arc::new(Guard(Arc::clone(&shared))),
        };
        for token in self.tokens {
            emulator.add_bot(token)?;
        }
        let router = crate::control::router(Arc::clone(&shared));
        let mut shutdown = shared.shutdown.subscribe();
        let served = Arc::clone(&shared);
        tokio::spawn(async move {
            let stopped = async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(%error, "the emulator's server stopped");
            }
            served.closed.send_replace(true);
        });
        tracing::info!(%addr, "telehook emulator listening");
        Ok(emulator)
    }
}

/// Stops every task of the emulator when the last [`Emulator`] clone is dropped.
struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.shutdown.send_replace(true);
    }
}

/// A Bot API stand-in serving on 127.0.0.1. Cheap to clone; it stops when the last clone is
/// dropped (or on [`Emulator::shutdown`]).
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _guard: Arc<Guard>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .field("bots", &lock(&self.shared.bots).len())
            .field("timing", &self.shared.timing)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// A builder: `Emulator::builder().bot(TOKEN).timing(Timing::scaled(0.001)).start().await`.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder {
            tokens: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            timing: Timing::real(),
            limits: Limits::default(),
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a Bot API client, e.g. `http://127.0.0.1:41234` (calls go to
    /// `{base_url}/bot{token}/{method}`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts serving another bot.
    pub fn add_bot(&self, token: impl Into<String>) -> Result<BotHandle, EmulatorError> {
        crate::handle::add_bot_to(&self.shared, token.into())
    }

    /// The emulator's clock.
    pub fn timing(&self) -> Timing {
        self.shared.timing
    }

    /// The test API of the bot with this token, if it is served.
    pub fn bot(&self, token: &str) -> Option<BotHandle> {
        self.shared
            .bot(token)
            .map(|bot| BotHandle::from_parts(Arc::clone(&self.shared), bot))
    }

    /// Stops serving: no new connection is taken, every waiting request is answered — a
    /// getUpdates long poll with its empty result, a `…/wait` (and every `wait_for_*`) with its
    /// timeout answer — and deliveries in flight are cancelled. [`Emulator::closed`] resolves
    /// once every open request has its answer.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Resolves when the emulator has been told to stop (by [`Emulator::shutdown`]).
    pub async fn stopped(&self) {
        let mut shutdown = self.shared.shutdown.subscribe();
        let _ = shutdown.wait_for(|stop| *stop).await;
    }

    /// Resolves when the HTTP server has stopped after [`Emulator::shutdown`]: every open
    /// request was answered and its connection closed. Bound it with a timeout: a client that
    /// never reads its answer keeps its connection open.
    pub async fn closed(&self) {
        let mut closed = self.shared.closed.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }
}
