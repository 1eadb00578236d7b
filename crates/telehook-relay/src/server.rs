//! The HTTP side: routes, long polling, Server-Sent Events, WebSocket, health, CORS and rate limits.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::channel::ChannelName;
use crate::config::RelayConfig;
use crate::error::RelayError;
use crate::follow::{Followed, follow};
use crate::ratelimit::RateLimiter;
use crate::store::{Page, Store, StoredUpdate};

/// Header carrying the channel's count after a POST.
pub const TOTAL_UPDATES_HEADER: &str = "x-total-updates";
/// Header Telegram sends with the webhook's `secret_token`; accepted as a write token.
pub const SECRET_TOKEN_HEADER: &str = "x-telegram-bot-api-secret-token";

/// State shared by all requests of one relay.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: RelayConfig,
    limiter: Option<RateLimiter>,
    pub(crate) shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Store")
    }
}

/// A relay: a [`Store`] plus the HTTP protocol in front of it.
///
/// Cloning is cheap; clones share state, so [`Relay::shutdown`] on one ends waits on all.
#[derive(Debug, Clone)]
pub struct Relay {
    shared: Arc<Shared>,
}

#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
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
    /// the router to be served with `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/ws", get(ws_upgrade))
            .route("/{channel}", get(get_updates).post(push_update))
            .route("/{channel}/getUpdates", get(get_updates))
            .route("/{channel}/pushUpdates", axum::routing::post(push_update))
            .fallback(|| async { RelayError::NotFound })
            .method_not_allowed_fallback(|| async { RelayError::MethodNotAllowed })
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                guard,
            ))
            .with_state(self.shared.clone())
    }

    /// Ends every wait: long polls answer at once with no updates, streams close.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Serves the relay on `listener` until `signal` resolves, then shuts down gracefully:
    /// waiting clients get a normal empty answer and in-flight POSTs finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let sweeper = {
            let weak = Arc::downgrade(&self.shared);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    let Some(shared) = weak.upgrade() else { break };
                    shared.store.notifier().sweep();
                }
            })
        };
        let relay = self.clone();
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                signal.await;
                tracing::info!("shutting down: answering waiting clients");
                relay.shutdown();
            })
            .await;
        sweeper.abort();
        result
    }
}

impl Shared {
    fn authorize(
        &self,
        channel: &ChannelName,
        access: Access,
        presented: Option<&str>,
    ) -> Result<(), RelayError> {
        let config = &self.config.access;
        let Some(tokens) = config.channels.get(channel.as_str()) else {
            return if config.allow_unlisted {
                Ok(())
            } else {
                Err(RelayError::Forbidden)
            };
        };
        let (expected, kind) = match access {
            Access::Read => (&tokens.read_token, "read"),
            Access::Write => (&tokens.write_token, "write"),
        };
        match (expected, presented) {
            (None, _) => Ok(()),
            (Some(expected), Some(given))
                if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) =>
            {
                Ok(())
            }
            _ => Err(RelayError::Unauthorized { kind }),
        }
    }

    fn client_ip(&self, req: &Request) -> Option<IpAddr> {
        if self.config.trust_forwarded_for
            && let Some(ip) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Rate limits by client IP and adds CORS headers; answers CORS preflights.
async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let cors = shared.config.cors_origin.clone();
    if req.method() == Method::OPTIONS && cors.is_some() {
        let mut response = StatusCode::NO_CONTENT.into_response();
        add_cors(&mut response, cors.as_deref(), true);
        return response;
    }
    if let Some(limiter) = &shared.limiter
        && req.uri().path() != "/healthz"
        && let Some(ip) = shared.client_ip(&req)
        && let Err(retry_after) = limiter.check(ip)
    {
        tracing::debug!(%ip, "rate limited");
        let mut response = RelayError::RateLimited { retry_after }.into_response();
        add_cors(&mut response, cors.as_deref(), false);
        return response;
    }
    let mut response = next.run(req).await;
    add_cors(&mut response, cors.as_deref(), false);
    response
}

