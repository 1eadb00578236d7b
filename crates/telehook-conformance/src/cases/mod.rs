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

mod access;
mod handling;
mod requests;
mod timing;

use crate::{
    BOTS_BY_SECRET_PATH, BOTS_PATH, Bots, Client, Harness, PATH, SECRET, StreamingBody, capture,
    fixture,
};

type Case<H> = fn(&H) -> LocalBoxFuture<'_, Result<(), String>>;

macro_rules! cases {
    ($($module:ident :: $name:ident),* $(,)?) => {
        /// Every case, by name.
        pub(crate) fn all<H: Harness>() -> Vec<(&'static str, Case<H>)> {
            vec![$((stringify!($name), (|h: &H| -> LocalBoxFuture<'_, Result<(), String>> { Box::pin($module::$name(h)) }) as Case<H>)),*]
        }
    };
}

cases![
    requests::non_post_is_405_with_allow_and_no_handler_call,
    requests::method_is_checked_before_secret_and_body,
    requests::missing_secret_is_401,
    requests::wrong_secret_is_401_and_body_is_not_read,
    requests::secret_header_is_ignored_when_no_secret_is_configured,
    requests::body_over_the_limit_is_413,
    requests::body_at_the_limit_is_accepted,
    requests::stalled_or_trickling_body_is_408,
    requests::bad_bodies_are_400_with_a_reason_and_a_warning,
    handling::every_fixture_kind_reaches_the_handler_intact,
    handling::handled_update_without_reply_is_200_with_empty_body,
    handling::webhook_reply_is_the_response_body,
    handling::second_webhook_reply_and_ignored_methods_are_refused,
    handling::failing_handler_is_retried_then_given_up,
    handling::acknowledge_policy_answers_200_on_failure,
    handling::retry_policy_never_gives_up,
    handling::panicking_handler_counts_as_a_failure,
    timing::timeout_throw_answers_503_and_the_handler_finishes,
    timing::timeout_return_answers_200_and_late_reply_is_refused,
    timing::timeout_return_sends_a_reply_set_before_the_timeout,
    timing::custom_timeout_callback_decides,
    timing::redelivery_while_in_flight_waits_and_shares_the_outcome,
    timing::redelivery_after_success_is_answered_without_running_the_handler,
    timing::redelivery_after_a_throw_timeout_gets_the_late_reply,
    timing::reused_update_id_with_another_body_is_a_new_update,
    timing::different_updates_run_concurrently,
    access::source_allowlist_refuses_strangers_with_403_before_secret_and_body,
    access::source_allowlist_admits_listed_addresses_and_forwarding_from_trusted_proxies,
    access::bots_by_path_each_update_reaches_only_its_bot_and_unknown_names_get_404,
    access::bots_by_secret_token_each_update_reaches_only_its_bot_and_unknown_secrets_get_401,
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
