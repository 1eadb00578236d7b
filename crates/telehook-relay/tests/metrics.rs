//! `telehook_relay_queue_depth`: long polls waiting, seen by a real recorder (metrics-util's
//! `DebuggingRecorder`, installed globally in this test binary) on a real relay.

mod common;

use std::time::Duration;

use common::{Http, TestRelay, test_config, update};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use telehook_relay::metric_names::RELAY_QUEUE_DEPTH;

/// The gauge's value, checking it has no labels (0 before it is first set).
fn depth(snapshotter: &Snapshotter) -> f64 {
    let mut value = 0.0;
    for (key, _, _, v) in snapshotter.snapshot().into_vec() {
        if key.key().name() == RELAY_QUEUE_DEPTH {
            assert_eq!(key.key().labels().count(), 0, "no per-channel label");
            match v {
                DebugValue::Gauge(g) => value = g.into_inner(),
                other => panic!("{RELAY_QUEUE_DEPTH} is not a gauge: {other:?}"),
            }
        }
    }
    value
}

/// Waits (bounded) until the gauge reads `want`.
async fn wait_depth(snapshotter: &Snapshotter, want: f64) {
    for _ in 0..2_000 {
        if depth(snapshotter) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "{RELAY_QUEUE_DEPTH} stayed at {} (expected {want})",
        depth(snapshotter)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauge_counts_waiting_long_polls_over_all_channels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let relay = TestRelay::sqlite(test_config()).await;

    // A poll answered at once (an update is there) is never counted.
    let http = Http::new();
    http.post(&relay.url("/ready"), &update(1)).await;
    let answer = http.get(&relay.url("/ready?ts=0&sleep=30")).await;
    assert!(answer.body.contains("\"update_id\":1"), "{}", answer.body);
    assert_eq!(depth(&snapshotter), 0.0);

    // Two clients waiting on two channels: 2, not one series per channel.
    let (url_a, url_b) = (relay.url("/a?ts=0&sleep=30"), relay.url("/b?ts=0&sleep=1"));
    let a = tokio::spawn(async move { Http::new().get(&url_a).await });
    let b = tokio::spawn(async move { Http::new().get(&url_b).await });
    wait_depth(&snapshotter, 2.0).await;

    // An update on `a` answers its poll; `b` runs out of its 1 s sleep: both leave the count.
    http.post(&relay.url("/a"), &update(7)).await;
    let answer = a.await.unwrap();
    assert!(answer.body.contains("\"update_id\":7"), "{}", answer.body);
    b.await.unwrap();
    wait_depth(&snapshotter, 0.0).await;
}
