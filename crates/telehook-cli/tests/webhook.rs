//! `telehook webhook set|info|delete` against the emulator.

mod common;

use std::time::Duration;

use common::{TOKEN, assert_no_token, emulator, stderr, stdout, telehook};
use telehook_emulator::User;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_sends_every_setting_quietly_when_piped() {
    let (emulator, bot) = emulator().await;
    let dir = std::env::temp_dir().join(format!("telehook-cli-set-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, "s3cret_VALUE-123\n").unwrap();

    let output = telehook(
        &emulator.base_url(),
        Some(TOKEN),
        &[
            "webhook",
            "set",
            "http://127.0.0.1:9/telegram",
            "--secret-token-file",
            secret_file.to_str().unwrap(),
            "--max-connections",
            "7",
            "--allowed-updates",
            "message,callback_query",
            "--drop-pending-updates",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "", "piped: nothing on stdout");
    assert!(!stderr(&output).contains("s3cret_VALUE"), "secret echoed");
    assert_no_token(&output);

    let call = bot.calls_to("setWebhook").pop().expect("setWebhook called");
    assert_eq!(
        call.param_str("url").as_deref(),
        Some("http://127.0.0.1:9/telegram")
    );
    assert_eq!(
        call.param_str("secret_token").as_deref(),
        Some("s3cret_VALUE-123")
    );
    let info = bot.webhook_info();
    assert_eq!(info["max_connections"], 7);
    assert_eq!(
        info["allowed_updates"],
        serde_json::json!(["message", "callback_query"])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_refuses_a_bad_secret_without_showing_it() {
    let (emulator, bot) = emulator().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_telehook"))
        .args([
            "webhook",
            "set",
            "http://127.0.0.1:9/t",
            "--secret-token-env",
            "MY_SECRET",
        ])
        .env("TELEHOOK_API_URL", emulator.base_url())
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("MY_SECRET", "has spaces/and=stuff")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("secret_token") && err.contains("MY_SECRET"),
        "{err}"
    );
    assert!(!err.contains("has spaces"), "secret echoed: {err}");
    assert!(bot.calls_to("setWebhook").is_empty(), "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_prints_the_last_error_and_its_age() {
    let (emulator, bot) = emulator().await;
    // A webhook on a port nothing listens on: the delivery fails, Telegram-style.
    let output = telehook(
        &emulator.base_url(),
        Some(TOKEN),
        &["webhook", "set", "http://127.0.0.1:9/hook"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    bot.private_text(&User::new(42, "Ann"), "hi");
    bot.wait_for_deliveries(1, Duration::from_secs(10))
        .await
        .unwrap();

    let output = telehook(&emulator.base_url(), Some(TOKEN), &["webhook", "info"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("url:                http://127.0.0.1:9/hook\n"),
        "{text}"
    );
    assert!(text.contains("pending updates:    1\n"), "{text}");
    let last_error = text.lines().find(|l| l.starts_with("last error:")).unwrap();
    assert!(last_error.ends_with("s ago)"), "{text}");
    assert!(!last_error.contains("none"), "{text}");
    assert!(text.contains("max connections:    40\n"), "{text}");
    assert!(text.contains("ip address:"), "{text}");
    assert_no_token(&output);

    let output = telehook(
        &emulator.base_url(),
        Some(TOKEN),
        &["webhook", "info", "--json"],
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["url"], "http://127.0.0.1:9/hook");
    assert_eq!(json["pending_update_count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_expect_url_is_a_deploy_check() {
    let (emulator, _bot) = emulator().await;
    let url = emulator.base_url();
    let set = telehook(
        &url,
        Some(TOKEN),
        &["webhook", "set", "http://127.0.0.1:9/blue"],
    )
    .await;
    assert!(set.status.success());

    let same = telehook(
        &url,
        Some(TOKEN),
        &["webhook", "info", "--expect-url", "http://127.0.0.1:9/blue"],
    )
    .await;
    assert_eq!(same.status.code(), Some(0), "{}", stderr(&same));

    let other = telehook(
        &url,
        Some(TOKEN),
        &[
            "webhook",
            "info",
            "--expect-url",
            "http://127.0.0.1:9/green",
        ],
    )
    .await;
    assert_eq!(other.status.code(), Some(3));
    let err = stderr(&other);
    assert!(
        err.contains("the webhook is http://127.0.0.1:9/blue, expected http://127.0.0.1:9/green"),
        "{err}"
    );
    assert_no_token(&other);

    let none = telehook(&url, Some(TOKEN), &["webhook", "info", "--expect-url", ""]).await;
    assert_eq!(
        none.status.code(),
        Some(3),
        "a webhook is set, none expected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_webhook_only_when_asked() {
    let (emulator, bot) = emulator().await;
    let url = emulator.base_url();
    telehook(
        &url,
        Some(TOKEN),
        &["webhook", "set", "http://127.0.0.1:9/x"],
    )
    .await;
    // Neither `set` nor `info` deletes anything.
    telehook(&url, Some(TOKEN), &["webhook", "info"]).await;
    assert!(bot.calls_to("deleteWebhook").is_empty());
    assert_eq!(bot.webhook_info()["url"], "http://127.0.0.1:9/x");

    let output = telehook(
        &url,
        Some(TOKEN),
        &["webhook", "delete", "--drop-pending-updates"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    assert_eq!(bot.webhook_info()["url"], "");
    let output = telehook(&url, Some(TOKEN), &["webhook", "info", "--expect-url", ""]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_comes_from_a_file_or_the_environment_and_is_never_shown() {
    let (emulator, _bot) = emulator().await;
    let url = emulator.base_url();

    // Missing: a clear message, exit 1.
    let output = telehook(&url, None, &["webhook", "info"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no bot token: set TELEGRAM_BOT_TOKEN or pass --token-file"));

    // From a file, with its trailing newline.
    let file = std::env::temp_dir().join(format!("telehook-cli-token-{}", std::process::id()));
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let output = telehook(
        &url,
        None,
        &["webhook", "info", "--token-file", file.to_str().unwrap()],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_no_token(&output);
    std::fs::remove_file(&file).unwrap();

    // A token the server refuses (401): the error names the method, not the token.
    let wrong = "111111:WRONGtokenABC";
    let output = telehook(&url, Some(wrong), &["webhook", "info"]).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("getWebhookInfo failed"), "{err}");
    assert!(!err.contains("WRONGtokenABC"), "token leaked: {err}");

    // Nothing listening: a network error, which must not carry the URL (it holds the token).
    let output = telehook("http://127.0.0.1:9", Some(TOKEN), &["webhook", "info"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("network error"),
        "{}",
        stderr(&output)
    );
    assert_no_token(&output);

    // Malformed: refused before any call, value not shown.
    let output = telehook(&url, Some("not a token at all"), &["webhook", "info"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(!stderr(&output).contains("not a token at all"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_not_in_trace_logs_either() {
    let (emulator, _bot) = emulator().await;
    for api_url in [emulator.base_url(), "http://127.0.0.1:9".to_owned()] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_telehook"))
            .args(["webhook", "info"])
            .env("TELEHOOK_API_URL", &api_url)
            .env("TELEGRAM_BOT_TOKEN", TOKEN)
            .env("RUST_LOG", "trace")
            .output()
            .await
            .unwrap();
        assert!(!output.stderr.is_empty(), "trace logs were written");
        assert_no_token(&output);
    }
}
