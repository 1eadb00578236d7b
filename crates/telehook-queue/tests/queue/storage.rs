//! What the SQLite file keeps: the partition count, bodies written as text, update ids above
//! `i64::MAX`.

use std::time::Duration;

use telehook_core::Update;
use telehook_queue::{Enqueued, QueueBackend, QueueError, SqliteQueue};

use super::{TempDir, message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_with_other_partitions_while_updates_are_queued_is_refused() {
    let dir = TempDir::new("partitions");
    let queue = SqliteQueue::builder(dir.db()).partitions(3).open().unwrap();
    queue.enqueue(&message(1, 1)).await.unwrap();
    drop(queue);
    // The chats' partitions were fixed at enqueue: another count would strand updates.
    assert!(matches!(
        SqliteQueue::builder(dir.db()).partitions(1).open(),
        Err(QueueError::PartitionsChanged {
            stored: 3,
            asked: 1
        })
    ));
    let queue = SqliteQueue::builder(dir.db()).partitions(3).open().unwrap();
    assert_eq!(queue.queued().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_with_different_partitions_never_both_enqueue() {
    let dir = TempDir::new("two-handles");
    // Both open on an empty file (nothing queued, no worker yet): both succeed.
    let two = SqliteQueue::builder(dir.db()).partitions(2).open().unwrap();
    let four = SqliteQueue::builder(dir.db()).partitions(4).open().unwrap();
    // The later open recorded 4: its enqueues go on, the older handle's are refused, so one
    // chat never lands in two partitions (two workers, out of order).
    assert_eq!(
        four.enqueue(&message(1, 7)).await.unwrap(),
        Enqueued::Stored
    );
    let refused = two.enqueue(&message(2, 7)).await;
    assert!(
        matches!(
            refused,
            Err(QueueError::PartitionsChanged {
                stored: 4,
                asked: 2
            })
        ),
        "{refused:?}"
    );
    assert_eq!(four.queued().await.unwrap(), 1);
    // Still refused after the refusal (nothing recorded it away).
    assert!(two.enqueue(&message(3, 7)).await.is_err());
    assert_eq!(
        four.enqueue(&message(3, 7)).await.unwrap(),
        Enqueued::Stored
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_stored_as_text_is_taken_not_stalling_its_partition() {
    let dir = TempDir::new("text-body");
    let queue = SqliteQueue::open(dir.db()).unwrap();
    queue.enqueue(&message(1, 5)).await.unwrap();
    // A row written by another tool, its body as TEXT rather than BLOB.
    let text = r#"{"update_id":2,"message":{"message_id":2,"date":1,"chat":{"id":5,"type":"private"},"text":"hi"}}"#;
    rusqlite::Connection::open(dir.db())
        .unwrap()
        .execute(
            "INSERT INTO queue (update_id, partition, body, enqueued_at) VALUES (2, 0, ?1, 0)",
            [text],
        )
        .unwrap();
    queue.enqueue(&message(3, 5)).await.unwrap();
    let taken = queue.take(0, 0, 10, Duration::ZERO).await.unwrap();
    let ids: Vec<u64> = taken.iter().map(|i| i.update_id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(taken[1].body, text.as_bytes());
    assert!(Update::from_bytes(taken[1].body.clone()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_id_above_i64_max_is_stored_taken_acked_and_deduplicated() {
    let dir = TempDir::new("big-id");
    let queue = SqliteQueue::open(dir.db()).unwrap();
    let big = u64::MAX - 1;
    let update = message(big, 9);
    assert_eq!(update.update_id(), big);
    assert_eq!(queue.enqueue(&update).await.unwrap(), Enqueued::Stored);
    assert_eq!(queue.enqueue(&update).await.unwrap(), Enqueued::Duplicate);
    let taken = queue.take(0, 0, 10, Duration::ZERO).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].update_id, big);
    queue.ack(taken[0].seq, taken[0].update_id).await.unwrap();
    assert_eq!(queue.queued().await.unwrap(), 0);
    // Remembered as completed under the same id.
    assert_eq!(queue.enqueue(&update).await.unwrap(), Enqueued::Duplicate);
    // And through the dead-letter list and back.
    let other = message(i64::MAX as u64 + 1, 9);
    queue.enqueue(&other).await.unwrap();
    let taken = queue.take(0, 0, 10, Duration::ZERO).await.unwrap();
    queue.dead_letter(taken[0].seq).await.unwrap();
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead[0].update_id, i64::MAX as u64 + 1);
    assert_eq!(
        queue
            .redrive(Some(vec![i64::MAX as u64 + 1]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(queue.queued().await.unwrap(), 1);
}
