//! Two webhook instances sharing one real Redis through `RedisStore`, as two processes behind
//! a load balancer would.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Redis, black_hole};
use telehook_core::guard::{Claim, RunResult, StoreError, StoreFuture};
use telehook_core::{
    Context, ErrorPolicy, HandlerError, RedeliveryStore, RequestHead, Update, UpdateKey, Webhook,
    WebhookResponse,
};
use telehook_redis::{OnRedisError, RedisStore};
use tokio::sync::{Notify, Semaphore};

/// Bounds every delivery in these tests: a hang fails the test instead of blocking it.
const HANG: Duration = Duration::from_secs(20);

fn store(url: &str) -> RedisStore {
    RedisStore::builder(url)
        .key_prefix("test:")
        .build()
        .expect("a store")
}

async fn deliver(webhook: &Webhook, body: &str) -> WebhookResponse {
    let response = webhook.handle_bytes(
        RequestHead::new("POST", |_| None),
        Bytes::from(body.to_owned()),
    );
    tokio::time::timeout(HANG, response)
        .await
        .expect("the delivery was answered")
}

/// A store that says when a delivery starts waiting for a run in flight.
struct Announcing {
    inner: RedisStore,
    waiting: Arc<Notify>,
}

impl RedeliveryStore for Announcing {
    fn claim(&self, key: UpdateKey) -> StoreFuture<'_, Result<Claim, StoreError>> {
        self.inner.claim(key)
    }

    fn wait(&self, key: UpdateKey) -> StoreFuture<'_, Result<RunResult, StoreError>> {
        self.waiting.notify_one();
        self.inner.wait(key)
    }

    fn finish(&self, key: UpdateKey, result: RunResult) -> StoreFuture<'_, Result<(), StoreError>> {
        self.inner.finish(key, result)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_on_the_other_instance_waits_and_gets_the_first_runs_reply() {
    let redis = Redis::start().await;
    let runs = Arc::new(AtomicU32::new(0));
    let started = Arc::new(Notify::new());
    let gate = Arc::new(Semaphore::new(0));
    let handler = {
        let (runs, started, gate) = (runs.clone(), started.clone(), gate.clone());
        move |update: Update, ctx: Context| {
            let (runs, started, gate) = (runs.clone(), started.clone(), gate.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                started.notify_one();
                let _permit = gate.acquire().await.map_err(HandlerError::from)?;
                ctx.webhook_reply(
                    "sendMessage",
                    serde_json::json!({"chat_id": 1, "text": format!("re {}", update.update_id())}),
                )
                .map_err(HandlerError::from)?;
                Ok::<(), HandlerError>(())
            }
        }
    };
    let waiting = Arc::new(Notify::new());
    let first = Webhook::builder()
        .redelivery_store(Arc::new(store(&redis.url())))
        .build(handler.clone())
        .unwrap();
    let second = Webhook::builder()
        .redelivery_store(Arc::new(Announcing {
            inner: store(&redis.url()),
            waiting: waiting.clone(),
        }))
        .build(handler)
        .unwrap();

    let body = r#"{"update_id":41,"message":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"},"text":"hi"}}"#;
    let first_delivery = tokio::spawn({
        let first = first.clone();
        async move { deliver(&first, body).await }
    });
    started.notified().await;
    // Telegram redelivers; the balancer sends it to the other instance.
    let redelivery = tokio::spawn({
        let second = second.clone();
        async move { deliver(&second, body).await }
    });
    waiting.notified().await;
    gate.add_permits(1);

    let expected = r#"{"method":"sendMessage","chat_id":1,"text":"re 41"}"#;
    let first_answer = first_delivery.await.unwrap();
    let second_answer = redelivery.await.unwrap();
    assert_eq!(first_answer.status(), 200);
    assert_eq!(second_answer.status(), 200);
    assert_eq!(first_answer.body().as_ref(), expected.as_bytes());
    assert_eq!(second_answer.body().as_ref(), expected.as_bytes());
    // A later redelivery on either instance is answered from Redis too.
    let later = deliver(&second, body).await;
    assert_eq!(later.body().as_ref(), expected.as_bytes());
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equal_update_id_with_another_body_is_a_new_update() {
    let redis = Redis::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        move |update: Update, _ctx: Context| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(update.raw().to_vec());
                Ok::<(), HandlerError>(())
            }
        }
    };
    let first = Webhook::builder()
        .redelivery_store(Arc::new(store(&redis.url())))
        .build(handler.clone())
        .unwrap();
    let second = Webhook::builder()
        .redelivery_store(Arc::new(store(&redis.url())))
        .build(handler)
        .unwrap();
    let old = r#"{"update_id":7,"message":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"},"text":"old"}}"#;
    let new = r#"{"update_id":7,"message":{"message_id":2,"date":0,"chat":{"id":1,"type":"private"},"text":"new"}}"#;
    assert_eq!(deliver(&first, old).await.status(), 200);
    assert_eq!(deliver(&second, new).await.status(), 200);
    // Redeliveries of each, crossed over: neither runs again.
    assert_eq!(deliver(&second, old).await.status(), 200);
    assert_eq!(deliver(&first, new).await.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "two updates, each run once");
    assert_ne!(seen[0], seen[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_counted_across_instances() {
    let redis = Redis::start().await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let attempts = attempts.clone();
        move |_update: Update, ctx: Context| {
            let attempts = attempts.clone();
            async move {
                attempts.lock().unwrap().push(ctx.failed_attempts());
                Err::<(), HandlerError>("always fails".into())
            }
        }
    };
    let instance = || {
        Webhook::builder()
            .redelivery_store(Arc::new(store(&redis.url())))
            .error_policy(ErrorPolicy::BoundedRetry { max_attempts: 3 })
            .build(handler.clone())
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    let body = r#"{"update_id":5}"#;
    assert_eq!(deliver(&a, body).await.status(), 500);
    assert_eq!(deliver(&b, body).await.status(), 500);
    // The third failure, on the first instance again, is the policy's last: given up.
    assert_eq!(deliver(&a, body).await.status(), 200);
    // Given up is final everywhere.
    assert_eq!(deliver(&b, body).await.status(), 200);
    assert_eq!(*attempts.lock().unwrap(), vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_for_the_same_updates_claim_each_once() {
    let redis = Redis::start().await;
    let (a, b) = (store(&redis.url()), store(&redis.url()));
    for id in 0..100u64 {
        let key = UpdateKey::new(id, format!("{{\"update_id\":{id}}}").as_bytes());
        let (x, y) = tokio::join!(a.claim(key), b.claim(key));
        let runs = [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|c| matches!(c, Claim::Run { .. }))
            .count();
        assert_eq!(runs, 1, "update {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_instance_died_lapses_and_counts_as_a_failed_attempt() {
    let redis = Redis::start().await;
    let lease = Duration::from_millis(300);
    let build = || {
        RedisStore::builder(redis.url())
            .in_flight_lease(lease)
            .build()
            .unwrap()
    };
    let key = UpdateKey::new(9, b"{\"update_id\":9}");
    let dying = build();
    assert_eq!(
        dying.claim(key).await.unwrap(),
        Claim::Run { failed_attempts: 0 }
    );
    let other = build();
    assert_eq!(other.claim(key).await.unwrap(), Claim::InFlight);
    // While the owner lives its lease is renewed: still in flight after several leases.
    tokio::time::sleep(lease * 3).await;
    assert_eq!(other.claim(key).await.unwrap(), Claim::InFlight);
    drop(dying);
    // The waiter learns that the run is gone once the lease lapses...
    let waited = tokio::time::timeout(HANG, other.wait(key)).await.unwrap();
    assert_eq!(waited.unwrap(), RunResult::Failed { failed_attempts: 0 });
    // ...and the next delivery runs it, with the lost run counted.
    assert_eq!(
        other.claim(key).await.unwrap(),
        Claim::Run { failed_attempts: 1 }
    );
}

fn counting_webhook(url: &str, policy: OnRedisError, runs: &Arc<AtomicU32>) -> Webhook {
    let runs = runs.clone();
    Webhook::builder()
        .redelivery_store(Arc::new(
            RedisStore::builder(url)
                .command_timeout(Duration::from_millis(200))
                .on_redis_error(policy)
                .build()
                .unwrap(),
        ))
        .build(move |_update: Update, _ctx: Context| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_by_default_and_recovers_when_it_is_back() {
    let mut redis = Redis::start().await;
    let runs = Arc::new(AtomicU32::new(0));
    let webhook = counting_webhook(&redis.url(), OnRedisError::default(), &runs);
    assert_eq!(deliver(&webhook, r#"{"update_id":1}"#).await.status(), 200);

    redis.stop();
    for id in 2..5 {
        let answer = deliver(&webhook, &format!("{{\"update_id\":{id}}}")).await;
        assert_eq!(answer.status(), 503, "update {id}: Telegram must retry");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "nothing ran unguarded");

    redis.restart().await;
    // The connection comes back by itself; the first calls may still see the old one fail.
    let mut status = 0;
    for _ in 0..100 {
        status = deliver(&webhook, r#"{"update_id":2}"#)
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the guard works again after Redis restarted");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(deliver(&webhook, r#"{"update_id":2}"#).await.status(), 200);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "and remembers again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_fail_open_handles_the_update_anyway() {
    let mut redis = Redis::start().await;
    let url = redis.url();
    redis.stop();
    let runs = Arc::new(AtomicU32::new(0));
    let webhook = counting_webhook(&url, OnRedisError::FailOpen, &runs);
    assert_eq!(deliver(&webhook, r#"{"update_id":1}"#).await.status(), 200);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_is_bounded_by_the_command_timeout() {
    let url = black_hole().await;
    let runs = Arc::new(AtomicU32::new(0));
    let closed = counting_webhook(&url, OnRedisError::FailClosed, &runs);
    assert_eq!(deliver(&closed, r#"{"update_id":1}"#).await.status(), 503);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let open = counting_webhook(&url, OnRedisError::FailOpen, &runs);
    assert_eq!(deliver(&open, r#"{"update_id":1}"#).await.status(), 200);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_with_different_key_prefixes_do_not_see_each_other() {
    let redis = Redis::start().await;
    let key = UpdateKey::new(3, b"{\"update_id\":3}");
    let a = RedisStore::builder(redis.url())
        .key_prefix("bot-a:")
        .build()
        .unwrap();
    let b = RedisStore::builder(redis.url())
        .key_prefix("bot-b:")
        .build()
        .unwrap();
    assert!(matches!(a.claim(key).await.unwrap(), Claim::Run { .. }));
    assert!(matches!(b.claim(key).await.unwrap(), Claim::Run { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_mid_run_neither_hangs_the_waiting_redelivery_nor_fails_the_run() {
    let mut redis = Redis::start().await;
    let started = Arc::new(Notify::new());
    let gate = Arc::new(Semaphore::new(0));
    let handler = {
        let (started, gate) = (started.clone(), gate.clone());
        move |_update: Update, _ctx: Context| {
            let (started, gate) = (started.clone(), gate.clone());
            async move {
                started.notify_one();
                let _permit = gate.acquire().await.map_err(HandlerError::from)?;
                Ok::<(), HandlerError>(())
            }
        }
    };
    let build = |store: Arc<dyn RedeliveryStore>| {
        Webhook::builder()
            .timeout(Duration::from_secs(10))
            .redelivery_store(store)
            .build(handler.clone())
            .unwrap()
    };
    let quick = || {
        RedisStore::builder(redis.url())
            .command_timeout(Duration::from_millis(200))
            .build()
            .unwrap()
    };
    let waiting = Arc::new(Notify::new());
    let first = build(Arc::new(quick()));
    let second = build(Arc::new(Announcing {
        inner: quick(),
        waiting: waiting.clone(),
    }));
    let body = r#"{"update_id":12}"#;
    let first_delivery = tokio::spawn({
        let first = first.clone();
        async move { deliver(&first, body).await }
    });
    started.notified().await;
    let redelivery = tokio::spawn({
        let second = second.clone();
        async move { deliver(&second, body).await }
    });
    waiting.notified().await;
    redis.stop();
    // The waiting redelivery cannot learn the outcome: 503, Telegram will try again.
    assert_eq!(redelivery.await.unwrap().status(), 503);
    // The run itself ends normally; only recording its outcome failed (logged).
    gate.add_permits(1);
    assert_eq!(first_delivery.await.unwrap().status(), 200);
}
