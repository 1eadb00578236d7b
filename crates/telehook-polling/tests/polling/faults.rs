//! Faults and conflicts: rate limits, server errors and dropped connections that polling
//! survives, and the token and conflict errors that stop it.

use std::sync::Arc;
use std::time::Duration;

use telehook_api::Bot;
use telehook_core::{Context, HandlerError, Update};
use telehook_emulator::Fault;
use telehook_polling::{ConflictCause, Polling, PollingError};
use tokio::sync::Notify;

use crate::{Log, TOKEN, emulator, inject_round_robin, polling};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_server_errors_and_dropped_connections_are_survived() {
    let (emu, tg) = emulator().await;
    tg.inject_fault("getUpdates", 1, Fault::TooManyRequests { retry_after: 1 });
    tg.inject_fault(
        "getUpdates",
        2,
        Fault::Error {
            error_code: 502,
            description: "Bad Gateway".into(),
        },
    );
    tg.inject_fault("getUpdates", 2, Fault::DropConnection);
    let injected = inject_round_robin(&tg, 3, 20);
    let log = Log::default();
    let (handler_log, stop_log) = (log.clone(), log.clone());
    let started = std::time::Instant::now();
    polling(&emu)
        .run(
            move |update: Update, _ctx: Context| {
                let log = handler_log.clone();
                async move {
                    log.handle(&update, Duration::ZERO).await;
                    Ok::<_, HandlerError>(())
                }
            },
            async move { stop_log.wait_for(20).await },
        )
        .await
        .expect("polling recovers");
    let mut ids = log.ids();
    ids.sort_unstable();
    assert_eq!(ids, injected);
    // retry_after is honoured: nothing could be fetched for the first second.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry_after was not honoured"
    );
    let get_updates = tg.calls_to("getUpdates").len();
    assert!(
        get_updates >= 6,
        "the five faults should each have cost a call, saw {get_updates}"
    );
}

#[tokio::test]
async fn a_wrong_token_stops_with_unauthorized() {
    let (emu, _tg) = emulator().await;
    let bot = Bot::builder("999:not-a-known-token")
        .base_url(emu.base_url())
        .build();
    let result = Polling::new(bot)
        .run(
            |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
            std::future::pending(),
        )
        .await;
    let error = result.expect_err("401 must stop polling");
    assert!(matches!(error, PollingError::Unauthorized), "{error:?}");
    assert!(error.to_string().contains("BotFather"), "{error}");
    assert!(
        !format!("{error:?}").contains("not-a-known-token"),
        "the token leaked into the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_poller_stops_the_first_with_other_instance_conflict() {
    let (emu, _tg) = emulator().await;
    let first = tokio::spawn(polling(&emu).run(
        |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
        std::future::pending(),
    ));
    emu.bot(TOKEN)
        .unwrap()
        .wait_for_long_poll(Duration::from_secs(10))
        .await
        .expect("first poller waiting");
    let stop_second = Arc::new(Notify::new());
    let stopper = stop_second.clone();
    let second = tokio::spawn(polling(&emu).run(
        |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
        async move { stopper.notified().await },
    ));
    let error = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("first stops")
        .unwrap()
        .unwrap_err();
    match &error {
        PollingError::Conflict {
            cause: ConflictCause::OtherInstance,
            ..
        } => {}
        other => panic!("expected OtherInstance conflict, got {other:?}"),
    }
    assert!(error.to_string().contains("only one instance"), "{error}");
    stop_second.notify_one();
    second
        .await
        .unwrap()
        .expect("the second poller stops cleanly");
}

/// `delete_webhook_at_start(false)`: a webhook that is set stays set, and `run` stops at once
/// with the webhook conflict (what `telehook dev` relies on without `--take-over`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_delete_at_start_a_set_webhook_is_kept_and_polling_stops_with_conflict() {
    let (emu, _tg) = emulator().await;
    let bot = Bot::builder(TOKEN).base_url(emu.base_url()).build();
    bot.set_webhook(&telehook_api::SetWebhook::new("http://127.0.0.1:9/prod"))
        .await
        .expect("setWebhook");
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        polling(&emu).delete_webhook_at_start(false).run(
            |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
            std::future::pending(),
        ),
    )
    .await
    .expect("polling stops")
    .unwrap_err();
    assert!(
        matches!(
            error,
            PollingError::Conflict {
                cause: ConflictCause::WebhookActive,
                ..
            }
        ),
        "{error:?}"
    );
    let info = bot.get_webhook_info().await.expect("getWebhookInfo");
    assert_eq!(
        info.url, "http://127.0.0.1:9/prod",
        "the webhook was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_set_while_polling_stops_with_webhook_conflict() {
    let (emu, tg) = emulator().await;
    let poller = tokio::spawn(polling(&emu).run(
        |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
        std::future::pending(),
    ));
    tg.wait_for_long_poll(Duration::from_secs(10))
        .await
        .expect("poller waiting");
    let bot = Bot::builder(TOKEN).base_url(emu.base_url()).build();
    bot.set_webhook(&telehook_api::SetWebhook::new(
        "http://127.0.0.1:9/telegram",
    ))
    .await
    .expect("setWebhook");
    let error = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .expect("poller stops")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            error,
            PollingError::Conflict {
                cause: ConflictCause::WebhookActive,
                ..
            }
        ),
        "{error:?}"
    );
}
