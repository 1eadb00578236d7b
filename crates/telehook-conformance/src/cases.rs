//! Every case of the webhook contract. Each case builds its own [`Webhook`], mounts it through
//! the harness, sends requests and checks status, every header, body, the handler's calls
//! and the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use http::{Method, Request, Response};
use serde_json::{Value, json};
use telehook_core::{
    Context, ErrorPolicy, ForwardedHeader, HandlerError, OnTimeout, SourceAllowlist, TimeoutAction,
    Update, Webhook, WebhookBuilder, WebhookReplyError,
};
use tracing::Level;

use crate::{
    BOTS_BY_SECRET_PATH, BOTS_PATH, Bots, Client, Harness, PATH, SECRET, StreamingBody, capture,
    fixture,
};

type Case<H> = fn(&H) -> LocalBoxFuture<'_, Result<(), String>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case, by name.
        pub(crate) fn all<H: Harness>() -> Vec<(&'static str, Case<H>)> {
            vec![$((stringify!($name), (|h: &H| -> LocalBoxFuture<'_, Result<(), String>> { Box::pin($name(h)) }) as Case<H>)),*]
        }
    };
}

cases![
    non_post_is_405_with_allow_and_no_handler_call,
    method_is_checked_before_secret_and_body,
    missing_secret_is_401,
    wrong_secret_is_401_and_body_is_not_read,
    secret_header_is_ignored_when_no_secret_is_configured,
    body_over_the_limit_is_413,
    body_at_the_limit_is_accepted,
    stalled_or_trickling_body_is_408,
    bad_bodies_are_400_with_a_reason_and_a_warning,
    every_fixture_kind_reaches_the_handler_intact,
    handled_update_without_reply_is_200_with_empty_body,
    webhook_reply_is_the_response_body,
    second_webhook_reply_and_ignored_methods_are_refused,
    failing_handler_is_retried_then_given_up,
    acknowledge_policy_answers_200_on_failure,
    retry_policy_never_gives_up,
    panicking_handler_counts_as_a_failure,
    timeout_throw_answers_503_and_the_handler_finishes,
    timeout_return_answers_200_and_late_reply_is_refused,
    timeout_return_sends_a_reply_set_before_the_timeout,
    custom_timeout_callback_decides,
    redelivery_while_in_flight_waits_and_shares_the_outcome,
    redelivery_after_success_is_answered_without_running_the_handler,
    redelivery_after_a_throw_timeout_gets_the_late_reply,
    reused_update_id_with_another_body_is_a_new_update,
    different_updates_run_concurrently,
    source_allowlist_refuses_strangers_with_403_before_secret_and_body,
    source_allowlist_admits_listed_addresses_and_forwarding_from_trusted_proxies,
    bots_by_path_each_update_reaches_only_its_bot_and_unknown_names_get_404,
    bots_by_secret_token_each_update_reaches_only_its_bot_and_unknown_secrets_get_401,
];

/// Cases are generic over the harness; `case_names` needs some type to list them.
pub(crate) struct NoHarness;

/// A client that is never built.
pub(crate) struct NoClient;

impl Client for NoClient {
    async fn send(&self, _: Request<Bytes>) -> Response<Bytes> {
        unreachable!("NoHarness only lists case names")
    }
}

impl Harness for NoHarness {
    type Client = NoClient;
    async fn serve(&self, _: Webhook) -> NoClient {
        NoClient
    }
}

// --- helpers -----------------------------------------------------------------------------

static SKIPPED: Mutex<Option<&'static str>> = Mutex::new(None);

/// Notes that the running case could not be played on this harness: its client cannot stream
/// a request body.
fn skip() -> Result<(), String> {
    skip_because("the harness's Client::send_streaming is not implemented")
}

/// Notes that the running case could not be played on this harness, and why.
fn skip_because(reason: &'static str) -> Result<(), String> {
    *SKIPPED.lock().expect("lock") = Some(reason);
    Ok(())
}

/// Why the case that just ran was skipped, if it was; resets the note.
pub(crate) fn take_skipped() -> Option<&'static str> {
    SKIPPED.lock().expect("lock").take()
}

const GOOD_FIXTURES: &[&str] = &[
    "message_text_private.json",
    "message_command_group.json",
    "message_unicode.json",
    "message_photo.json",
    "edited_message.json",
    "callback_query.json",
    "inline_query.json",
    "channel_post.json",
    "my_chat_member.json",
    "chat_join_request.json",
    "poll.json",
    "pre_checkout_query.json",
    "unknown_future_kind.json",
];

const BAD_FIXTURES: &[&str] = &[
    "bad_not_json.txt",
    "bad_truncated.json",
    "bad_missing_update_id.json",
    "bad_update_id_string.json",
    "bad_array_not_object.json",
];

/// Headers a framework or transport may add to any response.
const TRANSPORT_HEADERS: &[&str] = &[
    "content-length",
    "date",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "server",
];

/// A fresh `update_id` per use, so that log lines of different cases never mix.
fn fresh_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = 900_000_000 + u64::from(std::process::id() % 1000) * 100_000;
    base + NEXT.fetch_add(1, Ordering::Relaxed)
}

fn text_update(update_id: u64, chat_id: i64, text: &str) -> Bytes {
    let body = json!({
        "update_id": update_id,
        "message": {
            "message_id": update_id % 100_000,
            "date": 1_732_320_000,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": false, "first_name": "Case"},
            "text": text
        }
    });
    Bytes::from(serde_json::to_vec(&body).expect("json"))
}

fn request(method: Method, body: Bytes, secret: Option<&str>) -> Request<Bytes> {
    let mut builder = Request::builder()
        .method(method)
        .uri(PATH)
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        builder = builder.header("x-telegram-bot-api-secret-token", secret);
    }
    builder.body(body).expect("request")
}

fn post(body: Bytes) -> Request<Bytes> {
    request(Method::POST, body, Some(SECRET))
}

