//! `lambda` and `vercel`: the parts of the serverless adapters that are telehook's own, through
//! their public entry points — telehook-lambda's source address (API Gateway's
//! `requestContext.identity.sourceIp` / `requestContext.http.sourceIp`, none for ALB) and
//! body handling (text or base64, decoded by lambda_http), telehook-vercel's `X-Real-IP` — with
//! a `SourceAllowlist` of Telegram's ranges or none, against the same contract model as
//! `request`.
//!
//! Input: `address secret mode body…` (missing bytes read as 0).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};
use telehook_core::{Context, HandlerError, SourceAllowlist, Update, Webhook};

use crate::model;
use crate::request::{MAX_BODY, SECRET, Seen, expected_status};
use crate::{Outcome, block_on, check};

/// The caller's address as the platform reports it: admitted by Telegram's ranges or not.
const ADDRESSES: &[(bool, Option<&str>)] = &[
    (true, Some("149.154.167.220")),
    (true, Some(" 149.154.167.220 ")),
    (true, Some("::ffff:149.154.167.220")),
    (true, Some("91.108.4.1")),
    (false, Some("198.51.100.7")),
    (false, Some("2001:db8::1")),
    (false, Some("149.154.167.220:443")),
    (false, Some("unknown")),
    (false, Some("")),
    (false, None),
];

const V2: &str =
    include_str!("../../crates/telehook-conformance/fixtures/lambda/apigw_v2_post.json");
const V1: &str =
    include_str!("../../crates/telehook-conformance/fixtures/lambda/apigw_v1_post.json");
const ALB: &str = include_str!("../../crates/telehook-conformance/fixtures/lambda/alb_post.json");

struct Input<'a> {
    admitted: bool,
    address: Option<&'static str>,
    secret: Option<&'static str>,
    allowlist: bool,
    event: u8,
    base64: bool,
    body: &'a [u8],
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Self {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let (admitted, address) = ADDRESSES[usize::from(byte(0)) % ADDRESSES.len()];
        let secret = match byte(1) % 4 {
            0 => Some(SECRET),
            1 => None,
            2 => Some("s3cr3t_T0ken-for-tesTs"),
            _ => Some("s3cr3t"),
        };
        let mode = byte(2);
        Self {
            admitted,
            address,
            secret,
            allowlist: mode & 1 != 0,
            event: (mode >> 1) % 3,
            base64: mode & 0x10 != 0,
            body: data.get(3.min(data.len())..).unwrap_or_default(),
        }
    }

    fn expected(&self, source_ok: bool) -> u16 {
        let verdict = model::reference(self.body);
        expected_status(
            true,
            !self.allowlist || source_ok,
            self.secret == Some(SECRET),
            Ok(None),
            self.body,
            &verdict,
        )
    }

    fn expected_seen(&self, status: u16) -> Option<(u64, Option<String>)> {
        model::reference(self.body)
            .update()
            .filter(|_| status == 200)
            .map(|e| (e.update_id, e.kind.clone()))
    }
}

struct Setup {
    webhooks: [Webhook; 2],
    seen: Seen,
    state: vercel_runtime::AppState,
}

thread_local! {
    static SETUP: Setup = {
        let seen: Seen = Arc::default();
        let build = |allowlist: bool| {
            let seen = Arc::clone(&seen);
            let mut builder = Webhook::builder()
                .secret_token(SECRET)
                .max_body_bytes(MAX_BODY)
                .redelivery_guard(1, Duration::ZERO);
            if allowlist {
                builder = builder.source_allowlist(SourceAllowlist::telegram());
            }
            builder
                .build(move |update: Update, _ctx: Context| {
                    let seen = Arc::clone(&seen);
                    async move {
                        *seen.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((update.update_id(), update.kind().map(str::to_owned)));
                        Ok::<_, HandlerError>(())
                    }
                })
                .expect("a valid configuration")
        };
        Setup {
            webhooks: [build(false), build(true)],
            seen,
            state: vercel_runtime::AppState::new(vercel_runtime::LogContext::new(None, None, None)),
        }
    };
}

