//! Cases on handling: what reaches the handler, the webhook reply and its rules, handler errors.

use super::*;

// --- 5. handled --------------------------------------------------------------------------

pub(super) async fn every_fixture_kind_reaches_the_handler_intact<H: Harness>(
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

pub(super) async fn handled_update_without_reply_is_200_with_empty_body<H: Harness>(
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

pub(super) async fn webhook_reply_is_the_response_body<H: Harness>(h: &H) -> Result<(), String> {
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

pub(super) async fn second_webhook_reply_and_ignored_methods_are_refused<H: Harness>(
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

pub(super) fn failing(
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

pub(super) async fn failing_handler_is_retried_then_given_up<H: Harness>(
    h: &H,
) -> Result<(), String> {
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

pub(super) async fn acknowledge_policy_answers_200_on_failure<H: Harness>(
    h: &H,
) -> Result<(), String> {
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

pub(super) async fn retry_policy_never_gives_up<H: Harness>(h: &H) -> Result<(), String> {
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

pub(super) async fn panicking_handler_counts_as_a_failure<H: Harness>(h: &H) -> Result<(), String> {
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