fn builder() -> WebhookBuilder {
    Webhook::builder().secret_token(SECRET)
}

/// What the handler saw: every call's `update_id` and JSON, and what it noted.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<(u64, Bytes)>>>,
    notes: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn record(&self, update: &Update) {
        self.calls
            .lock()
            .expect("lock")
            .push((update.update_id(), update.raw().clone()));
    }
    fn note(&self, note: impl Into<String>) {
        self.notes.lock().expect("lock").push(note.into());
    }
    fn calls(&self) -> Vec<(u64, Bytes)> {
        self.calls.lock().expect("lock").clone()
    }
    fn count(&self) -> usize {
        self.calls.lock().expect("lock").len()
    }
    fn count_of(&self, update_id: u64) -> usize {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|(id, _)| *id == update_id)
            .count()
    }
    fn notes(&self) -> Vec<String> {
        self.notes.lock().expect("lock").clone()
    }
    /// Waits (up to 5 s) until `n` notes exist.
    async fn wait_notes(&self, n: usize) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let notes = self.notes();
            if notes.len() >= n {
                return Ok(notes);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "expected {n} handler notes within 5 s, got {notes:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A handler that records each call and succeeds.
fn recording(
    rec: &Recorder,
) -> impl Fn(Update, Context) -> futures_util::future::Ready<Result<(), HandlerError>>
+ Send
+ Sync
+ 'static {
    let rec = rec.clone();
    move |update: Update, _ctx: Context| {
        rec.record(&update);
        futures_util::future::ready(Ok(()))
    }
}

fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}

fn check_status(response: &Response<Bytes>, expected: u16) -> Result<(), String> {
    ensure(response.status().as_u16() == expected, || {
        format!(
            "expected status {expected}, got {} with body {:?}",
            response.status(),
            String::from_utf8_lossy(response.body())
        )
    })
}

/// Every expected header has its value, and nothing else is there but transport headers.
fn check_headers(response: &Response<Bytes>, expected: &[(&str, &str)]) -> Result<(), String> {
    for (name, value) in expected {
        let got = response
            .headers()
            .get(*name)
            .map(|v| v.to_str().unwrap_or("<non-ascii>"));
        ensure(got == Some(*value), || {
            format!("header {name}: expected {value:?}, got {got:?}")
        })?;
    }
    for name in response.headers().keys() {
        let known = expected
            .iter()
            .any(|(n, _)| name.as_str().eq_ignore_ascii_case(n))
            || TRANSPORT_HEADERS.contains(&name.as_str());
        ensure(known, || {
            format!("unexpected header {name}: {:?}", response.headers()[name])
        })?;
    }
    if let Some(length) = response.headers().get("content-length") {
        let length = length.to_str().ok().and_then(|l| l.parse::<usize>().ok());
        ensure(length == Some(response.body().len()), || {
            format!(
                "content-length {length:?} does not match the body's {} bytes",
                response.body().len()
            )
        })?;
    }
    Ok(())
}

/// 200, no headers but transport ones, empty body.
fn check_empty_ok(response: &Response<Bytes>) -> Result<(), String> {
    check_status(response, 200)?;
    check_headers(response, &[])?;
    ensure(response.body().is_empty(), || {
        format!("expected an empty body, got {:?}", response.body())
    })
}

/// A plain-text refusal with `status`, whose reason contains `reason`.
fn check_text(response: &Response<Bytes>, status: u16, reason: &str) -> Result<(), String> {
    check_status(response, status)?;
    let body = String::from_utf8_lossy(response.body());
    ensure(body.to_lowercase().contains(&reason.to_lowercase()), || {
        format!("expected the body to mention {reason:?}, got {body:?}")
    })
}

fn check_plain_text_headers(
    response: &Response<Bytes>,
    extra: &[(&str, &str)],
) -> Result<(), String> {
    let mut expected = vec![("content-type", "text/plain; charset=utf-8")];
    expected.extend_from_slice(extra);
    check_headers(response, &expected)
}

fn check_json_reply(response: &Response<Bytes>, expected: &Value) -> Result<(), String> {
    check_status(response, 200)?;
    check_headers(response, &[("content-type", "application/json")])?;
    let body: Value = serde_json::from_slice(response.body())
        .map_err(|e| format!("reply body is not JSON ({e}): {:?}", response.body()))?;
    ensure(&body == expected, || {
        format!("expected reply {expected}, got {body}")
    })
}

fn check_logged(update_id: u64, level: Level, needle: &str) -> Result<(), String> {
    if !capture::install() {
        return Err(
            "log capture could not be installed: another global tracing subscriber exists".into(),
        );
    }
    let events = capture::for_update(update_id);
    ensure(
        events
            .iter()
            .any(|e| e.level == level && e.message.contains(needle)),
        || {
            format!(
                "expected a {level} event mentioning {needle:?} for update {update_id}, got {events:?}"
            )
        },
    )
}

async fn wait_logged(update_id: u64, level: Level, needle: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let result = check_logged(update_id, level, needle);
        if result.is_ok() || Instant::now() > deadline {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn reply_params(chat_id: i64, text: &str) -> Value {
    json!({"chat_id": chat_id, "text": text})
}

fn with_method(params: &Value, method: &str) -> Value {
    let mut value = params.clone();
    value["method"] = json!(method);
    value
}

// --- 1. method --------------------------------------------------------------------------

async fn non_post_is_405_with_allow_and_no_handler_call<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let client = h
        .serve(
            builder()
                .build(recording(&rec))
                .map_err(|e| e.to_string())?,
        )
        .await;
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let response = client
            .send(request(
                method.clone(),
                text_update(fresh_id(), 1, "x"),
                Some(SECRET),
            ))
            .await;
        check_status(&response, 405).map_err(|e| format!("{method}: {e}"))?;
        check_plain_text_headers(&response, &[("allow", "POST")])
            .map_err(|e| format!("{method}: {e}"))?;
    }
    ensure(rec.count() == 0, || {
        format!("the handler was called {} times", rec.count())
    })
}

