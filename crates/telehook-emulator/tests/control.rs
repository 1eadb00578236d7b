//! The HTTP test API can do what the Rust API does (issue 15 §3): each route is driven over
//! HTTP and checked against the Rust API's view of the same bot.

mod common;

use common::{TOKEN, WAIT, emulator, fast};
use serde_json::{Value, json};
use telehook_api::GetUpdates;
use telehook_emulator::{CallOutcome, Route};

struct Control {
    client: reqwest::Client,
    base: String,
}

impl Control {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.send(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 200, "{path}: {body}");
        body["result"].clone()
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        body["result"].clone()
    }
}

#[tokio::test]
async fn a_bot_in_any_language_can_be_driven_through_every_route() {
    let (emulator, telegram, bot) = emulator(fast()).await;
    let http = Control {
        client: reqwest::Client::new(),
        base: emulator.base_url(),
    };
    let me = format!("/_emulator/{TOKEN}");

    // Users and chats: a private text, and a text in a group.
    let first = http
        .post(
            &format!("{me}/private_text"),
            json!({ "user_id": 42, "first_name": "Ann", "text": "hi" }),
        )
        .await;
    assert_eq!(first["update_id"], 1);
    let group = http
        .post(
            &format!("{me}/messages"),
            json!({
                "chat": { "id": -100, "type": "group", "title": "Team" },
                "from": { "id": 7, "first_name": "Bo", "username": "bo" },
                "text": "/start",
            }),
        )
        .await;
    assert_eq!(
        group["update"]["message"]["entities"][0]["type"],
        "bot_command"
    );
    let post = http
        .post(
            &format!("{me}/messages"),
            json!({ "chat": { "id": -200, "type": "channel", "title": "News" }, "text": "news" }),
        )
        .await;
    assert!(post["update"]["channel_post"].is_object());
    let updates = bot.get_updates(&GetUpdates::default()).await.unwrap();
    assert_eq!(updates.len(), 3);

    // The bot sends a keyboard; a button press over HTTP names the message by chat and id.
    let sent = bot.send_message(42, "pick").await.unwrap();
    let press = http.post(&format!("{me}/press_button"), json!({
        "from": { "id": 42, "first_name": "Ann" }, "chat_id": 42, "message_id": sent["message_id"], "data": "yes",
    })).await;
    let query_id = press["update"]["callback_query"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(press["update"]["callback_query"]["message"]["text"], "pick");
    let inline = http
        .post(
            &format!("{me}/inline_query"),
            json!({ "user_id": 42, "first_name": "Ann", "query": "cats" }),
        )
        .await;
    let inline_id = inline["update"]["inline_query"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The bot can answer both: the emulator knows the ids.
    let api = format!("{}/bot{TOKEN}", emulator.base_url());
    for (method, params) in [
        (
            "answerCallbackQuery",
            json!({ "callback_query_id": query_id }),
        ),
        (
            "answerInlineQuery",
            json!({ "inline_query_id": inline_id, "results": [] }),
        ),
    ] {
        let body: Value = http
            .client
            .post(format!("{api}/{method}"))
            .json(&params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["ok"], true, "{method}: {body}");
    }

    // Calls, and waiting for them.
    let calls = http
        .get(&format!(
            "{me}/calls/wait?method=answerInlineQuery&count=1&timeout_ms=5000"
        ))
        .await;
    assert_eq!(calls[0]["method"], "answerInlineQuery");
    assert_eq!(calls[0]["route"], json!({ "type": "http" }));
    let all = http.get(&format!("{me}/calls")).await;
    assert_eq!(all.as_array().unwrap().len(), telegram.calls().len());
    let only = http.get(&format!("{me}/calls?method=sendMessage")).await;
    assert_eq!(only.as_array().unwrap().len(), 1);
    let (status, timed_out) = http
        .send(
            reqwest::Method::GET,
            &format!("{me}/calls/wait?method=sendSticker&timeout_ms=10"),
            None,
        )
        .await;
    assert_eq!(status, 408);
    assert!(
        timed_out["description"]
            .as_str()
            .unwrap()
            .contains("calls to sendSticker")
    );

    // Messages and state.
    let kept = http
        .get(&format!("{me}/messages/42/{}", sent["message_id"]))
        .await;
    assert_eq!(
        kept,
        telegram
            .message(42, sent["message_id"].as_i64().unwrap())
            .unwrap()
    );
    let state = http.get(&format!("{me}/state")).await;
    assert_eq!(state["bot_user"], telegram.bot_user());
    assert_eq!(state["next_update_id"], telegram.next_update_id());
    assert_eq!(
        state["pending_update_count"],
        telegram.pending_update_count()
    );
    let timing = http.get("/_emulator/timing").await;
    assert_eq!(timing["scale"], emulator.timing().scale);

    // The long-poll wait, the idle wait.
    let poller = bot.clone();
    let poll = tokio::spawn(async move {
        poller
            .get_updates(&GetUpdates {
                offset: Some(6),
                timeout: Some(1000),
                ..Default::default()
            })
            .await
    });
    http.get(&format!("{me}/long_poll/wait?timeout_ms=5000"))
        .await;
    http.post(
        &format!("{me}/private_text"),
        json!({ "user_id": 42, "text": "wake" }),
    )
    .await;
    tokio::time::timeout(WAIT, poll)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // Webhook: deliveries and their waits.
    let (url, _received) = common::webhook(|_| async { common::status(200) }).await;
    bot.set_webhook(&telehook_api::SetWebhook::new(url))
        .await
        .unwrap();
    let injected = http
        .post(
            &format!("{me}/private_text"),
            json!({ "user_id": 42, "text": "hooked" }),
        )
        .await;
    let id = injected["update_id"].as_u64().unwrap();
    let delivered = http
        .get(&format!(
            "{me}/delivered/wait?update_id={id}&timeout_ms=5000"
        ))
        .await;
    assert_eq!(delivered["outcome"]["type"], "delivered");
    http.get(&format!("{me}/deliveries/wait?count=1&timeout_ms=5000"))
        .await;
    http.get(&format!("{me}/idle/wait?timeout_ms=5000")).await;
    let log = http.get(&format!("{me}/deliveries")).await;
    let rust = telegram.deliveries();
    assert_eq!(log.as_array().unwrap().len(), rust.len());
    assert_eq!(log[0]["update_id"], rust[0].update_id);
    assert_eq!(log[0]["sequence_key"], json!({ "type": "chat", "id": 42 }));
    // The duration names its unit, in whole microseconds (no 5.5695440000000005).
    assert!(log[0].get("duration").is_none(), "{}", log[0]);
    let millis = log[0]["duration_ms"].as_f64().unwrap();
    assert!(millis >= 0.0, "{}", log[0]);
    let micros = millis * 1000.0;
    assert!((micros - micros.round()).abs() < 1e-6, "{}", log[0]);
    assert_eq!(
        millis,
        rust[0].duration.as_micros() as f64 / 1000.0,
        "{}",
        log[0]
    );
    assert_eq!(
        http.get(&format!("{me}/webhook_info")).await,
        telegram.webhook_info()
    );

    // Clearing calls; adding a bot.
    let (status, _) = http
        .send(reqwest::Method::DELETE, &format!("{me}/calls"), None)
        .await;
    assert_eq!(status, 200);
    assert!(telegram.calls().is_empty());
    let added = http
        .post("/_emulator/bots", json!({ "token": "654321:OTHER-bot" }))
        .await;
    assert_eq!(added["id"], 654_321);
    assert!(emulator.bot("654321:OTHER-bot").is_some());
    let (status, _) = http
        .send(reqwest::Method::GET, "/_emulator/1:nope/calls", None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_multipart_webhook_reply_is_executed() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let (url, _received) = common::webhook(|request| async move {
        let chat = request.update["message"]["chat"]["id"].as_i64().unwrap();
        let boundary = "XyZ";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\nsendMessage\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n{chat}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nfrom multipart\r\n--{boundary}--\r\n"
        );
        axum::response::Response::builder()
            .status(200)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(axum::body::Body::from(body))
            .unwrap()
    })
    .await;
    bot.set_webhook(&telehook_api::SetWebhook::new(url))
        .await
        .unwrap();
    let update = telegram.private_text(&telehook_emulator::User::new(42, "Ann"), "hi");
    let calls = telegram
        .wait_for_calls_to("sendMessage", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(
        calls[0].route,
        Route::WebhookReply {
            update_id: update.update_id
        }
    );
    assert_eq!(calls[0].text().as_deref(), Some("from multipart"));
    assert!(matches!(calls[0].outcome, CallOutcome::Ok { .. }));
}

#[tokio::test]
async fn every_refusal_of_the_test_api_is_the_documented_json() {
    let mut limits = telehook_emulator::Limits::default();
    limits.max_body_bytes = 1024;
    let emulator = telehook_emulator::Emulator::builder()
        .bot(TOKEN)
        .timing(fast())
        .limits(limits)
        .start()
        .await
        .unwrap();
    let base = emulator.base_url();
    let me = format!("{base}/_emulator/{TOKEN}");
    let client = reqwest::Client::new();
    let big = json!({ "message": { "text": "x".repeat(4096) } }).to_string();
    let cases = [
        (client.get(format!("{me}/calls/wait?count=-1")), 400),
        (client.get(format!("{me}/calls/wait?timeout_ms=soon")), 400),
        (client.get(format!("{me}/messages/abc/1")), 400),
        (
            client
                .post(format!("{me}/updates"))
                .header("content-type", "application/json")
                .body(big),
            413,
        ),
        (client.delete(format!("{me}/state")), 405),
        (client.put(format!("{me}/calls")), 405),
        (client.get(format!("{me}/no_such_route")), 404),
        (client.get(format!("{base}/_emulator/no_such_route")), 404),
    ];
    for (request, status) in cases {
        let request = request.build().unwrap();
        let what = format!("{} {}", request.method(), request.url());
        let response = client.execute(request).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{what}: {content_type}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["ok"], false, "{what}: {body}");
        assert_eq!(body["error_code"], status, "{what}: {body}");
        assert!(
            body["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn a_planned_fault_is_a_bot_api_error_code() {
    let (emulator, _telegram, _bot) = emulator(fast()).await;
    let url = format!("{}/_emulator/{TOKEN}/faults", emulator.base_url());
    let client = reqwest::Client::new();
    for (code, status) in [
        (0, 400),
        (200, 400),
        (65535, 400),
        (399, 400),
        (600, 400),
        (403, 200),
        (599, 200),
    ] {
        let response = client
            .post(&url)
            .json(&json!({ "method": "sendMessage", "times": 1, "fault": { "type": "error", "error_code": code, "description": "Forbidden: x" } }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "error_code {code}");
        let body: Value = response.json().await.unwrap();
        if status == 400 {
            assert!(
                body["description"].as_str().unwrap().contains("400 to 599"),
                "{body}"
            );
        }
    }
}
