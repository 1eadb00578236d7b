//! `telehook relay-forward`: updates stored in a relay channel (a real relay, in this process)
//! are delivered to a local webhook on loopback as `telehook dev` delivers them.

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
use common::{TOKEN, assert_no_token, emulator, stderr};
use serde_json::{Value, json};
use telehook_relay::{Notifier, Relay, RelayConfig, SqliteStore, StoreLimits};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Hook {
    /// (update_id, secret header) in arrival order, retries included.
    seen: Vec<(u64, Option<String>)>,
    /// Attempts per update_id.
    attempts: HashMap<u64, u32>,
}

/// The first attempt of update 2 answers 500; every other attempt answers 200 with a webhook
/// reply echoing the text.
async fn hook(State(state): State<Arc<Mutex<Hook>>>, headers: HeaderMap, body: Bytes) -> Response {
    let update: Value = serde_json::from_slice(&body).unwrap();
    let id = update["update_id"].as_u64().unwrap();
    let attempt = {
        let mut s = state.lock().unwrap();
        let secret = headers
            .get("x-telegram-bot-api-secret-token")
            .map(|v| v.to_str().unwrap().to_owned());
        s.seen.push((id, secret));
        let a = s.attempts.entry(id).or_default();
        *a += 1;
        *a
    };
    if id == 2 && attempt == 1 {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let chat = update["message"]["chat"]["id"].as_i64().unwrap();
    let text = update["message"]["text"].as_str().unwrap();
    axum::Json(json!({"method": "sendMessage", "chat_id": chat, "text": format!("echo: {text}")}))
        .into_response()
}

fn stored_update(id: u64) -> String {
    json!({
        "update_id": id,
        "message": {
            "message_id": id,
            "date": 1_700_000_000,
            "chat": {"id": 1, "type": "private", "first_name": "Ann"},
            "from": {"id": 1, "is_bot": false, "first_name": "Ann"},
            "text": format!("m{id}")
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_forward_delivers_a_channel_in_order_with_the_secret_and_retries() {
    // The relay, with a SQLite store in a fresh directory.
    let dir = std::env::temp_dir().join(format!("telehook-cli-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = RelayConfig {
        rate_limit: None,
        ..RelayConfig::default()
    };
    let notifier = Arc::new(Notifier::new(config.max_waiters_per_channel, 1_000));
    let store = SqliteStore::open(&dir, StoreLimits::default(), notifier).unwrap();
    let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}", relay_listener.local_addr().unwrap());
    tokio::spawn(Relay::new(Arc::new(store), config).serve(relay_listener, std::future::pending()));

    // The local webhook.
    let state = Arc::new(Mutex::new(Hook::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = format!("http://{}/telegram", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/telegram", post(hook))
        .with_state(Arc::clone(&state));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The emulator executes the webhook replies.
    let (emulator, bot) = emulator().await;

    // Telegram's webhook posts to the relay channel.
    let http = reqwest::Client::new();
    for id in 1..=3 {
        let answer = http
            .post(format!("{relay_url}/bot"))
            .header("content-type", "application/json")
            .body(stored_update(id))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
    }

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_telehook"))
        .args(["relay-forward", "--from", &format!("{relay_url}/bot")])
        .args(["--to", &local, "--secret-token-env", "DEV_SECRET"])
        .args(["--retry-delay-ms", "10", "--poll-timeout-secs", "1"])
        .env("TELEHOOK_API_URL", emulator.base_url())
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("DEV_SECRET", "relay_Secret-1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let sent = bot.wait_for_calls_to("sendMessage", 3, WAIT).await.unwrap();
    let texts: Vec<String> = sent.iter().filter_map(|c| c.text()).collect();
    assert_eq!(texts, ["echo: m1", "echo: m2", "echo: m3"]);

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
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_no_token(&output);
    assert!(!stderr(&output).contains("relay_Secret"), "secret printed");

    let s = state.lock().unwrap();
    let ids: Vec<u64> = s.seen.iter().map(|(id, _)| *id).collect();
    // In order; update 2 failed once and was retried before update 3 (same chat).
    assert_eq!(ids, [1, 2, 2, 3]);
    assert!(
        s.seen
            .iter()
            .all(|(_, secret)| secret.as_deref() == Some("relay_Secret-1"))
    );
}