async fn method_is_checked_before_secret_and_body<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder()
        .max_body_bytes(64)
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let huge = Bytes::from(vec![b'x'; 4096]);
    let response = client.send(request(Method::GET, huge, Some("wrong"))).await;
    check_status(&response, 405)?;
    check_plain_text_headers(&response, &[("allow", "POST")])?;
    ensure(rec.count() == 0, || "the handler was called".into())
}

// --- 2. secret --------------------------------------------------------------------------

async fn missing_secret_is_401<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let client = h
        .serve(
            builder()
                .build(recording(&rec))
                .map_err(|e| e.to_string())?,
        )
        .await;
    let response = client
        .send(request(Method::POST, text_update(fresh_id(), 1, "x"), None))
        .await;
    check_text(&response, 401, "unauthorized")?;
    check_plain_text_headers(&response, &[])?;
    ensure(rec.count() == 0, || "the handler was called".into())
}

async fn wrong_secret_is_401_and_body_is_not_read<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder()
        .max_body_bytes(64)
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let almost = &SECRET[..SECRET.len() - 1];
    for secret in ["wrong", almost, "S3CR3T_t0KEN-FOR-TESTS", ""] {
        let response = client
            .send(request(
                Method::POST,
                text_update(fresh_id(), 1, "x"),
                Some(secret),
            ))
            .await;
        check_text(&response, 401, "unauthorized")
            .map_err(|e| format!("secret {secret:?}: {e}"))?;
        check_plain_text_headers(&response, &[])?;
    }
    // A body over the limit with a wrong secret is refused for the secret: it is never read.
    let huge = Bytes::from(vec![b'{'; 4096]);
    let response = client
        .send(request(Method::POST, huge, Some("wrong")))
        .await;
    check_status(&response, 401)?;
    ensure(rec.count() == 0, || "the handler was called".into())
}

async fn secret_header_is_ignored_when_no_secret_is_configured<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = Webhook::builder()
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let response = client
        .send(request(Method::POST, text_update(fresh_id(), 1, "a"), None))
        .await;
    check_empty_ok(&response)?;
    let response = client
        .send(request(
            Method::POST,
            text_update(fresh_id(), 1, "b"),
            Some("anything"),
        ))
        .await;
    check_empty_ok(&response)?;
    ensure(rec.count() == 2, || {
        format!("expected 2 handler calls, got {}", rec.count())
    })
}

// --- 3. size ----------------------------------------------------------------------------

async fn body_over_the_limit_is_413<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder()
        .max_body_bytes(1024)
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let text = "y".repeat(2048);
    let response = client.send(post(text_update(fresh_id(), 1, &text))).await;
    check_text(&response, 413, "1024")?;
    check_plain_text_headers(&response, &[])?;
    ensure(rec.count() == 0, || "the handler was called".into())
}

async fn body_at_the_limit_is_accepted<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let id = fresh_id();
    let base = text_update(id, 1, "").len();
    let body = text_update(id, 1, &"z".repeat(1024 - base));
    ensure(body.len() == 1024, || {
        format!("test body is {} bytes", body.len())
    })?;
    let webhook = builder()
        .max_body_bytes(1024)
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    check_empty_ok(&client.send(post(body)).await)?;
    ensure(rec.count_of(id) == 1, || {
        "the handler was not called once".into()
    })
}

// --- 3b. slow bodies --------------------------------------------------------------------

async fn stalled_or_trickling_body_is_408<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let limit = Duration::from_millis(150);
    let webhook = builder()
        .body_read_timeout(limit)
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let whole = text_update(fresh_id(), 1, "slow client");
    let half = whole.slice(..whole.len() / 2);
    // One byte every 20 ms: the whole body would take seconds, each gap is far below the limit.
    let bodies = [
        ("stalled", StreamingBody::stalling(half)),
        (
            "trickling",
            StreamingBody::trickling(whole.clone(), Duration::from_millis(20)),
        ),
    ];
    for (name, body) in bodies {
        let request = Request::builder()
            .method(Method::POST)
            .uri(PATH)
            .header("content-type", "application/json")
            .header("content-length", whole.len())
            .header("x-telegram-bot-api-secret-token", SECRET)
            .body(body)
            .map_err(|e| e.to_string())?;
        // The bound is generous (the machine may be busy); the answer is due after `limit`.
        let response = match tokio::time::timeout(
            Duration::from_secs(5),
            client.send_streaming(request),
        )
        .await
        {
            Err(_) => {
                return Err(format!(
                    "{name} body: no answer within 5 s (body_read_timeout is {limit:?})"
                ));
            }
            Ok(None) => return skip(),
            Ok(Some(response)) => response,
        };
        check_text(&response, 408, "request timeout").map_err(|e| format!("{name} body: {e}"))?;
        check_plain_text_headers(&response, &[]).map_err(|e| format!("{name} body: {e}"))?;
    }
    ensure(rec.count() == 0, || "the handler was called".into())
}

// --- 4. bad bodies ----------------------------------------------------------------------

