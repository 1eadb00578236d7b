//! `telehook dev`: the local-development bridge, against the emulator and a local webhook.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::{TOKEN, assert_no_token, emulator, stderr, telehook};
use serde_json::{Value, json};
use telehook_emulator::{Chat, User};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Hook {
    /// (update_id, chat id, secret header) in arrival order.
    seen: Vec<(u64, i64, Option<String>)>,
    /// Chats with a delivery in progress, and the most seen at once per chat.
    in_flight: HashMap<i64, u32>,
    overlap: bool,
    /// Attempts per update_id.
    attempts: HashMap<u64, u32>,
}

/// A local webhook: the first attempt of every update answers 500, the second one answers 200
/// with a webhook reply echoing the text.
async fn hook(State(state): State<Arc<Mutex<Hook>>>, headers: HeaderMap, body: Bytes) -> Response {
    let update: Value = serde_json::from_slice(&body).unwrap();
    let id = update["update_id"].as_u64().unwrap();
    let chat = update["message"]["chat"]["id"].as_i64().unwrap();
    let attempt = {
        let mut s = state.lock().unwrap();
        let secret = headers
            .get("x-telegram-bot-api-secret-token")
            .map(|v| v.to_str().unwrap().to_owned());
        s.seen.push((id, chat, secret));
        let n = s.in_flight.entry(chat).or_default();
        *n += 1;
        if *n > 1 {
            s.overlap = true;
        }
        let a = s.attempts.entry(id).or_default();
        *a += 1;
        *a
    };
    // Long enough for a second delivery of the same chat to overlap if the bridge allowed it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    *state.lock().unwrap().in_flight.get_mut(&chat).unwrap() -= 1;
    if attempt == 1 {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let text = update["message"]["text"].as_str().unwrap();
    axum::Json(json!({"method": "sendMessage", "chat_id": chat, "text": format!("echo: {text}")}))
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_refuses_while_a_webhook_is_set() {
    let (emulator, bot) = emulator().await;
    let url = emulator.base_url();
    telehook(
        &url,
        Some(TOKEN),
        &["webhook", "set", "http://127.0.0.1:9/prod"],
    )
    .await;
    let output = telehook(
        &url,
        Some(TOKEN),
        &["dev", "--to", "http://127.0.0.1:9/local"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("a webhook is set (http://127.0.0.1:9/prod)"),
        "{err}"
    );
    assert!(err.contains("--take-over"), "{err}");
    assert_no_token(&output);
    assert!(bot.calls_to("deleteWebhook").is_empty(), "nothing deleted");
    assert_eq!(bot.webhook_info()["url"], "http://127.0.0.1:9/prod");
}

/// Without --take-over, dev never calls deleteWebhook (so a webhook set between its check and
/// its polling is not deleted): a webhook set while it runs stops it with the 409 Conflict,
/// and stays set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_never_deletes_a_webhook_set_after_its_check() {
    let (emulator, bot) = emulator().await;
    let url = emulator.base_url();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_telehook"))
        .args(["dev", "--to", "http://127.0.0.1:9/local"])
        .args(["--poll-timeout-secs", "30"])
        .env("TELEHOOK_API_URL", &url)
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    bot.wait_for_long_poll(WAIT).await.unwrap();
    assert!(
        bot.calls_to("deleteWebhook").is_empty(),
        "dev called deleteWebhook without --take-over"
    );
    telehook(
        &url,
        Some(TOKEN),
        &["webhook", "set", "http://127.0.0.1:9/prod"],
    )
    .await;
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("dev stops")
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("409 Conflict"), "{err}");
    assert_no_token(&output);
    assert!(bot.calls_to("deleteWebhook").is_empty(), "nothing deleted");
    assert_eq!(bot.webhook_info()["url"], "http://127.0.0.1:9/prod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_bridges_updates_like_telegram() {
    let (emulator, bot) = emulator().await;
    let url = emulator.base_url();
    let state = Arc::new(Mutex::new(Hook::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = format!("http://{}/telegram", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/telegram", post(hook))
        .with_state(Arc::clone(&state));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // A webhook is set (production): --take-over deletes it, keeping its pending updates.
    telehook(
        &url,
        Some(TOKEN),
        &["webhook", "set", "http://127.0.0.1:9/prod"],
    )
    .await;
    let (ann, bob) = (User::new(1, "Ann"), User::new(2, "Bob"));
    bot.private_text(&ann, "a1");

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_telehook"))
        .args([
            "dev",
            "--to",
            &local,
            "--take-over",
            "--secret-token-env",
            "DEV_SECRET",
        ])
        .args(["--retry-delay-ms", "10", "--poll-timeout-secs", "1"])
        .env("TELEHOOK_API_URL", &url)
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("DEV_SECRET", "local_Secret-1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    bot.private_text(&ann, "a2");
    bot.private_text(&bob, "b1");
    bot.private_text(&ann, "a3");
    bot.send_text(&Chat::private(&bob), &bob, "b2");

    let sent = bot.wait_for_calls_to("sendMessage", 5, WAIT).await.unwrap();
    let mut texts: Vec<String> = sent.iter().filter_map(|c| c.text()).collect();
    texts.sort();
    assert_eq!(
        texts,
        ["echo: a1", "echo: a2", "echo: a3", "echo: b1", "echo: b2"]
    );

    let pid = child.id().unwrap().to_string();
    tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let output = tokio::time::timeout(WAIT, async {
        let status = child.wait().await.unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        use tokio::io::AsyncReadExt;
        child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_end(&mut err)
            .await
            .unwrap();
        std::process::Output {
            status,
            stdout: out,
            stderr: err,
        }
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_no_token(&output);
    assert!(!stderr(&output).contains("local_Secret"), "secret printed");

    let s = state.lock().unwrap();
    assert!(
        !s.overlap,
        "two deliveries of one chat were in flight at once"
    );
    assert!(
        s.seen
            .iter()
            .all(|(_, _, secret)| secret.as_deref() == Some("local_Secret-1"))
    );
    // Every update: a failed attempt (500), then a delivered one.
    assert!(s.attempts.values().all(|&n| n == 2), "{:?}", s.attempts);
    // Per chat, updates arrive in update_id order, retries included.
    for chat in [1, 2] {
        let ids: Vec<u64> = s
            .seen
            .iter()
            .filter(|(_, c, _)| *c == chat)
            .map(|(id, ..)| *id)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] <= w[1]), "chat {chat}: {ids:?}");
    }
    assert_eq!(bot.webhook_info()["url"], "", "taken over");
}
