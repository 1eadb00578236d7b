//! One POST wakes every waiting client.

mod common;

use std::time::Duration;

use common::{Http, TestRelay, test_config};
use telehook_relay::ChannelName;

const WAITERS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_post_wakes_a_thousand_waiting_gets() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let channel = ChannelName::parse("crowd").unwrap();
    let mut waiters = tokio::task::JoinSet::new();
    for _ in 0..WAITERS {
        let client = http.clone();
        let url = relay.url("/crowd?ts=0&sleep=60");
        waiters.spawn(async move { client.get(&url).await });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while relay.relay.store().notifier().waiters(&channel) < WAITERS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiters did not all arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = http.post(&relay.url("/crowd"), r#"{"wake":true}"#).await;
    assert_eq!(answer.status, http::StatusCode::OK);
    let mut woken = 0;
    while let Some(answer) = tokio::time::timeout(Duration::from_secs(50), waiters.join_next())
        .await
        .expect("all answer well before sleep ends")
    {
        let answer = answer.unwrap();
        assert_eq!(
            answer.body,
            r#"{"ok":true,"ts":1,"updates":[{"wake":true}]}"#
        );
        woken += 1;
    }
    assert_eq!(woken, WAITERS);
}