async fn bad_bodies_are_400_with_a_reason_and_a_warning<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let client = h
        .serve(
            builder()
                .build(recording(&rec))
                .map_err(|e| e.to_string())?,
        )
        .await;
    let mut bodies: Vec<(String, Bytes)> = BAD_FIXTURES
        .iter()
        .map(|name| ((*name).to_owned(), fixture(&format!("updates/{name}"))))
        .collect();
    bodies.push(("empty body".into(), Bytes::new()));
    bodies.push((
        "update_id zero".into(),
        Bytes::from_static(br#"{"update_id":0,"message":{}}"#),
    ));
    bodies.push((
        "update_id negative".into(),
        Bytes::from_static(br#"{"update_id":-3}"#),
    ));
    // Bodies serde_json refuses or reads differently (issue 14): the dispatcher refuses them
    // before the handler could see something the validator did not check.
    bodies.push((
        "a repeated update kind".into(),
        Bytes::from_static(
            br#"{"update_id":7,"message":{"chat":{"id":1},"text":"a"},"message":{"chat":{"id":2},"text":"b"}}"#,
        ),
    ));
    bodies.push((
        "an integer beyond f64".into(),
        Bytes::from(format!(
            r#"{{"update_id":7,"message":{{"chat":{{"id":1{}}}}}}}"#,
            "0".repeat(400)
        )),
    ));
    for (name, body) in bodies {
        let mark = capture::mark();
        let response = client.send(post(body)).await;
        check_text(&response, 400, "bad request").map_err(|e| format!("{name}: {e}"))?;
        check_plain_text_headers(&response, &[]).map_err(|e| format!("{name}: {e}"))?;
        ensure(response.body().len() < 300, || {
            format!("{name}: reason is not short")
        })?;
        if capture::install() {
            let warned = capture::since(mark)
                .iter()
                .any(|e| e.level == Level::WARN && e.message.contains("not a Telegram update"));
            ensure(warned, || format!("{name}: no warning was logged"))?;
        }
    }
    ensure(rec.count() == 0, || {
        format!("the handler saw {} bad bodies", rec.count())
    })
}

// --- 5. handled --------------------------------------------------------------------------

async fn every_fixture_kind_reaches_the_handler_intact<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let client = h
        .serve(
            builder()
                .build(recording(&rec))
                .map_err(|e| e.to_string())?,
        )
        .await;
    for name in GOOD_FIXTURES {
        let body = fixture(&format!("updates/{name}"));
        let response = client.send(post(body.clone())).await;
        check_empty_ok(&response).map_err(|e| format!("{name}: {e}"))?;
        let calls = rec.calls();
        let last = calls
            .last()
            .ok_or_else(|| format!("{name}: the handler was not called"))?;
        ensure(last.1 == body, || {
            format!("{name}: the handler saw different bytes than were sent")
        })?;
        let sent: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        ensure(sent["update_id"].as_u64() == Some(last.0), || {
            format!("{name}: wrong update_id")
        })?;
    }
    ensure(rec.count() == GOOD_FIXTURES.len(), || {
        format!(
            "expected {} calls, got {}",
            GOOD_FIXTURES.len(),
            rec.count()
        )
    })
}

async fn handled_update_without_reply_is_200_with_empty_body<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let rec = Recorder::default();
    let client = h
        .serve(
            builder()
                .build(recording(&rec))
                .map_err(|e| e.to_string())?,
        )
        .await;
    let id = fresh_id();
    check_empty_ok(&client.send(post(text_update(id, 5, "hello"))).await)?;
    ensure(rec.count_of(id) == 1, || {
        "the handler was not called once".into()
    })
}

async fn webhook_reply_is_the_response_body<H: Harness>(h: &H) -> Result<(), String> {
    let webhook = builder()
        .build(|update: Update, ctx: Context| async move {
            let chat_id = update.chat_id().ok_or("no chat")?;
            ctx.webhook_reply("sendMessage", reply_params(chat_id, "héllo 👋 \"quoted\""))?;
            Ok::<_, HandlerError>(())
        })
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let response = client.send(post(text_update(fresh_id(), 77, "hi"))).await;
    check_json_reply(
        &response,
        &with_method(&reply_params(77, "héllo 👋 \"quoted\""), "sendMessage"),
    )
}

// --- 11. reply rules --------------------------------------------------------------------

async fn second_webhook_reply_and_ignored_methods_are_refused<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let rec = Recorder::default();
    let notes = rec.clone();
    let webhook = builder()
        .build(move |update: Update, ctx: Context| {
            let notes = notes.clone();
            async move {
                let chat_id = update.chat_id().ok_or("no chat")?;
                for method in [
                    "getMe",
                    "setWebhook",
                    "deleteWebhook",
                    "close",
                    "logOut",
                    "getChat",
                ] {
                    match ctx.webhook_reply(method, json!({})) {
                        Err(WebhookReplyError::IgnoredMethod { .. }) => {
                            notes.note(format!("ignored:{method}"));
                        }
                        other => notes.note(format!("unexpected:{method}:{other:?}")),
                    }
                }
                ctx.webhook_reply("sendMessage", reply_params(chat_id, "first"))?;
                match ctx.webhook_reply("sendMessage", reply_params(chat_id, "second")) {
                    Err(WebhookReplyError::AlreadyUsed { .. }) => notes.note("already-used"),
                    other => notes.note(format!("unexpected:second:{other:?}")),
                }
                Ok::<_, HandlerError>(())
            }
        })
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let response = client.send(post(text_update(fresh_id(), 3, "x"))).await;
    check_json_reply(
        &response,
        &with_method(&reply_params(3, "first"), "sendMessage"),
    )?;
    let notes = rec.notes();
    ensure(
        notes.len() == 7 && notes.iter().all(|n| !n.starts_with("unexpected")),
        || format!("{notes:?}"),
    )
}

// --- 6. handler errors ------------------------------------------------------------------

fn failing(
    rec: &Recorder,
) -> impl Fn(Update, Context) -> futures_util::future::Ready<Result<(), HandlerError>>
+ Send
+ Sync
+ 'static {
    let rec = rec.clone();
    move |update: Update, _ctx: Context| {
        rec.record(&update);
        futures_util::future::ready(Err("the database is down".into()))
    }
}

