//! The enqueueing webhook: a full queue answers an error, and no error policy or timeout
//! action that could acknowledge an update not stored builds.

use std::time::Duration;

use telehook_core::{BuildError, ErrorPolicy, OnTimeout, RequestHead, Webhook};
use telehook_queue::{EnqueueHandler, QueueBackend, QueueError, SqliteQueue};

use super::{TempDir, message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_and_the_webhook_answers_an_error() {
    let dir = TempDir::new("full");
    let queue = SqliteQueue::builder(dir.db()).capacity(3).open().unwrap();
    // No error policy set: EnqueueHandler's required ErrorPolicy::Retry applies (the default
    // BoundedRetry { max_attempts: 3 } would answer 200 at the third refused delivery).
    let webhook = Webhook::builder()
        .build(EnqueueHandler::new(queue.clone()))
        .unwrap();
    let deliver = |id: u64| {
        let body = message(id, 1).raw().clone();
        webhook.handle_bytes(RequestHead::new("POST", |_| None), body)
    };
    for id in 1..=3 {
        assert_eq!(deliver(id).await.status(), 200);
    }
    // Refused, however often Telegram retries: never a 200 for an update not stored.
    for _ in 0..10 {
        let refused = deliver(4).await;
        assert_eq!(refused.status(), 500, "{:?}", refused.body());
    }
    assert!(matches!(
        queue.enqueue(&message(5, 1)).await,
        Err(QueueError::Full { capacity: 3 })
    ));
    // A redelivery of a stored update is still a 200 (it is stored).
    assert_eq!(deliver(2).await.status(), 200);
    assert_eq!(queue.queued().await.unwrap(), 3);
    // Room again: the update refused ten times is stored and acknowledged at last.
    let taken = queue.take(0, 0, 1, Duration::ZERO).await.unwrap();
    queue.ack(taken[0].seq, taken[0].update_id).await.unwrap();
    assert_eq!(deliver(4).await.status(), 200);
    assert_eq!(queue.queued().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enqueueing_webhook_refuses_an_error_policy_that_could_lose_updates() {
    let dir = TempDir::new("policy");
    let queue = SqliteQueue::open(dir.db()).unwrap();
    for policy in [
        ErrorPolicy::BoundedRetry { max_attempts: 3 },
        ErrorPolicy::Acknowledge,
    ] {
        let built = Webhook::builder()
            .error_policy(policy)
            .build(EnqueueHandler::new(queue.clone()));
        assert!(
            matches!(
                built,
                Err(BuildError::ErrorPolicyConflict {
                    configured,
                    required: ErrorPolicy::Retry,
                }) if configured == policy
            ),
            "{policy:?}: {built:?}"
        );
    }
    // Setting the required one is fine.
    Webhook::builder()
        .error_policy(ErrorPolicy::Retry)
        .build(EnqueueHandler::new(queue))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enqueueing_webhook_refuses_to_acknowledge_at_the_timeout() {
    let dir = TempDir::new("on-timeout");
    let queue = SqliteQueue::open(dir.db()).unwrap();
    // OnTimeout::Return would answer 200 while the enqueue may still fail: refused.
    let built = Webhook::builder()
        .on_timeout(OnTimeout::Return)
        .build(EnqueueHandler::new(queue.clone()));
    assert!(
        matches!(built, Err(BuildError::AcknowledgeBeforeRunEnds)),
        "{built:?}"
    );
    // The default (Throw) builds.
    Webhook::builder()
        .build(EnqueueHandler::new(queue))
        .unwrap();
}
