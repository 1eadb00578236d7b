//! The relay client feeds the webhook's `UpdateHandler`, keeps `ts` across restarts and
//! retries with backoff.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Http, TempDir, TestRelay, test_config, update};
use telehook_core::{Context, HandlerError, Update};
use telehook_relay::{Notifier, RelayClient, SqliteStore, StoreLimits};
use tokio::sync::{mpsc, oneshot};

fn collecting_handler(
    tx: mpsc::UnboundedSender<u64>,
) -> impl Fn(Update, Context) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    move |update: Update, ctx: Context| {
        assert_eq!(update.update_id(), ctx.update_id());
        let _ = tx.send(update.update_id());
        std::future::ready(Ok(()))
    }
}

async fn recv_n(rx: &mut mpsc::UnboundedReceiver<u64>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(
            tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("update in time")
                .unwrap(),
        );
    }
    got
}

#[tokio::test]
async fn client_hands_updates_to_the_handler_in_order_and_resumes_after_restart() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let state = TempDir::new("client");
    let state_file = state.path().join("ts");
    for i in 1..=3 {
        http.post(&relay.url("/bot"), &update(i)).await;
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let client = RelayClient::new(&relay.url(""), "bot")
        .unwrap()
        .state_file(&state_file)
        .sleep(Duration::from_secs(5));
    let run = tokio::spawn(client.run(collecting_handler(tx), async move {
        let _ = stopped.await;
    }));
    assert_eq!(recv_n(&mut rx, 3).await, [1, 2, 3]);
    http.post(&relay.url("/bot"), &update(4)).await;
    assert_eq!(recv_n(&mut rx, 1).await, [4]);
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), "4");

    // Updates posted while the bot is down are delivered once after restart, none twice.
    http.post(&relay.url("/bot"), &update(5)).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let client = RelayClient::new(&relay.url(""), "bot")
        .unwrap()
        .state_file(&state_file)
        .sleep(Duration::from_secs(5));
    let run = tokio::spawn(client.run(collecting_handler(tx), async move {
        let _ = stopped.await;
    }));
    assert_eq!(recv_n(&mut rx, 1).await, [5]);
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err(), "nothing delivered twice");
}

#[tokio::test]
async fn client_retries_with_backoff_until_the_relay_is_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let client = RelayClient::new(&format!("http://127.0.0.1:{port}"), "bot")
        .unwrap()
        .sleep(Duration::from_secs(5))
        .backoff(Duration::from_millis(20), Duration::from_millis(200));
    let run = tokio::spawn(client.run(collecting_handler(tx), async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The relay comes up late on the port the client keeps trying.
    let dir = TempDir::new("late");
    let store = SqliteStore::open(
        dir.path(),
        StoreLimits::default(),
        Arc::new(Notifier::new(100, 100)),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let relay = telehook_relay::Relay::new(Arc::new(store), test_config());
    tokio::spawn(relay.serve(listener, std::future::pending()));
    Http::new()
        .post(&format!("http://127.0.0.1:{port}/bot"), &update(7))
        .await;
    assert_eq!(recv_n(&mut rx, 1).await, [7]);
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn client_stops_on_a_wrong_token() {
    let mut access = telehook_relay::AccessConfig::default();
    access.channels.insert(
        "bot".into(),
        telehook_relay::ChannelAccess {
            read_token: Some("right".into()),
            write_token: None,
        },
    );
    let relay = TestRelay::sqlite(telehook_relay::RelayConfig {
        access,
        ..test_config()
    })
    .await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let client = RelayClient::new(&relay.url(""), "bot")
        .unwrap()
        .read_token("wrong");
    let result = client
        .run(collecting_handler(tx), std::future::pending())
        .await;
    assert!(
        matches!(result, Err(telehook_relay::ClientError::Status { status, .. }) if status == 401)
    );
}

/// Telegram sends an update again when the relay answered late; the relay stores it once and
/// the client (whose runner also skips an update it already took) handles it once.
#[tokio::test]
async fn a_duplicate_post_is_handled_once() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    http.post(&relay.url("/bot"), &update(1)).await;
    http.post(&relay.url("/bot"), &update(1)).await;
    http.post(&relay.url("/bot"), &update(2)).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let client = RelayClient::new(&relay.url(""), "bot")
        .unwrap()
        .sleep(Duration::from_secs(5));
    let run = tokio::spawn(client.run(collecting_handler(tx), async move {
        let _ = stopped.await;
    }));
    assert_eq!(recv_n(&mut rx, 2).await, [1, 2]);
    stop.send(()).unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.run.handled, 2);
    assert!(rx.try_recv().is_err(), "the duplicate was handled");
}

/// The client resumes with a `ts` above the channel's count (the relay's storage was
/// replaced): the relay answers from the start with `"reset":true`, and the client handles
/// what is stored, reports the restart, and saves the new `ts`. Before, it adopted the lower
/// count and skipped the stored updates.
#[tokio::test]
async fn a_ts_above_the_count_reads_the_channel_from_the_start() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    http.post(&relay.url("/bot"), &update(1)).await;
    http.post(&relay.url("/bot"), &update(2)).await;
    let state = TempDir::new("client-reset");
    let state_file = state.path().join("ts");
    std::fs::write(&state_file, "50").unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let client = RelayClient::new(&relay.url(""), "bot")
        .unwrap()
        .state_file(&state_file)
        .sleep(Duration::from_secs(5));
    let run = tokio::spawn(client.run(collecting_handler(tx), async move {
        let _ = stopped.await;
    }));
    assert_eq!(recv_n(&mut rx, 2).await, [1, 2]);
    stop.send(()).unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.count_restarts, 1);
    assert_eq!(report.ts, 2);
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), "2");
}
