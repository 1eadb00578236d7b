//! A worker that cannot renew its lease stops before another process can claim it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use telehook_core::{Context, HandlerError, Update};
use telehook_queue::{QueueBackend, SqliteQueue, Workers};
use tokio::sync::Notify;

use super::{Deadline, LEASE, TempDir, config, message, open};

/// A queue whose engine goes "down" for lease calls: every `acquire` and `members` fails.
#[derive(Clone)]
struct Flaky {
    inner: SqliteQueue,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), telehook_queue::QueueError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(telehook_queue::QueueError::Engine(
                "the engine is down".into(),
            ));
        }
        Ok(())
    }
}

impl QueueBackend for Flaky {
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }
    async fn enqueue(
        &self,
        update: &Update,
    ) -> Result<telehook_queue::Enqueued, telehook_queue::QueueError> {
        self.inner.enqueue(update).await
    }
    async fn take(
        &self,
        partition: u32,
        from: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<telehook_queue::QueuedItem>, telehook_queue::QueueError> {
        self.inner.take(partition, from, limit, wait).await
    }
    async fn ack(&self, seq: u64, update_id: u64) -> Result<(), telehook_queue::QueueError> {
        self.inner.ack(seq, update_id).await
    }
    async fn fail(&self, seq: u64, error: &str) -> Result<u32, telehook_queue::QueueError> {
        self.inner.fail(seq, error).await
    }
    async fn dead_letter(&self, seq: u64) -> Result<(), telehook_queue::QueueError> {
        self.inner.dead_letter(seq).await
    }
    async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<telehook_queue::DeadLetter>, telehook_queue::QueueError> {
        self.inner.dead_letters(limit).await
    }
    async fn redrive(
        &self,
        update_ids: Option<Vec<u64>>,
    ) -> Result<u64, telehook_queue::QueueError> {
        self.inner.redrive(update_ids).await
    }
    async fn acquire(
        &self,
        partition: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, telehook_queue::QueueError> {
        self.check()?;
        self.inner.acquire(partition, owner, lease).await
    }
    async fn release(&self, partition: u32, owner: &str) -> Result<(), telehook_queue::QueueError> {
        self.inner.release(partition, owner).await
    }
    async fn members(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<u32, telehook_queue::QueueError> {
        self.check()?;
        self.inner.members(owner, lease).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_renew_its_lease_is_gone_before_another_can_claim_it() {
    let dir = TempDir::new("renewal");
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flaky = Flaky {
        inner: open(&dir.db(), 1),
        down: Arc::clone(&down),
    };
    let runs = Arc::new(AtomicU64::new(0));
    let active = Arc::new(AtomicU64::new(0));
    let handler = {
        let (runs, active) = (Arc::clone(&runs), Arc::clone(&active));
        move |_update: Update, _ctx: Context| {
            let (runs, active) = (Arc::clone(&runs), Arc::clone(&active));
            async move {
                active.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                runs.fetch_add(1, Ordering::SeqCst);
                active.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, HandlerError>(())
            }
        }
    };
    let stop = Arc::new(Notify::new());
    let a = tokio::spawn({
        let stop = Arc::clone(&stop);
        Workers::new(flaky)
            .owner("a")
            .lease(LEASE)
            .run(handler, config(), async move { stop.notified().await })
    });
    // Updates keep coming (through another process's handle) during the whole test.
    let webhook = open(&dir.db(), 1);
    let producing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let producer = tokio::spawn({
        let producing = Arc::clone(&producing);
        async move {
            let mut id = 1;
            while producing.load(Ordering::SeqCst) {
                webhook
                    .enqueue(&message(id, (id % 4) as i64))
                    .await
                    .unwrap();
                id += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let deadline = Deadline::new();
    while runs.load(Ordering::SeqCst) < 20 {
        deadline.check("a handling updates");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The engine goes down for a: it cannot renew. b claims the partition as soon as a's
    // lease has run out: a's worker must be gone by then, nothing of it running.
    down.store(true, Ordering::SeqCst);
    let b = open(&dir.db(), 1);
    let deadline = Deadline::new();
    while !b.acquire(0, "b", Duration::from_secs(60)).await.unwrap() {
        deadline.check("a's lease running out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(active.load(Ordering::SeqCst), 0, "a still runs a handler");
    let after_claim = runs.load(Ordering::SeqCst);
    // More updates arrive; a runs none of them (it may only claim again once b lets go).
    tokio::time::sleep(LEASE).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        after_claim,
        "a ran after b claimed"
    );
    producing.store(false, Ordering::SeqCst);
    producer.await.unwrap();
    stop.notify_one();
    let report = a.await.unwrap().unwrap();
    assert!(report.leases_lost >= 1, "{report:?}");
}
