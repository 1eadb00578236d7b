//! Cases on the request: its method, its secret, its size, a slow body, a bad body.

use super::*;

// --- 1. method --------------------------------------------------------------------------

pub(super) async fn non_post_is_405_with_allow_and_no_handler_call<H: Harness>(
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

pub(super) async fn method_is_checked_before_secret_and_body<H: Harness>(
    h: &H,
) -> Result<(), String> {
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

pub(super) async fn missing_secret_is_401<H: Harness>(h: &H) -> Result<(), String> {
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

pub(super) async fn wrong_secret_is_401_and_body_is_not_read<H: Harness>(
    h: &H,
) -> Result<(), String> {
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

pub(super) async fn secret_header_is_ignored_when_no_secret_is_configured<H: Harness>(
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

pub(super) async fn body_over_the_limit_is_413<H: Harness>(h: &H) -> Result<(), String> {
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

pub(super) async fn body_at_the_limit_is_accepted<H: Harness>(h: &H) -> Result<(), String> {
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

pub(super) async fn stalled_or_trickling_body_is_408<H: Harness>(h: &H) -> Result<(), String> {
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

pub(super) async fn bad_bodies_are_400_with_a_reason_and_a_warning<H: Harness>(
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