async fn failing_handler_is_retried_then_given_up<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder().build(failing(&rec)).map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let id = fresh_id();
    for attempt in 1..=2 {
        let response = client.send(post(text_update(id, 9, "x"))).await;
        check_text(&response, 500, "handler failed")
            .map_err(|e| format!("attempt {attempt}: {e}"))?;
        check_plain_text_headers(&response, &[])?;
    }
    check_empty_ok(&client.send(post(text_update(id, 9, "x"))).await)
        .map_err(|e| format!("attempt 3: {e}"))?;
    check_empty_ok(&client.send(post(text_update(id, 9, "x"))).await)
        .map_err(|e| format!("attempt 4: {e}"))?;
    ensure(rec.count_of(id) == 3, || {
        format!("expected 3 handler runs, got {}", rec.count_of(id))
    })?;
    check_logged(id, Level::ERROR, "handler failed")?;
    let events = capture::for_update(id);
    ensure(
        events.iter().any(|e| {
            e.level == Level::ERROR
                && e.field("error")
                    .is_some_and(|v| v.contains("database is down"))
        }),
        || "the error event does not carry the handler's error".into(),
    )?;
    check_logged(id, Level::ERROR, "giving up")
}

async fn acknowledge_policy_answers_200_on_failure<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder()
        .error_policy(ErrorPolicy::Acknowledge)
        .build(failing(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let id = fresh_id();
    check_empty_ok(&client.send(post(text_update(id, 9, "x"))).await)?;
    check_empty_ok(&client.send(post(text_update(id, 9, "x"))).await)?;
    ensure(rec.count_of(id) == 1, || {
        format!("expected 1 run, got {}", rec.count_of(id))
    })?;
    check_logged(id, Level::ERROR, "handler failed")
}

async fn retry_policy_never_gives_up<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder()
        .error_policy(ErrorPolicy::Retry)
        .build(failing(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let id = fresh_id();
    for attempt in 1..=5 {
        let response = client.send(post(text_update(id, 9, "x"))).await;
        check_status(&response, 500).map_err(|e| format!("attempt {attempt}: {e}"))?;
    }
    ensure(rec.count_of(id) == 5, || {
        format!("expected 5 runs, got {}", rec.count_of(id))
    })
}

async fn panicking_handler_counts_as_a_failure<H: Harness>(h: &H) -> Result<(), String> {
    let webhook = builder()
        .build(|update: Update, _ctx: Context| async move {
            if update.update_id() > 0 {
                panic!("boom in the handler");
            }
            Ok::<_, HandlerError>(())
        })
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let id = fresh_id();
    check_status(&client.send(post(text_update(id, 9, "x"))).await, 500)?;
    check_logged(id, Level::ERROR, "handler failed")?;
    // The server is still up.
    check_status(
        &client.send(request(Method::GET, Bytes::new(), None)).await,
        405,
    )
}

// --- 7, 8. timeouts ---------------------------------------------------------------------

/// A handler that sleeps `delay`, then tries a webhook reply and notes what happened.
fn slow_replier(
    rec: &Recorder,
    delay: Duration,
) -> impl Fn(Update, Context) -> LocalSendFuture + Send + Sync + 'static {
    let rec = rec.clone();
    move |update: Update, ctx: Context| {
        let rec = rec.clone();
        Box::pin(async move {
            rec.record(&update);
            tokio::time::sleep(delay).await;
            let chat_id = update.chat_id().unwrap_or_default();
            match ctx.webhook_reply("sendMessage", reply_params(chat_id, "late")) {
                Ok(()) => rec.note("reply:ok"),
                Err(WebhookReplyError::ResponseSent { .. }) => rec.note("reply:response-sent"),
                Err(other) => rec.note(format!("reply:{other:?}")),
            }
            rec.note("finished");
            Ok(())
        })
    }
}

type LocalSendFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), HandlerError>> + Send>>;

async fn timeout_throw_answers_503_and_the_handler_finishes<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder()
        .timeout(Duration::from_millis(40))
        .build(slow_replier(&rec, Duration::from_millis(300)))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let id = fresh_id();
    let started = Instant::now();
    let response = client.send(post(text_update(id, 4, "slow"))).await;
    let answered_after = started.elapsed();
    check_text(&response, 503, "timed out")?;
    check_plain_text_headers(&response, &[])?;
    ensure(answered_after < Duration::from_millis(290), || {
        format!("the answer waited for the handler ({answered_after:?}) instead of the timeout")
    })?;
    check_logged(id, Level::ERROR, "timeout")?;
    ensure(
        capture::for_update(id)
            .iter()
            .any(|e| e.field("elapsed_ms").is_some()),
        || "the timeout event has no elapsed_ms".into(),
    )?;
    // The handler is not killed: it finishes, and the log says so.
    rec.wait_notes(2).await?;
    wait_logged(id, Level::WARN, "finished after").await?;
    ensure(rec.count_of(id) == 1, || {
        "the handler ran more than once".into()
    })
}

async fn timeout_return_answers_200_and_late_reply_is_refused<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder()
        .timeout(Duration::from_millis(40))
        .on_timeout(OnTimeout::Return)
        .build(slow_replier(&rec, Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let id = fresh_id();
    let started = Instant::now();
    let response = client.send(post(text_update(id, 4, "slow"))).await;
    ensure(started.elapsed() < Duration::from_millis(190), || {
        "the answer waited for the handler".into()
    })?;
    check_empty_ok(&response)?;
    check_logged(id, Level::WARN, "on_timeout = Return")?;
    let notes = rec.wait_notes(2).await?;
    ensure(notes[0] == "reply:response-sent", || {
        format!("the late reply was not refused: {notes:?}")
    })
}

async fn timeout_return_sends_a_reply_set_before_the_timeout<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let webhook = builder()
        .timeout(Duration::from_millis(40))
        .on_timeout(OnTimeout::Return)
        .build(|update: Update, ctx: Context| async move {
            ctx.webhook_reply(
                "sendMessage",
                reply_params(update.chat_id().unwrap_or_default(), "early"),
            )?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, HandlerError>(())
        })
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let response = client.send(post(text_update(fresh_id(), 8, "x"))).await;
    check_json_reply(
        &response,
        &with_method(&reply_params(8, "early"), "sendMessage"),
    )
}

