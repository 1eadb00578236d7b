//! Handles on one file without workers: never two lease holders, the `take` contract, the
//! capacity and the partition count seen by every process.

use std::time::Duration;

use telehook_queue::{QueueBackend, SqliteQueue};

use super::{LEASE, TempDir, leases, message, open};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_never_both_hold_a_partition() {
    let dir = TempDir::new("exclusive");
    let a = open(&dir.db(), 2);
    let b = open(&dir.db(), 2);
    let long = Duration::from_secs(60);

    assert!(a.acquire(0, "a", long).await.unwrap());
    assert!(!b.acquire(0, "b", long).await.unwrap(), "held by a");
    assert!(a.acquire(0, "a", long).await.unwrap(), "a renews");
    assert!(b.acquire(1, "b", long).await.unwrap(), "another partition");
    assert!(!a.acquire(1, "a", long).await.unwrap());
    assert!(!a.acquire(2, "a", long).await.unwrap(), "no such partition");
    // Releasing someone else's lease does nothing; the holder's release frees it at once.
    b.release(0, "b").await.unwrap();
    assert!(!b.acquire(0, "b", long).await.unwrap());
    a.release(0, "a").await.unwrap();
    assert!(b.acquire(0, "b", long).await.unwrap());
    // A lease that ran out (here: a zero lease) is free for anyone.
    assert!(a.acquire(1, "x", long).await.is_ok_and(|held| !held));
    assert!(b.acquire(1, "b", Duration::ZERO).await.unwrap());
    assert!(a.acquire(1, "a", long).await.unwrap(), "b's lease ran out");

    // Racing claims from both handles: exactly one wins each round.
    for round in 0..40u32 {
        let partition = round % 2;
        let (x, y) = tokio::join!(
            a.acquire(partition, "a", long),
            b.acquire(partition, "b", long)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let holder = leases(&dir.db()).get(&partition).cloned();
        match holder.as_deref() {
            Some("a") => assert!(x && !y, "round {round}: {x} {y}"),
            Some("b") => assert!(y && !x, "round {round}: {x} {y}"),
            other => panic!("round {round}: holder {other:?}"),
        }
        a.release(partition, "a").await.unwrap();
        b.release(partition, "b").await.unwrap();
    }

    // Members: heartbeats from both, then one leaves (a zero lease).
    assert_eq!(a.members("a", long).await.unwrap(), 1);
    assert_eq!(b.members("b", long).await.unwrap(), 2);
    assert_eq!(a.members("a", long).await.unwrap(), 2);
    b.members("b", Duration::ZERO).await.unwrap();
    assert_eq!(a.members("a", long).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_holder_takes_what_the_last_one_left_unacked_in_order() {
    let dir = TempDir::new("contract");
    let a = open(&dir.db(), 1);
    let b = open(&dir.db(), 1);
    for id in 1..=5 {
        a.enqueue(&message(id, 1)).await.unwrap();
    }
    assert!(a.acquire(0, "a", LEASE).await.unwrap());
    let taken = a.take(0, 0, 10, Duration::ZERO).await.unwrap();
    a.ack(taken[0].seq, taken[0].update_id).await.unwrap();
    a.fail(taken[1].seq, "boom").await.unwrap();
    // a stops without acking the rest; b takes the partition over.
    a.release(0, "a").await.unwrap();
    assert!(b.acquire(0, "b", LEASE).await.unwrap());
    let again = b.take(0, 0, 10, Duration::ZERO).await.unwrap();
    assert_eq!(
        again.iter().map(|i| i.update_id).collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    assert_eq!(
        again[0].failed_attempts, 1,
        "the count survives the takeover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capacity_counts_what_every_process_enqueued_and_acked() {
    let dir = TempDir::new("capacity");
    let open_capped = || SqliteQueue::builder(dir.db()).capacity(3).open().unwrap();
    let (webhook, worker) = (open_capped(), open_capped());
    for id in 1..=3 {
        webhook.enqueue(&message(id, 1)).await.unwrap();
    }
    // The other process sees the queue full too.
    assert!(matches!(
        worker.enqueue(&message(4, 1)).await,
        Err(telehook_queue::QueueError::Full { capacity: 3 })
    ));
    // The worker process acks two: the webhook process has room for two again, not more.
    for item in worker.take(0, 0, 2, Duration::ZERO).await.unwrap() {
        worker.ack(item.seq, item.update_id).await.unwrap();
    }
    webhook.enqueue(&message(4, 1)).await.unwrap();
    worker.enqueue(&message(5, 1)).await.unwrap();
    assert!(matches!(
        webhook.enqueue(&message(6, 1)).await,
        Err(telehook_queue::QueueError::Full { capacity: 3 })
    ));
    assert_eq!(webhook.queued().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_partition_count_is_refused_while_workers_are_live() {
    let dir = TempDir::new("count");
    let queue = open(&dir.db(), 2);
    queue.members("a", Duration::from_secs(60)).await.unwrap();
    // Empty, but a worker of the 2-partition layout is live: a 3-partition process would
    // route chats to partitions it does not serve.
    assert!(matches!(
        SqliteQueue::builder(dir.db()).partitions(3).open(),
        Err(telehook_queue::QueueError::PartitionsChanged {
            stored: 2,
            asked: 3
        })
    ));
    queue.members("a", Duration::ZERO).await.unwrap();
    drop(queue);
    // Nobody live and nothing queued: the count may change.
    assert_eq!(open(&dir.db(), 3).partitions(), 3);
}
