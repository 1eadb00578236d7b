//! The same handler answers by webhook reply in webhook mode and over HTTP in polling mode.

use std::time::Duration;

use telehook_emulator::{Emulator, Route, Timing, User};
use webhook_or_polling::Mode;

const TOKEN: &str = "55:modes";

async fn echo_once(mode_for: impl FnOnce(&Emulator) -> Mode) -> Route {
    let emu = Emulator::builder()
        .bot(TOKEN)
        .timing(Timing::scaled(0.01))
        .start()
        .await
        .unwrap();
    let tg = emu.bot(TOKEN).unwrap();
    let bot = telehook_api::Bot::builder(TOKEN)
        .base_url(emu.base_url())
        .build();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(webhook_or_polling::run(bot, mode_for(&emu), async {
        let _ = stop_rx.await;
    }));
    // Wait until the bot is receiving (webhook set, or a getUpdates parked).
    tokio::time::timeout(Duration::from_secs(10), async {
        while tg.webhook_info()["url"].as_str().unwrap_or("").is_empty()
            && tg
                .wait_for_long_poll(Duration::from_millis(20))
                .await
                .is_err()
        {}
    })
    .await
    .expect("the bot started receiving");
    tg.private_text(&User::new(8, "M"), "same handler");
    let calls = tg
        .wait_for_calls_to("sendMessage", 1, Duration::from_secs(10))
        .await
        .expect("echo");
    assert_eq!(calls[0].params["text"], "same handler");
    let _ = stop_tx.send(());
    running.await.unwrap().unwrap();
    calls[0].route
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_mode_echoes_over_http() {
    assert_eq!(echo_once(|_| Mode::Polling).await, Route::Http);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_echoes_by_webhook_reply() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = listener.local_addr().unwrap();
    drop(listener);
    let route = echo_once(|_| Mode::Webhook {
        listen,
        public_url: format!("http://{listen}"),
        secret: "modes_secret".into(),
    })
    .await;
    assert!(matches!(route, Route::WebhookReply { .. }), "{route:?}");
}
