//! The runner's lag histogram, seen by a real recorder (metrics-util's `DebuggingRecorder`,
//! installed globally in this test binary), in tokio's paused time (deterministic, instant).

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use telehook_core::{Context, HandlerError, Update};
use telehook_polling::RunnerConfig;
use telehook_polling::metric_names::POLLING_LAG;
use tokio::sync::mpsc;

fn update(id: u64, chat: i64) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{id},"message":{{"message_id":1,"date":0,"chat":{{"id":{chat},"type":"private"}},"text":"x"}}}}"#
    ))
    .unwrap()
}

/// Three updates of one chat fetched at once, each handler run taking 1 s: the first starts at
/// once, the second waits behind it about 1 s, the third about 2 s; an update of another chat
/// does not wait. One lag sample per update.
#[tokio::test(start_paused = true)]
async fn the_lag_is_the_wait_between_fetch_and_handler_start() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let updates = [update(1, 7), update(2, 7), update(3, 7), update(4, 8)];
    let (tx, mut rx) = mpsc::unbounded_channel();
    let report = telehook_polling::run(
        telehook_polling::MemorySource::new(updates),
        move |update: Update, _: Context| {
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = tx.send(update.update_id());
                Ok::<_, HandlerError>(())
            }
        },
        RunnerConfig::default(),
        async move {
            for _ in 0..4 {
                rx.recv().await;
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(report.handled, 4, "{report:?}");

    let mut samples: Vec<f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, _, _, _)| key.key().name() == POLLING_LAG)
        .flat_map(|(key, _, _, value)| {
            assert_eq!(key.key().labels().count(), 0, "no labels");
            match value {
                DebugValue::Histogram(samples) => samples
                    .into_iter()
                    .map(|s| s.into_inner())
                    .collect::<Vec<f64>>(),
                other => panic!("{POLLING_LAG} is not a histogram: {other:?}"),
            }
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    assert_eq!(samples.len(), 4, "{samples:?}");
    // Paused time: the waits are exact multiples of the handler's 1 s (a few ms of auto-advance
    // aside).
    let rounded: Vec<u64> = samples.iter().map(|s| s.round() as u64).collect();
    assert_eq!(rounded, [0, 0, 1, 2], "{samples:?}");
}