fn add_cors(response: &mut Response, origin: Option<&str>, preflight: bool) {
    let Some(origin) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else {
        return;
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-total-updates, retry-after"),
    );
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "content-type, authorization, last-event-id, x-telegram-bot-api-secret-token",
            ),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.store.health().await {
        Ok(()) => json_response(StatusCode::OK, r#"{"ok":true}"#.to_owned()),
        Err(e) => RelayError::Store(e).into_response(),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn query_pairs(query: QueryPairs) -> Result<Vec<(String, String)>, RelayError> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|e| RelayError::BadParameter {
            name: "query",
            reason: e.body_text(),
        })
}

/// `POST /{channel}` and `POST /{channel}/pushUpdates`.
async fn push_update(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    query: QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RelayError> {
    let channel = ChannelName::parse(&channel)?;
    let token = headers
        .get(SECRET_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(&headers));
    shared.authorize(&channel, Access::Write, token)?;
    let pairs = query_pairs(query)?;
    let limit = shared.config.max_body_bytes;
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64)
    {
        return Err(RelayError::BodyTooLarge { limit });
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return RelayError::BodyTooLarge { limit };
            }
            source = err.source();
        }
        RelayError::BodyRead(e.to_string())
    })?;
    let json = update_json(&bytes, pairs)?;
    let seq = shared.store.append(channel.clone(), json).await?;
    tracing::debug!(%channel, seq, "update stored");
    let mut response = "OK".into_response();
    response
        .headers_mut()
        .insert(TOTAL_UPDATES_HEADER, HeaderValue::from(seq));
    Ok(response)
}

/// Validates the body as JSON and merges the query parameters into it; returns compact JSON.
pub(crate) fn update_json(body: &[u8], pairs: Vec<(String, String)>) -> Result<String, RelayError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| RelayError::BadJson(e.to_string()))?;
    if pairs.is_empty() {
        let text = std::str::from_utf8(body)
            .map_err(|e| RelayError::BadJson(e.to_string()))?
            .trim();
        if !text.contains(['\n', '\r']) {
            return Ok(text.to_owned());
        }
        return Ok(value.to_string());
    }
    let object = value.as_object_mut().ok_or(RelayError::NotAnObject)?;
    for (key, val) in pairs {
        object.insert(key, serde_json::Value::String(val));
    }
    Ok(value.to_string())
}

struct PollParams {
    ts: u64,
    sleep: Duration,
    token: Option<String>,
}

fn poll_params(
    pairs: Vec<(String, String)>,
    max_sleep: Duration,
) -> Result<PollParams, RelayError> {
    let mut params = PollParams {
        ts: 0,
        sleep: Duration::ZERO,
        token: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "ts" => {
                params.ts = value.trim().parse().map_err(|_| RelayError::BadParameter {
                    name: "ts",
                    reason: format!("expected a non-negative integer, got {value:?}"),
                })?;
            }
            "sleep" => {
                let secs: f64 = value.trim().parse().unwrap_or(f64::NAN);
                if !(secs.is_finite() && secs >= 0.0 && secs <= max_sleep.as_secs_f64()) {
                    return Err(RelayError::BadParameter {
                        name: "sleep",
                        reason: format!(
                            "expected seconds from 0 to {}, got {value:?}",
                            max_sleep.as_secs()
                        ),
                    });
                }
                params.sleep = Duration::from_secs_f64(secs);
            }
            "token" => params.token = Some(value),
            _ => {}
        }
    }
    Ok(params)
}

