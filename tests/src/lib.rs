#![doc = include_str!("../README.md")]

use std::net::SocketAddr;

use telehook_core::Webhook;
use tokio::sync::oneshot;

/// The path every adapter serves the webhook at.
pub const PATH: &str = "/telegram";

/// The adapters with an HTTP server of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// `telehook-axum` on `axum::serve`.
    Axum,
    /// `telehook-actix` on `actix_web::HttpServer` (its own thread and actix system).
    Actix,
    /// `telehook-warp` on `warp::serve`.
    Warp,
    /// `telehook-hyper`'s own server.
    Hyper,
}

impl Adapter {
    /// Every adapter.
    pub const ALL: [Adapter; 4] = [Adapter::Axum, Adapter::Actix, Adapter::Warp, Adapter::Hyper];
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    /// The webhook URL.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `webhook` at [`PATH`] through `adapter` on a free loopback port.
pub async fn serve(adapter: Adapter, webhook: Webhook) -> std::io::Result<Server> {
    let (stop, stopped) = oneshot::channel::<()>();
    let addr = match adapter {
        Adapter::Axum => {
            use telehook_axum::RouterExt as _;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let app = axum::Router::new().telegram_webhook(PATH, webhook);
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
            addr
        }
        Adapter::Warp => {
            use warp::Filter as _;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let routes = warp::path("telegram")
                .and(warp::path::end())
                .and(telehook_warp::webhook(webhook));
            tokio::spawn(
                warp::serve(routes)
                    .incoming(listener)
                    .graceful(async move {
                        let _ = stopped.await;
                    })
                    .run(),
            );
            addr
        }
        Adapter::Hyper => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(telehook_hyper::serve(
                listener,
                webhook,
                async move {
                    let _ = stopped.await;
                },
                std::time::Duration::from_secs(1),
            ));
            addr
        }
        Adapter::Actix => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let (ready, started) = oneshot::channel::<std::io::Result<()>>();
            std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = actix_web::HttpServer::new(move || {
                        actix_web::App::new()
                            .service(telehook_actix::webhook_service(PATH, webhook.clone()))
                    })
                    .workers(1)
                    .disable_signals()
                    .listen(listener);
                    let server = match server {
                        Ok(server) => server.run(),
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    let handle = server.handle();
                    actix_web::rt::spawn(async move {
                        let _ = stopped.await;
                        handle.stop(true).await;
                    });
                    let _ = server.await;
                });
            });
            started
                .await
                .map_err(|_| std::io::Error::other("the actix thread ended"))??;
            addr
        }
    };
    Ok(Server {
        addr,
        stop: Some(stop),
    })
}
