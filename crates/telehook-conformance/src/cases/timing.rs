//! Cases on time: the timeout policies, redeliveries, concurrency.

use super::*;

// --- 7, 8. timeouts ---------------------------------------------------------------------

/// A handler that sleeps `delay`, then tries a webhook reply and notes what happened.
pub(super) fn slow_replier(
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

pub(super) async fn timeout_throw_answers_503_and_the_handler_finishes<H: Harness>(
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

pub(super) async fn timeout_return_answers_200_and_late_reply_is_refused<H: Harness>(
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

pub(super) async fn timeout_return_sends_a_reply_set_before_the_timeout<H: Harness>(
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

pub(super) async fn custom_timeout_callback_decides<H: Harness>(h: &H) -> Result<(), String> {
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

pub(super) async fn redelivery_while_in_flight_waits_and_shares_the_outcome<H: Harness>(
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

pub(super) async fn redelivery_after_success_is_answered_without_running_the_handler<H: Harness>(
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

pub(super) async fn redelivery_after_a_throw_timeout_gets_the_late_reply<H: Harness>(
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
pub(super) async fn reused_update_id_with_another_body_is_a_new_update<H: Harness>(
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

pub(super) async fn different_updates_run_concurrently<H: Harness>(h: &H) -> Result<(), String> {
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