/// The long-poll answer `{"ok":true,"ts":T,"missed":K,"updates":[…]}` (`missed` only when K > 0).
pub(crate) fn poll_body(ts: u64, missed: u64, updates: &[StoredUpdate]) -> String {
    let mut body =
        String::with_capacity(64 + updates.iter().map(|u| u.json.len() + 1).sum::<usize>());
    body.push_str(r#"{"ok":true,"ts":"#);
    body.push_str(&ts.to_string());
    if missed > 0 {
        body.push_str(r#","missed":"#);
        body.push_str(&missed.to_string());
    }
    body.push_str(r#","updates":["#);
    for (i, update) in updates.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&update.json);
    }
    body.push_str("]}");
    body
}

fn page_body(ts: u64, page: &Page) -> String {
    poll_body(page.next_ts(), page.missed(ts), &page.updates)
}

/// `GET /{channel}` and `GET /{channel}/getUpdates`: long polling, or SSE when asked for.
async fn get_updates(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    query: QueryPairs,
    headers: HeaderMap,
) -> Result<Response, RelayError> {
    let channel = ChannelName::parse(&channel)?;
    let params = poll_params(query_pairs(query)?, shared.config.max_sleep)?;
    let token = bearer(&headers).or(params.token.as_deref());
    shared.authorize(&channel, Access::Read, token)?;
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_sse {
        let last_event_id = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| RelayError::BadParameter {
                        name: "Last-Event-ID",
                        reason: format!("expected a non-negative integer, got {v:?}"),
                    })
            })
            .transpose()?;
        return sse(shared, channel, last_event_id.unwrap_or(params.ts));
    }
    long_poll(&shared, &channel, params.ts, params.sleep).await
}

async fn long_poll(
    shared: &Shared,
    channel: &ChannelName,
    ts: u64,
    sleep: Duration,
) -> Result<Response, RelayError> {
    let limit = shared.config.max_updates_per_response.max(1);
    // Subscribe before reading, so a commit between the read and the wait still wakes us.
    let mut wake = shared.store.notifier().subscribe(channel)?;
    let mut shutdown = shared.shutdown.subscribe();
    let deadline = tokio::time::Instant::now() + sleep;
    // A client that is up to date (the common case: it comes back with the `ts` it was just
    // given) waits without a storage read when the notifier knows the exact count.
    let known = wake.borrow_and_update().page_after(ts, limit);
    let mut page = match known {
        Some(page) => page,
        None => shared.store.read(channel, ts, limit).await?,
    };
    loop {
        if ts > page.total || !page.updates.is_empty() || page.missed(ts) > 0 {
            break;
        }
        if *shutdown.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.changed() => break,
        }
        let fast = wake.borrow_and_update().page_after(ts, limit);
        page = match fast {
            Some(page) => page,
            None => shared.store.read(channel, ts, limit).await?,
        };
    }
    drop(wake);
    let body = if ts > page.total {
        poll_body(page.total, 0, &[])
    } else {
        page_body(ts, &page)
    };
    Ok(json_response(StatusCode::OK, body))
}