/// Sets header `name` (in `headers` and, if the event has them, `multiValueHeaders`).
fn set_header(event: &mut Value, name: &str, value: Option<&str>) {
    for (field, multi) in [("headers", false), ("multiValueHeaders", true)] {
        let Some(map) = event.get_mut(field).and_then(Value::as_object_mut) else {
            continue;
        };
        map.retain(|k, _| !k.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            let v = if multi { json!([value]) } else { json!(value) };
            map.insert(name.to_owned(), v);
        }
    }
}

/// `lambda`: an API Gateway (REST or HTTP) or ALB event through `telehook_lambda::handle`.
pub fn lambda(data: &[u8]) -> Outcome {
    let input = Input::parse(data);
    let (template, has_source) = match input.event {
        0 => (V2, true),
        1 => (V1, true),
        _ => (ALB, false),
    };
    let mut event: Value = serde_json::from_str(template).map_err(|e| e.to_string())?;
    set_header(&mut event, telehook_core::SECRET_TOKEN_HEADER, input.secret);
    let context = &mut event["requestContext"];
    match input.event {
        0 => match input.address {
            Some(a) => context["http"]["sourceIp"] = json!(a),
            None => {
                if let Some(http) = context["http"].as_object_mut() {
                    http.remove("sourceIp");
                }
            }
        },
        1 => context["identity"]["sourceIp"] = input.address.map_or(Value::Null, |a| json!(a)),
        _ => {}
    }
    match std::str::from_utf8(input.body) {
        Ok(text) if !input.base64 => {
            event["body"] = json!(text);
            event["isBase64Encoded"] = json!(false);
        }
        _ => {
            event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(input.body));
            event["isBase64Encoded"] = json!(true);
        }
    }
    let request = lambda_http::request::from_str(&event.to_string())
        .map_err(|e| format!("lambda_http refused the event: {e}"))?;
    // API Gateway's source address is the client's; ALB reports none (an allowlist refuses).
    let want = input.expected(has_source && input.admitted);
    SETUP.with(|setup| {
        let webhook = &setup.webhooks[usize::from(input.allowlist)];
        let response = block_on(telehook_lambda::handle(webhook, request));
        let seen = setup.seen.lock().unwrap_or_else(|p| p.into_inner()).take();
        let status = response.status().as_u16();
        check!(
            status == want,
            "lambda: status {status} ({:?}), model {want}; event {}",
            response.body(),
            input.event
        );
        let expected_seen = input.expected_seen(status);
        check!(
            seen == expected_seen,
            "lambda: handler saw {seen:?}, model {expected_seen:?}"
        );
        Ok(())
    })
}

/// `vercel`: a request with `X-Real-IP` (as Vercel's proxy sets it) through
/// `telehook_vercel::handle`.
pub fn vercel(data: &[u8]) -> Outcome {
    let input = Input::parse(data);
    let mut request = http::Request::builder().method("POST").uri("/api/telegram");
    if let Some(secret) = input.secret {
        request = request.header(telehook_core::SECRET_TOKEN_HEADER, secret);
    }
    if let Some(address) = input.address {
        request = request.header("x-real-ip", address);
    }
    // A decoy: a client-sent X-Forwarded-For naming Telegram, which must not count.
    request = request.header("x-forwarded-for", "149.154.167.220");
    let request = request
        .body(Full::new(Bytes::copy_from_slice(input.body)))
        .map_err(|e| e.to_string())?;
    let want = input.expected(input.admitted);
    SETUP.with(|setup| {
        let webhook = &setup.webhooks[usize::from(input.allowlist)];
        let response = block_on(telehook_vercel::handle(
            webhook,
            &setup.state,
            request,
            Duration::from_secs(60),
        ));
        let seen = setup.seen.lock().unwrap_or_else(|p| p.into_inner()).take();
        let status = response.status().as_u16();
        check!(status == want, "vercel: status {status}, model {want}");
        let expected_seen = input.expected_seen(status);
        check!(
            seen == expected_seen,
            "vercel: handler saw {seen:?}, model {expected_seen:?}"
        );
        Ok(())
    })
}
