//! The HTTP side of the relay, one job per file:
//!
//! - [`state`]: what every request shares, and who may read or write a channel;
//! - [`routes`]: the router, CORS and the rate limit; [`extract`]: extractors that never reject;
//! - [`ingest`]: `POST /{channel}`;
//! - [`poll`]: `GET /{channel}` (long polling);
//! - [`sse`] and [`ws`]: the two streams, both built on [`follow`];
//! - [`serve`]: connections, their timeouts and bound, and the graceful stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::RelayConfig;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

mod extract;
mod follow;
mod ingest;
mod poll;
mod routes;
mod serve;
mod sse;
mod state;
mod ws;

pub use ingest::{SECRET_TOKEN_HEADER, TOTAL_UPDATES_HEADER};
use state::Shared;

/// A relay: a [`Store`] plus the HTTP protocol in front of it.
///
/// Cloning is cheap; clones share state, so [`Relay::shutdown`] on one ends waits on all.
#[derive(Debug, Clone)]
pub struct Relay {
    shared: Arc<Shared>,
}

impl Relay {
    /// A relay serving `store` with `config`.
    pub fn new(store: Arc<dyn Store>, config: RelayConfig) -> Self {
        let limiter = config.rate_limit.map(RateLimiter::new);
        let (shutdown, _) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                store,
                config,
                limiter,
                shutdown,
            }),
        }
    }

    /// The store behind this relay.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// The routes of the relay protocol, ready to mount or serve. Rate limiting by client IP needs
    /// the peer address as a `ConnectInfo<SocketAddr>` request extension ([`Relay::serve`] adds
    /// it; with `axum::serve`, use `into_make_service_with_connect_info::<SocketAddr>()`).
    pub fn router(&self) -> Router {
        routes::router(&self.shared)
    }

    /// Ends every wait: long polls answer at once with no updates, streams close.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Serves the relay on `listener` until `signal` resolves, then shuts down gracefully:
    /// waiting clients get a normal empty answer and in-flight POSTs finish.
    ///
    /// Connections are bounded ([`RelayConfig::max_connections`]), must send each request's
    /// headers within [`RelayConfig::header_read_timeout`] (which also closes idle keep-alive
    /// connections), and POST bodies must arrive within [`RelayConfig::body_read_timeout`].
    ///
    /// A configuration outside its allowed ranges ([`RelayConfig::validate`]) is refused with
    /// an [`std::io::ErrorKind::InvalidInput`] error before any connection is accepted.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.shared
            .config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let sweeper = {
            let weak = Arc::downgrade(&self.shared);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    let Some(shared) = weak.upgrade() else { break };
                    shared.store.notifier().sweep();
                    if let Some(limiter) = &shared.limiter {
                        limiter.sweep();
                    }
                }
            })
        };
        let config = &self.shared.config;
        let result = serve::serve_connections(
            listener,
            self.router(),
            config.header_read_timeout,
            config.max_connections,
            signal,
            || {
                tracing::info!("shutting down: answering waiting clients");
                self.shutdown();
            },
        )
        .await;
        sweeper.abort();
        result
    }
}