fn sse(shared: Arc<Shared>, channel: ChannelName, ts: u64) -> Result<Response, RelayError> {
    let wake = shared.store.notifier().subscribe(&channel)?;
    let (tx, rx) = mpsc::channel(shared.config.ws_send_buffer.max(1));
    tokio::spawn(follow(shared, channel, ts, wake, tx, |item| {
        Ok::<_, Infallible>(match item {
            Followed::Update(update) => Event::default()
                .id(update.seq.to_string())
                .data(&*update.json),
            Followed::Missed { missed, ts } => Event::default()
                .event("missed")
                .id(ts.to_string())
                .data(format!(r#"{{"missed":{missed},"ts":{ts}}}"#)),
            Followed::Reset { ts } => Event::default()
                .event("reset")
                .id(ts.to_string())
                .data(format!(r#"{{"ts":{ts}}}"#)),
        })
    }));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A command sent by a WebSocket client.
#[derive(Debug, Deserialize)]
struct WsCommand {
    command: String,
    channel: Option<String>,
    #[serde(default)]
    ts: u64,
    token: Option<String>,
}

async fn ws_upgrade(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let max = shared.config.ws_max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| ws_session(shared, socket))
}

async fn ws_session(shared: Arc<Shared>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(shared.config.ws_send_buffer.max(1));
    let mut subscriptions: HashMap<ChannelName, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow_and_update() {
            let _ = sink.send(Message::Close(None)).await;
            break;
        }
        tokio::select! {
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                let reply = ws_command(&shared, &text, &tx, &mut subscriptions);
                let reply = reply.unwrap_or_else(|e| e.to_json());
                if sink.send(Message::Text(reply.into())).await.is_err() {
                    break;
                }
            }
            Some(out) = rx.recv() => {
                if sink.send(Message::Text(out.into())).await.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => {}
        }
    }
    for (_, task) in subscriptions {
        task.abort();
    }
}

fn ws_command(
    shared: &Arc<Shared>,
    text: &str,
    tx: &mpsc::Sender<String>,
    subscriptions: &mut HashMap<ChannelName, tokio::task::JoinHandle<()>>,
) -> Result<String, RelayError> {
    let command: WsCommand =
        serde_json::from_str(text).map_err(|e| RelayError::BadJson(e.to_string()))?;
    let channel = command.channel.as_deref().ok_or(RelayError::BadParameter {
        name: "channel",
        reason: "missing".to_owned(),
    })?;
    let channel = ChannelName::parse(channel)?;
    match command.command.as_str() {
        "subscribe" => {
            shared.authorize(&channel, Access::Read, command.token.as_deref())?;
            if !subscriptions.contains_key(&channel)
                && subscriptions.len() >= shared.config.ws_max_subscriptions
            {
                return Err(RelayError::TooManySubscriptions {
                    limit: shared.config.ws_max_subscriptions,
                });
            }
            let wake = shared.store.notifier().subscribe(&channel)?;
            let name = channel.to_string();
            let task = tokio::spawn(follow(
                shared.clone(),
                channel.clone(),
                command.ts,
                wake,
                tx.clone(),
                move |item| {
                    let name = serde_json::Value::String(name.clone());
                    match item {
                        Followed::Update(u) => {
                            format!(r#"{{"channel":{name},"ts":{},"update":{}}}"#, u.seq, u.json)
                        }
                        Followed::Missed { missed, ts } => {
                            format!(r#"{{"channel":{name},"ts":{ts},"missed":{missed}}}"#)
                        }
                        Followed::Reset { ts } => {
                            format!(r#"{{"channel":{name},"ts":{ts},"reset":true}}"#)
                        }
                    }
                },
            ));
            if let Some(old) = subscriptions.insert(channel.clone(), task) {
                old.abort();
            }
            Ok(serde_json::json!({"ok": true, "command": "subscribe", "channel": channel.as_str(), "ts": command.ts})
                .to_string())
        }
        "unsubscribe" => {
            if let Some(task) = subscriptions.remove(&channel) {
                task.abort();
            }
            Ok(serde_json::json!({"ok": true, "command": "unsubscribe", "channel": channel.as_str()}).to_string())
        }
        other => Err(RelayError::BadParameter {
            name: "command",
            reason: format!("unknown command {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_merged_into_the_object() {
        let json = update_json(br#"{"a":1}"#, vec![("b".into(), "x y".into())]).unwrap();
        assert_eq!(json, r#"{"a":1,"b":"x y"}"#);
    }

    #[test]
    fn compact_bodies_are_stored_as_sent() {
        assert_eq!(
            update_json(br#" {"z":1,"a":2} "#, vec![]).unwrap(),
            r#"{"z":1,"a":2}"#
        );
    }

    #[test]
    fn parameters_cannot_merge_into_a_non_object() {
        assert!(matches!(
            update_json(b"[1]", vec![("a".into(), "b".into())]),
            Err(RelayError::NotAnObject)
        ));
    }

    #[test]
    fn sleep_must_be_within_bounds() {
        let max = Duration::from_secs(60);
        assert!(poll_params(vec![("sleep".into(), "61".into())], max).is_err());
        assert!(poll_params(vec![("sleep".into(), "-1".into())], max).is_err());
        assert!(poll_params(vec![("ts".into(), "x".into())], max).is_err());
        assert_eq!(
            poll_params(vec![("sleep".into(), "0.5".into())], max)
                .unwrap()
                .sleep,
            Duration::from_millis(500)
        );
    }
}