async fn custom_timeout_callback_decides<H: Harness>(h: &H) -> Result<(), String> {
    let rec = Recorder::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_in_callback = seen.clone();
    let webhook = builder()
        .timeout(Duration::from_millis(40))
        .on_timeout(OnTimeout::custom(move |event| {
            seen_in_callback
                .lock()
                .expect("lock")
                .push((event.update_id, event.chat_id));
            if event.chat_id == Some(1) {
                TimeoutAction::Return
            } else {
                TimeoutAction::Throw
            }
        }))
        .build(slow_replier(&rec, Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let (a, b) = (fresh_id(), fresh_id());
    check_empty_ok(&client.send(post(text_update(a, 1, "x"))).await)?;
    check_status(&client.send(post(text_update(b, 2, "y"))).await, 503)?;
    let seen = seen.lock().expect("lock").clone();
    ensure(seen == vec![(a, Some(1)), (b, Some(2))], || {
        format!("callback saw {seen:?}")
    })?;
    rec.wait_notes(4).await.map(drop)
}

// --- 9. redelivery ----------------------------------------------------------------------

async fn redelivery_while_in_flight_waits_and_shares_the_outcome<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder()
        .timeout(Duration::from_secs(5))
        .build(slow_replier(&rec, Duration::from_millis(150)))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let id = fresh_id();
    let first = client.send(post(text_update(id, 6, "x")));
    let second = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        client.send(post(text_update(id, 6, "x"))).await
    };
    let (first, second) = tokio::join!(first, second);
    let expected = with_method(&reply_params(6, "late"), "sendMessage");
    check_json_reply(&first, &expected).map_err(|e| format!("first delivery: {e}"))?;
    check_json_reply(&second, &expected).map_err(|e| format!("redelivery: {e}"))?;
    ensure(rec.count_of(id) == 1, || {
        format!("the handler ran {} times", rec.count_of(id))
    })?;
    check_logged(id, Level::INFO, "still being handled")
}

async fn redelivery_after_success_is_answered_without_running_the_handler<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder()
        .build(slow_replier(&rec, Duration::ZERO))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let id = fresh_id();
    let expected = with_method(&reply_params(6, "late"), "sendMessage");
    check_json_reply(&client.send(post(text_update(id, 6, "x"))).await, &expected)?;
    let started = Instant::now();
    let again = client.send(post(text_update(id, 6, "x"))).await;
    // Telegram redelivers only if it did not get our 200, so it never executed the reply:
    // the redelivery carries it again.
    check_json_reply(&again, &expected).map_err(|e| format!("redelivery: {e}"))?;
    ensure(started.elapsed() < Duration::from_secs(1), || {
        "the redelivery was not answered at once".into()
    })?;
    ensure(rec.count_of(id) == 1, || {
        format!("the handler ran {} times", rec.count_of(id))
    })?;
    check_logged(id, Level::INFO, "already handled")
}

async fn redelivery_after_a_throw_timeout_gets_the_late_reply<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let rec = Recorder::default();
    let webhook = builder()
        .timeout(Duration::from_millis(100))
        .build(slow_replier(&rec, Duration::from_millis(160)))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let id = fresh_id();
    check_status(&client.send(post(text_update(id, 2, "x"))).await, 503)?;
    // Telegram retries at once; the redelivery waits for the first run (up to the timeout).
    let response = client.send(post(text_update(id, 2, "x"))).await;
    check_json_reply(
        &response,
        &with_method(&reply_params(2, "late"), "sendMessage"),
    )?;
    ensure(rec.count_of(id) == 1, || {
        format!("the handler ran {} times", rec.count_of(id))
    })
}

/// Telegram picks a random `update_id` after a week without updates, so an id the guard still
/// remembers can come back on a different update: that is a new update, not a redelivery.
async fn reused_update_id_with_another_body_is_a_new_update<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let rec = Recorder::default();
    let recorder = rec.clone();
    let webhook = builder()
        .build(move |update: Update, ctx: Context| {
            recorder.record(&update);
            let echo = update.deserialize::<Value>().map(|v| {
                let chat_id = v["message"]["chat"]["id"].as_i64().unwrap_or_default();
                let text = v["message"]["text"].as_str().unwrap_or_default().to_owned();
                (chat_id, text)
            });
            async move {
                let (chat_id, text) = echo?;
                ctx.webhook_reply("sendMessage", reply_params(chat_id, &text))?;
                Ok::<_, HandlerError>(())
            }
        })
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let id = fresh_id();
    let old = text_update(id, 5, "before the quiet week");
    let new = text_update(id, 6, "after the quiet week");
    let old_reply = with_method(&reply_params(5, "before the quiet week"), "sendMessage");
    let new_reply = with_method(&reply_params(6, "after the quiet week"), "sendMessage");
    check_json_reply(&client.send(post(old.clone())).await, &old_reply)
        .map_err(|e| format!("first update: {e}"))?;
    check_json_reply(&client.send(post(new.clone())).await, &new_reply)
        .map_err(|e| format!("the new update with a reused id: {e}"))?;
    // A true redelivery of the new update (same bytes) is still answered from the guard.
    check_json_reply(&client.send(post(new.clone())).await, &new_reply)
        .map_err(|e| format!("redelivery of the new update: {e}"))?;
    let bodies: Vec<Bytes> = rec
        .calls()
        .into_iter()
        .filter(|(seen, _)| *seen == id)
        .map(|(_, body)| body)
        .collect();
    ensure(bodies == vec![old, new], || {
        format!(
            "expected the handler to run once per body, got {} runs",
            bodies.len()
        )
    })
}

// --- 10. concurrency --------------------------------------------------------------------

