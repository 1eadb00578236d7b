//! Server-Sent Events and WebSocket: replay, then live, resumable without gaps or duplicates.

mod common;

use std::time::Duration;

use common::{Http, SseReader, TestRelay, test_config};
use futures_util::{SinkExt, StreamExt};
use telehook_relay::{ChannelName, RelayConfig, Retention, StoreLimits};
use tokio_tungstenite::tungstenite::Message;

async fn post_n(
    http: &Http,
    relay: &TestRelay,
    channel: &str,
    range: std::ops::RangeInclusive<u64>,
) {
    for i in range {
        let answer = http
            .post(
                &relay.url(&format!("/{channel}")),
                &format!(r#"{{"i":{i}}}"#),
            )
            .await;
        assert_eq!(answer.headers["x-total-updates"], i.to_string().as_str());
    }
}

async fn wait_for_waiter(relay: &TestRelay, channel: &str) {
    let channel = ChannelName::parse(channel).unwrap();
    while relay.relay.store().notifier().waiters(&channel) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn sse_replays_then_streams_live_with_ids() {
    let relay = TestRelay::sqlite(RelayConfig {
        max_updates_per_response: 2,
        ..test_config()
    })
    .await;
    let http = Http::new();
    post_n(&http, &relay, "c", 1..=3).await;
    let response = http
        .open(&relay.url("/c?ts=1"), &[("accept", "text/event-stream")])
        .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = SseReader::new(response);
    for i in 2..=3u64 {
        let event = events.next().await.unwrap();
        assert_eq!(
            (event.id.as_deref(), event.data.as_str()),
            (
                Some(i.to_string().as_str()),
                format!(r#"{{"i":{i}}}"#).as_str()
            )
        );
    }
    post_n(&http, &relay, "c", 4..=6).await;
    for i in 4..=6u64 {
        let event = events.next().await.unwrap();
        assert_eq!(event.id, Some(i.to_string()));
        assert_eq!(event.data, format!(r#"{{"i":{i}}}"#));
    }
}

#[tokio::test]
async fn sse_resumes_from_last_event_id_without_gaps_or_duplicates() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    post_n(&http, &relay, "c", 1..=2).await;
    let mut first = SseReader::new(
        http.open(&relay.url("/c"), &[("accept", "text/event-stream")])
            .await,
    );
    let mut last_id = String::new();
    for _ in 1..=2 {
        last_id = first.next().await.unwrap().id.unwrap();
    }
    drop(first);
    // Updates arrive while the client is away.
    post_n(&http, &relay, "c", 3..=4).await;
    let mut second = SseReader::new(
        http.open(
            &relay.url("/c?ts=0"),
            &[("accept", "text/event-stream"), ("last-event-id", &last_id)],
        )
        .await,
    );
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(second.next().await.unwrap().id.unwrap());
    }
    wait_for_waiter(&relay, "c").await;
    post_n(&http, &relay, "c", 5..=5).await;
    seen.push(second.next().await.unwrap().id.unwrap());
    assert_eq!(seen, ["3", "4", "5"]);
}

#[tokio::test]
async fn sse_reports_updates_dropped_by_retention() {
    let limits = StoreLimits {
        retention: Retention {
            max_updates: 2,
            ..Retention::default()
        },
        ..StoreLimits::default()
    };
    let relay = TestRelay::sqlite_with(test_config(), limits).await;
    let http = Http::new();
    post_n(&http, &relay, "c", 1..=4).await;
    let mut events = SseReader::new(
        http.open(&relay.url("/c?ts=0"), &[("accept", "text/event-stream")])
            .await,
    );
    let missed = events.next().await.unwrap();
    assert_eq!(missed.event.as_deref(), Some("missed"));
    assert_eq!(missed.data, r#"{"missed":2,"ts":2}"#);
    assert_eq!(events.next().await.unwrap().id.as_deref(), Some("3"));
}

async fn ws_connect(
    relay: &TestRelay,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", relay.addr))
        .await
        .unwrap();
    socket
}

async fn ws_next(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> serde_json::Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("message in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn websocket_subscribe_replays_from_ts_then_pushes_live() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    post_n(&http, &relay, "c", 1..=3).await;
    let mut socket = ws_connect(&relay).await;
    socket
        .send(Message::Text(
            r#"{"command":"subscribe","channel":"c","ts":1}"#.into(),
        ))
        .await
        .unwrap();
    assert_eq!(
        ws_next(&mut socket).await,
        serde_json::json!({"ok":true,"command":"subscribe","channel":"c","ts":1})
    );
    for i in 2..=3 {
        assert_eq!(
            ws_next(&mut socket).await,
            serde_json::json!({"channel":"c","ts":i,"update":{"i":i}})
        );
    }
    wait_for_waiter(&relay, "c").await;
    post_n(&http, &relay, "c", 4..=5).await;
    for i in 4..=5 {
        assert_eq!(
            ws_next(&mut socket).await,
            serde_json::json!({"channel":"c","ts":i,"update":{"i":i}})
        );
    }
}

#[tokio::test]
async fn websocket_resume_after_reconnect_has_no_gaps_or_duplicates() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let mut socket = ws_connect(&relay).await;
    socket
        .send(Message::Text(
            r#"{"command":"subscribe","channel":"c","ts":0}"#.into(),
        ))
        .await
        .unwrap();
    ws_next(&mut socket).await;
    wait_for_waiter(&relay, "c").await;
    post_n(&http, &relay, "c", 1..=3).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(ws_next(&mut socket).await["ts"].as_u64().unwrap());
    }
    drop(socket);
    post_n(&http, &relay, "c", 4..=5).await;
    let mut socket = ws_connect(&relay).await;
    let resume = format!(
        r#"{{"command":"subscribe","channel":"c","ts":{}}}"#,
        seen.last().unwrap()
    );
    socket.send(Message::Text(resume.into())).await.unwrap();
    ws_next(&mut socket).await;
    for _ in 0..2 {
        seen.push(ws_next(&mut socket).await["ts"].as_u64().unwrap());
    }
    assert_eq!(seen, [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn websocket_bad_commands_get_json_errors_and_the_socket_stays_open() {
    let relay = TestRelay::sqlite(test_config()).await;
    let mut socket = ws_connect(&relay).await;
    for bad in [
        "nope",
        r#"{"command":"subscribe","channel":"a/b"}"#,
        r#"{"command":"dance","channel":"c"}"#,
    ] {
        socket.send(Message::Text(bad.into())).await.unwrap();
        let reply = ws_next(&mut socket).await;
        assert_eq!(
            (reply["ok"].clone(), reply["error_code"].clone()),
            (serde_json::json!(false), serde_json::json!(400))
        );
    }
    socket
        .send(Message::Text(
            r#"{"command":"subscribe","channel":"c"}"#.into(),
        ))
        .await
        .unwrap();
    assert_eq!(ws_next(&mut socket).await["ok"], true);
}

#[tokio::test]
async fn websocket_binary_frames_get_an_error_and_oversized_messages_a_1009_close() {
    let relay = TestRelay::sqlite(RelayConfig {
        ws_max_message_bytes: 1024,
        ..test_config()
    })
    .await;
    let mut socket = ws_connect(&relay).await;
    socket
        .send(Message::Binary(b"{}".to_vec().into()))
        .await
        .unwrap();
    let error = ws_next(&mut socket).await;
    assert_eq!(error["ok"], false, "{error}");
    assert_eq!(error["error_code"], 400, "{error}");
    socket
        .send(Message::Text("x".repeat(4096).into()))
        .await
        .unwrap();
    let close = loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("close in time")
            .expect("a close frame before the end")
            .unwrap();
        if let Message::Close(frame) = message {
            break frame;
        }
    };
    let frame = close.expect("close frame with a code");
    assert_eq!(u16::from(frame.code), 1009, "{frame:?}");
}
