//! Back-pressure: the runner never holds more updates than `max_held`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use telehook_core::{Context, HandlerError, Update};
use telehook_polling::Delivery;

use crate::Log;

/// A source that checks the runner never holds more updates than allowed.
struct CheckingSource {
    inner: telehook_polling::MemorySource,
    /// The highest id handed out, and how many distinct updates were handed out.
    max_id: u64,
    handed_out: usize,
    handled: Arc<AtomicUsize>,
    max_outstanding: Arc<AtomicUsize>,
    max_limit: Arc<AtomicUsize>,
}

impl telehook_polling::UpdateSource for CheckingSource {
    type Error = std::convert::Infallible;

    async fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, Self::Error> {
        self.max_limit.fetch_max(limit, Ordering::SeqCst);
        let updates = self.inner.fetch(offset, limit).await?;
        for delivery in &updates {
            let update = delivery.update();
            if update.update_id() > self.max_id {
                self.max_id = update.update_id();
                self.handed_out += 1;
            }
        }
        // Handed out but not yet handled: what the runner holds (or less, as the handler counts
        // itself done a moment before the runner hears of it).
        let outstanding = self.handed_out - self.handled.load(Ordering::SeqCst);
        self.max_outstanding
            .fetch_max(outstanding, Ordering::SeqCst);
        Ok(updates)
    }

    async fn confirm(&mut self, offset: u64) -> Result<(), Self::Error> {
        self.inner.confirm(offset).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_never_holds_more_than_max_held() {
    let updates: Vec<Update> = (1..=500u64)
        .map(|id| {
            Update::from_bytes(format!(
                r#"{{"update_id":{id},"message":{{"chat":{{"id":{}}}}}}}"#,
                id % 7
            ))
            .unwrap()
        })
        .collect();
    let max_outstanding = Arc::new(AtomicUsize::new(0));
    let max_limit = Arc::new(AtomicUsize::new(0));
    let log = Log::default();
    let source = CheckingSource {
        inner: telehook_polling::MemorySource::new(updates),
        max_id: 0,
        handed_out: 0,
        handled: log.count.clone(),
        max_outstanding: max_outstanding.clone(),
        max_limit: max_limit.clone(),
    };
    let (handler_log, stop_log) = (log.clone(), log.clone());
    let mut config = telehook_polling::RunnerConfig::default();
    config.concurrency = 4;
    config.max_held = 20;
    let report = telehook_polling::run(
        source,
        move |update: Update, _: Context| {
            let log = handler_log.clone();
            async move {
                log.handle(&update, Duration::from_micros(200)).await;
                Ok::<_, HandlerError>(())
            }
        },
        config,
        async move { stop_log.wait_for(500).await },
    )
    .await
    .unwrap();
    assert_eq!(report.handled, 500);
    assert_eq!(log.overlaps.load(Ordering::SeqCst), 0);
    assert!(max_limit.load(Ordering::SeqCst) <= 100);
    let outstanding = max_outstanding.load(Ordering::SeqCst);
    assert!(
        outstanding <= 20,
        "the runner held {outstanding} unhandled updates, more than max_held 20"
    );
    assert!(
        outstanding >= 10,
        "the runner should fill its room, held at most {outstanding}"
    );
}