async fn different_updates_run_concurrently<H: Harness>(h: &H) -> Result<(), String> {
    // Each handler waits until both have started: if calls were serialised, neither finishes
    // before the timeout.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let order = Arc::new(Mutex::new(HashMap::new()));
    let (b, o) = (barrier.clone(), order.clone());
    let webhook = builder()
        .timeout(Duration::from_secs(3))
        .build(move |update: Update, _ctx: Context| {
            let (b, o) = (b.clone(), o.clone());
            async move {
                b.wait().await;
                o.lock().expect("lock").insert(update.update_id(), true);
                Ok::<_, HandlerError>(())
            }
        })
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let (a, c) = (fresh_id(), fresh_id());
    let (ra, rc) = tokio::join!(
        client.send(post(text_update(a, 1, "a"))),
        client.send(post(text_update(c, 1, "c")))
    );
    check_empty_ok(&ra).map_err(|e| format!("first: {e}"))?;
    check_empty_ok(&rc).map_err(|e| format!("second: {e}"))?;
    ensure(order.lock().expect("lock").len() == 2, || {
        "both handlers did not finish".into()
    })
}

// --- 13. source allowlist ---------------------------------------------------------------

/// A forwarded address inside Telegram's 149.154.160.0/20.
const TELEGRAM_ADDRESS: &str = "149.154.167.99";

/// Loopback, where the harness's requests come from.
const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1"];

/// Whether the harness passes the peer's address to the core: a webhook admitting every
/// address answers 200 only if it does (without an address, an allowlist refuses all).
async fn harness_passes_the_peer_address<H: Harness>(h: &H) -> Result<bool, String> {
    let everyone = SourceAllowlist::new(["0.0.0.0/0", "::/0"]).map_err(|e| e.to_string())?;
    let rec = Recorder::default();
    let webhook = builder()
        .source_allowlist(everyone)
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let response = client.send(post(text_update(fresh_id(), 1, "probe"))).await;
    match response.status().as_u16() {
        200 => Ok(true),
        403 => Ok(false),
        other => Err(format!(
            "an allowlist of every address answered {other}, expected 200 (or 403 without a peer address)"
        )),
    }
}

fn with_header(mut request: Request<Bytes>, name: &'static str, value: &str) -> Request<Bytes> {
    request.headers_mut().insert(
        name,
        http::HeaderValue::from_str(value).expect("header value"),
    );
    request
}

async fn source_allowlist_refuses_strangers_with_403_before_secret_and_body<H: Harness>(
    h: &H,
) -> Result<(), String> {
    if !harness_passes_the_peer_address(h).await? {
        return skip_because("the harness does not pass the peer address (PeerAddr)");
    }
    let rec = Recorder::default();
    let webhook = builder()
        .max_body_bytes(64)
        .source_allowlist(SourceAllowlist::telegram())
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    // Loopback is not Telegram: refused, whatever the secret, before the body is read.
    let good = client.send(post(text_update(fresh_id(), 1, "x"))).await;
    check_text(&good, 403, "forbidden").map_err(|e| format!("right secret: {e}"))?;
    check_plain_text_headers(&good, &[])?;
    let wrong = client
        .send(request(
            Method::POST,
            text_update(fresh_id(), 1, "x"),
            Some("wrong"),
        ))
        .await;
    check_text(&wrong, 403, "forbidden").map_err(|e| format!("wrong secret: {e}"))?;
    let huge = client.send(post(Bytes::from(vec![b'{'; 4096]))).await;
    check_text(&huge, 403, "forbidden").map_err(|e| format!("body over the limit: {e}"))?;
    // A stranger naming a Telegram address in a forwarding header is not believed: no proxy
    // is trusted.
    let claimed = client
        .send(with_header(
            post(text_update(fresh_id(), 1, "x")),
            "x-forwarded-for",
            TELEGRAM_ADDRESS,
        ))
        .await;
    check_text(&claimed, 403, "forbidden").map_err(|e| format!("X-Forwarded-For: {e}"))?;
    // GET stays 405: the method is checked first.
    let get = client
        .send(request(Method::GET, Bytes::new(), Some(SECRET)))
        .await;
    check_status(&get, 405)?;
    ensure(rec.count() == 0, || "the handler was called".into())
}

async fn source_allowlist_admits_listed_addresses_and_forwarding_from_trusted_proxies<
    H: Harness,
>(
    h: &H,
) -> Result<(), String> {
    if !harness_passes_the_peer_address(h).await? {
        return skip_because("the harness does not pass the peer address (PeerAddr)");
    }
    let rec = Recorder::default();
    let listed = builder()
        .source_allowlist(SourceAllowlist::new(LOOPBACK).map_err(|e| e.to_string())?)
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let response = h
        .serve(listed)
        .await
        .send(post(text_update(fresh_id(), 1, "x")))
        .await;
    check_empty_ok(&response).map_err(|e| format!("loopback listed: {e}"))?;

    let behind_proxy = |header| {
        SourceAllowlist::telegram()
            .trusted_proxies(LOOPBACK, header)
            .map_err(|e| e.to_string())
    };
    let xff = h
        .serve(
            builder()
                .source_allowlist(behind_proxy(ForwardedHeader::XForwardedFor)?)
                .build(recording(&rec))
                .map_err(|e| e.to_string())?,
        )
        .await;
    let spoofed_then_telegram = format!("1.2.3.4, {TELEGRAM_ADDRESS}");
    let telegram_then_stranger = format!("{TELEGRAM_ADDRESS}, 1.2.3.4");
    for (value, status) in [
        (Some(TELEGRAM_ADDRESS), 200),
        (Some(spoofed_then_telegram.as_str()), 200),
        (Some(telegram_then_stranger.as_str()), 403),
        (Some("1.2.3.4"), 403),
        (Some("not an address"), 403),
        (None, 403),
    ] {
        let mut request = post(text_update(fresh_id(), 1, "x"));
        if let Some(value) = value {
            request = with_header(request, "x-forwarded-for", value);
        }
        let response = xff.send(request).await;
        check_status(&response, status).map_err(|e| format!("X-Forwarded-For {value:?}: {e}"))?;
    }
    let rfc = h
        .serve(
            builder()
                .source_allowlist(behind_proxy(ForwardedHeader::Forwarded)?)
                .build(recording(&rec))
                .map_err(|e| e.to_string())?,
        )
        .await;
    for (value, status) in [
        (format!("for={TELEGRAM_ADDRESS};proto=https"), 200),
        (format!("for=\"{TELEGRAM_ADDRESS}:443\""), 200),
        ("for=1.2.3.4".to_owned(), 403),
        ("for=unknown".to_owned(), 403),
    ] {
        let request = with_header(post(text_update(fresh_id(), 1, "x")), "forwarded", &value);
        let response = rfc.send(request).await;
        check_status(&response, status).map_err(|e| format!("Forwarded {value:?}: {e}"))?;
    }
    // The X-Forwarded-For header does not count where the proxies write Forwarded.
    let other_header = with_header(
        post(text_update(fresh_id(), 1, "x")),
        "x-forwarded-for",
        TELEGRAM_ADDRESS,
    );
    check_status(&rfc.send(other_header).await, 403)
        .map_err(|e| format!("X-Forwarded-For where Forwarded is trusted: {e}"))?;
    ensure(rec.count() == 5, || {
        format!(
            "expected 5 handler calls (the admitted requests), got {}",
            rec.count()
        )
    })
}

// --- several bots in one server ----------------------------------------------------------

/// The second bot's secret (the first one's is [`SECRET`]).
const OTHER_SECRET: &str = "an0ther-s3cret_for-the-second-bot";

/// Two bots, `alpha` (secret [`SECRET`]) and `beta` ([`OTHER_SECRET`]), each recording into its
/// own recorder, mounted by the harness; `None` when the harness cannot mount [`Bots`].
async fn serve_two_bots<H: Harness>(
    h: &H,
) -> Result<Option<(H::Client, Recorder, Recorder)>, String> {
    let (alpha, beta) = (Recorder::default(), Recorder::default());
    let bots = Bots::new()
        .bot(
            "alpha",
            builder()
                .build(recording(&alpha))
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?
        .bot(
            "beta",
            Webhook::builder()
                .secret_token(OTHER_SECRET)
                .build(recording(&beta))
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
    Ok(h.serve_bots(bots).await.map(|client| (client, alpha, beta)))
}

fn post_to(path: &str, body: Bytes, secret: Option<&str>) -> Request<Bytes> {
    let mut request = request(Method::POST, body, secret);
    *request.uri_mut() = path.parse().expect("uri");
    request
}

fn check_calls(rec: &Recorder, bot: &str, expected: &[u64]) -> Result<(), String> {
    let got: Vec<u64> = rec.calls().iter().map(|(id, _)| *id).collect();
    ensure(got == expected, || {
        format!("bot {bot}'s handler got update_ids {got:?}, expected {expected:?}")
    })
}

async fn bots_by_path_each_update_reaches_only_its_bot_and_unknown_names_get_404<H: Harness>(
    h: &H,
) -> Result<(), String> {
    let Some((client, alpha, beta)) = serve_two_bots(h).await? else {
        return skip_because("the harness does not mount Bots (Harness::serve_bots)");
    };
    let (to_alpha, to_beta, shared) = (fresh_id(), fresh_id(), fresh_id());
    let alpha_path = format!("{BOTS_PATH}/alpha");
    let beta_path = format!("{BOTS_PATH}/beta");
    for (path, id, secret) in [
        (&alpha_path, to_alpha, SECRET),
        (&beta_path, to_beta, OTHER_SECRET),
        // The same update_id for both: each bot has its own redelivery guard.
        (&alpha_path, shared, SECRET),
        (&beta_path, shared, OTHER_SECRET),
    ] {
        let response = client
            .send(post_to(path, text_update(id, 1, "x"), Some(secret)))
            .await;
        check_empty_ok(&response).map_err(|e| format!("{path}: {e}"))?;
    }
    // A known bot with the other bot's secret, or none: 401 from that bot.
    for secret in [Some(OTHER_SECRET), None] {
        let response = client
            .send(post_to(
                &alpha_path,
                text_update(fresh_id(), 1, "x"),
                secret,
            ))
            .await;
        check_status(&response, 401).map_err(|e| format!("{alpha_path} with {secret:?}: {e}"))?;
    }
    // An unknown bot: 404, whatever the secret.
    for secret in [SECRET, OTHER_SECRET] {
        let path = format!("{BOTS_PATH}/gamma");
        let response = client
            .send(post_to(
                &path,
                text_update(fresh_id(), 1, "x"),
                Some(secret),
            ))
            .await;
        check_status(&response, 404).map_err(|e| format!("{path}: {e}"))?;
    }
    check_calls(&alpha, "alpha", &[to_alpha, shared])?;
    check_calls(&beta, "beta", &[to_beta, shared])
}

async fn bots_by_secret_token_each_update_reaches_only_its_bot_and_unknown_secrets_get_401<
    H: Harness,
>(
    h: &H,
) -> Result<(), String> {
    let Some((client, alpha, beta)) = serve_two_bots(h).await? else {
        return skip_because("the harness does not mount Bots (Harness::serve_bots)");
    };
    let (to_alpha, to_beta, shared) = (fresh_id(), fresh_id(), fresh_id());
    for (id, secret) in [
        (to_alpha, SECRET),
        (to_beta, OTHER_SECRET),
        (shared, OTHER_SECRET),
        (shared, SECRET),
    ] {
        let response = client
            .send(post_to(
                BOTS_BY_SECRET_PATH,
                text_update(id, 1, "x"),
                Some(secret),
            ))
            .await;
        check_empty_ok(&response).map_err(|e| format!("secret of {id}: {e}"))?;
    }
    for secret in [Some("wrong"), Some(""), None] {
        let response = client
            .send(post_to(
                BOTS_BY_SECRET_PATH,
                text_update(fresh_id(), 1, "x"),
                secret,
            ))
            .await;
        check_status(&response, 401).map_err(|e| format!("secret {secret:?}: {e}"))?;
    }
    check_calls(&alpha, "alpha", &[to_alpha, shared])?;
    check_calls(&beta, "beta", &[to_beta, shared])
}
