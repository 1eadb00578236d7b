//! NatsQueue on a real nats-server (one JetStream node on a free loopback port per test):
//! order per partition, duplicates, a full stream, attempts across restarts, dead letters and
//! redrive, a takeover after a crash, leases and members.

use std::collections::BTreeMap;
use std::time::Duration;

use telehook_core::{RequestHead, Update, Webhook};
use telehook_nats::NatsQueue;
use telehook_nats::testing::NatsServer;
use telehook_queue::{EnqueueHandler, Enqueued, QueueBackend, QueueError, QueuedItem};

const WAIT: Duration = Duration::from_millis(200);

fn message(update_id: u64, chat: i64) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"date":1,"chat":{{"id":{chat},"type":"private"}},"text":"hi"}}}}"#
    ))
    .unwrap()
}

fn chat_of(item: &QueuedItem) -> i64 {
    Update::from_bytes(item.body.clone())
        .unwrap()
        .chat_id()
        .unwrap()
}

async fn queue(server: &NatsServer, name: &str, partitions: u32) -> NatsQueue {
    NatsQueue::builder([server.url()])
        .name(name)
        .partitions(partitions)
        .connect()
        .await
        .unwrap()
}

/// Takes everything queued in `partition` (as a worker that just claimed it).
async fn take_all(queue: &NatsQueue, partition: u32) -> Vec<QueuedItem> {
    let mut items = queue.take(partition, 0, 1_000, WAIT).await.unwrap();
    loop {
        let from = items.last().map_or(0, |i| i.seq + 1);
        let more = queue.take(partition, from, 1_000, WAIT).await.unwrap();
        if more.is_empty() {
            return items;
        }
        items.extend(more);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_partition_is_taken_in_enqueue_order_and_acks_empty_the_queue() {
    let server = NatsServer::start().await.unwrap();
    let queue = queue(&server, "order", 3).await;
    for id in 1..=120u64 {
        let stored = queue.enqueue(&message(id, (id % 7) as i64)).await.unwrap();
        assert_eq!(stored, Enqueued::Stored);
    }
    assert_eq!(queue.queued().await.unwrap(), 120);
    let mut seen = Vec::new();
    let mut chats_by_partition: BTreeMap<i64, u32> = BTreeMap::new();
    for partition in 0..3 {
        let items = take_all(&queue, partition).await;
        assert!(
            items
                .windows(2)
                .all(|w| w[0].seq < w[1].seq && w[0].update_id < w[1].update_id),
            "partition {partition} out of order"
        );
        for item in &items {
            // A chat lives in one partition.
            let chat = chat_of(item);
            assert_eq!(
                *chats_by_partition.entry(chat).or_insert(partition),
                partition
            );
            assert_eq!(item.failed_attempts, 0);
            queue.ack(item.seq, item.update_id).await.unwrap();
            seen.push(item.update_id);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=120).collect::<Vec<_>>());
    assert_eq!(queue.queued().await.unwrap(), 0);
    // Nothing more to take: the wait ends empty.
    assert!(queue.take(0, 1, 10, WAIT).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_update_id_is_stored_and_run_once() {
    let server = NatsServer::start().await.unwrap();
    let queue = queue(&server, "dup", 1).await;
    assert_eq!(
        queue.enqueue(&message(7, 1)).await.unwrap(),
        Enqueued::Stored
    );
    // Telegram's redelivery while it is queued: a second copy (no server-side message ids,
    // see the crate docs), which the reader hands out once and removes.
    assert_eq!(
        queue.enqueue(&message(7, 1)).await.unwrap(),
        Enqueued::Stored
    );
    assert_eq!(queue.queued().await.unwrap(), 2);
    let items = take_all(&queue, 0).await;
    assert_eq!(items.len(), 1);
    assert_eq!(queue.queued().await.unwrap(), 1, "the copy was removed");
    queue.ack(items[0].seq, 7).await.unwrap();
    assert_eq!(queue.queued().await.unwrap(), 0);
    // After completion, even with another body (outside the id window): the record.
    assert_eq!(
        queue.enqueue(&message(7, 2)).await.unwrap(),
        Enqueued::Duplicate
    );
    // Without the check on enqueue, the copy is stored, and the reader drops it.
    let unchecked = NatsQueue::builder([server.url()])
        .name("dup")
        .check_completed_on_enqueue(false)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        unchecked.enqueue(&message(7, 3)).await.unwrap(),
        Enqueued::Stored
    );
    assert_eq!(
        unchecked.enqueue(&message(8, 3)).await.unwrap(),
        Enqueued::Stored
    );
    let items = take_all(&unchecked, 0).await;
    assert_eq!(
        items.iter().map(|i| i.update_id).collect::<Vec<_>>(),
        vec![8]
    );
    unchecked.ack(items[0].seq, 8).await.unwrap();
    assert_eq!(
        unchecked.queued().await.unwrap(),
        0,
        "the completed copy was removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_refuses_and_the_webhook_answers_an_error_until_an_ack_makes_room() {
    let server = NatsServer::start().await.unwrap();
    let queue = NatsQueue::builder([server.url()])
        .name("full")
        .capacity(3)
        .connect()
        .await
        .unwrap();
    // The webhook process: EnqueueHandler requires ErrorPolicy::Retry (never a 200 for an
    // update that was not stored).
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
    // Refused, however often Telegram retries.
    for _ in 0..5 {
        let refused = deliver(4).await;
        assert_eq!(refused.status(), 500, "{:?}", refused.body());
    }
    match queue.enqueue(&message(4, 1)).await {
        Err(QueueError::Full { capacity }) => assert_eq!(capacity, 3),
        other => panic!("expected Full, got {other:?}"),
    }
    // A redelivery of a stored update is a 200 (it is stored).
    assert_eq!(deliver(2).await.status(), 200);
    assert_eq!(queue.queued().await.unwrap(), 3);
    // Room again: the refused update is stored and acknowledged at last.
    let items = take_all(&queue, 0).await;
    queue.ack(items[0].seq, items[0].update_id).await.unwrap();
    assert_eq!(deliver(4).await.status(), 200);
    assert_eq!(queue.queued().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_survive_a_restart_then_dead_letter_list_and_redrive() {
    let server = NatsServer::start().await.unwrap();
    let first = queue(&server, "dead", 1).await;
    first.enqueue(&message(1, 1)).await.unwrap();
    first.enqueue(&message(2, 1)).await.unwrap();
    let items = take_all(&first, 0).await;
    assert_eq!(first.fail(items[0].seq, "boom 1").await.unwrap(), 1);
    assert_eq!(first.fail(items[0].seq, "boom 2").await.unwrap(), 2);
    drop(first);

    // Another process (a restart): the count is in the queue.
    let second = queue(&server, "dead", 1).await;
    let items = take_all(&second, 0).await;
    assert_eq!(items.len(), 2);
    assert_eq!((items[0].update_id, items[0].failed_attempts), (1, 2));
    assert_eq!(second.fail(items[0].seq, "boom\r\n3").await.unwrap(), 3);
    second.dead_letter(items[0].seq).await.unwrap();
    second.ack(items[1].seq, 2).await.unwrap();
    assert_eq!(second.queued().await.unwrap(), 0);

    let dead = second.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].update_id, 1);
    assert_eq!(dead[0].failed_attempts, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("boom  3"));
    assert_eq!(
        Update::from_bytes(dead[0].body.clone())
            .unwrap()
            .update_id(),
        1
    );
    assert!(dead[0].dead_at > 0);
    // Telegram delivers it again: not stored (it is dead-lettered).
    assert_eq!(
        second.enqueue(&message(1, 1)).await.unwrap(),
        Enqueued::Duplicate
    );
    // Redrive only another id: nothing; then it: queued again with its count reset.
    assert_eq!(second.redrive(Some(vec![99])).await.unwrap(), 0);
    assert_eq!(second.redrive(Some(vec![1])).await.unwrap(), 1);
    assert!(second.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(second.dead_count().await.unwrap(), 0);
    let items = take_all(&second, 0).await;
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].update_id, items[0].failed_attempts), (1, 0));
    second.ack(items[0].seq, 1).await.unwrap();
    assert_eq!(second.queued().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_after_a_crash_hands_out_what_was_not_acked_in_order() {
    let server = NatsServer::start().await.unwrap();
    let crashed = queue(&server, "takeover", 1).await;
    for id in 1..=10 {
        crashed.enqueue(&message(id, 1)).await.unwrap();
    }
    let items = crashed.take(0, 0, 4, WAIT).await.unwrap();
    assert_eq!(
        items.iter().map(|i| i.update_id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    crashed.ack(items[0].seq, 1).await.unwrap();
    crashed.ack(items[2].seq, 3).await.unwrap(); // acked out of order (another chat would)
    let more = crashed.take(0, items[1].seq, 2, WAIT).await.unwrap();
    assert_eq!(
        more.iter().map(|i| i.update_id).collect::<Vec<_>>(),
        vec![5, 6]
    );
    // The worker dies holding 2, 4, 5, 6 (no ack): another process claims the partition.
    drop(crashed);
    let next = queue(&server, "takeover", 1).await;
    let items = take_all(&next, 0).await;
    assert_eq!(
        items.iter().map(|i| i.update_id).collect::<Vec<_>>(),
        vec![2, 4, 5, 6, 7, 8, 9, 10]
    );
    // Taken again from the start (the same process claiming the partition again): the same.
    let again = take_all(&next, 0).await;
    assert_eq!(
        again.iter().map(|i| i.seq).collect::<Vec<_>>(),
        items.iter().map(|i| i.seq).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_owners_never_hold_one_partition_and_an_expired_lease_is_taken_over() {
    let server = NatsServer::start().await.unwrap();
    let a = queue(&server, "lease", 4).await;
    let b = queue(&server, "lease", 4).await;
    // Long enough that no step below outlasts it on a loaded machine.
    let lease = Duration::from_secs(3);
    assert!(a.acquire(0, "a", lease).await.unwrap());
    assert!(!b.acquire(0, "b", lease).await.unwrap());
    assert!(a.acquire(0, "a", lease).await.unwrap(), "the holder renews");
    assert!(b.acquire(1, "b", lease).await.unwrap(), "another partition");

    // Ten owners racing for a free partition, on two connections: exactly one wins.
    let racers = (0..10).map(|i| {
        let q = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { q.acquire(2, &format!("racer{i}"), lease).await.unwrap() }
    });
    let won = futures_util::future::join_all(racers).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");

    // Released: another owner claims it at once.
    a.release(0, "a").await.unwrap();
    b.release(0, "not-the-holder").await.unwrap();
    assert!(b.acquire(0, "b", lease).await.unwrap());
    // a no longer holds it: its renewal fails, its release changes nothing.
    assert!(!a.acquire(0, "a", lease).await.unwrap());
    a.release(0, "a").await.unwrap();
    assert!(!a.acquire(0, "c", lease).await.unwrap());

    // b stops renewing (dies): once the lease ran out on the server, c takes over.
    let mut attempts = 0;
    while !a.acquire(0, "c", lease).await.unwrap() {
        attempts += 1;
        assert!(attempts < 600, "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!b.acquire(0, "b", lease).await.unwrap(), "b lost it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_count_live_heartbeats_and_a_leaver_at_once() {
    let server = NatsServer::start().await.unwrap();
    let q = queue(&server, "members", 2).await;
    // Long enough that no step below outlasts it on a loaded machine.
    let lease = Duration::from_secs(3);
    assert_eq!(q.members("a", lease).await.unwrap(), 1);
    assert_eq!(q.members("b", lease).await.unwrap(), 2);
    assert_eq!(q.members("a", lease).await.unwrap(), 2);
    // b leaves: gone at once.
    assert_eq!(q.members("b", Duration::ZERO).await.unwrap(), 1);
    assert_eq!(q.members("c", lease).await.unwrap(), 2);
    // c stops beating: after the lease only a (who keeps beating) is left.
    let mut attempts = 0;
    while q.members("a", lease).await.unwrap() != 1 {
        attempts += 1;
        assert!(attempts < 600, "the heartbeat never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_partitions_than_the_stream_holds_are_refused() {
    let server = NatsServer::start().await.unwrap();
    let four = queue(&server, "parts", 4).await;
    for id in 1..=20 {
        four.enqueue(&message(id, id as i64)).await.unwrap();
    }
    let two = NatsQueue::builder([server.url()])
        .name("parts")
        .partitions(2)
        .connect()
        .await;
    assert!(
        matches!(two, Err(QueueError::PartitionsChanged { asked: 2, .. })),
        "{two:?}"
    );
}

/// Every process of one queue must use one number of partitions: another number is refused —
/// and even with `repartition()` while the queue holds updates (even ones all within both
/// numbers) or a worker is live; recorded with `repartition()` once the queue is drained and
/// no worker is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_number_of_partitions_is_refused_until_the_queue_is_drained_and_no_worker_is_live()
{
    let server = NatsServer::start().await.unwrap();
    let three = queue(&server, "repart", 3).await;
    three.enqueue(&message(1, 1)).await.unwrap();
    let eight = || async {
        NatsQueue::builder([server.url()])
            .name("repart")
            .partitions(8)
            .repartition()
            .connect()
            .await
    };
    let refused = eight().await;
    assert!(
        matches!(
            refused,
            Err(QueueError::PartitionsChanged {
                stored: 3,
                asked: 8
            })
        ),
        "{refused:?}"
    );
    let mut items = Vec::new();
    for partition in 0..3 {
        items.extend(take_all(&three, partition).await);
    }
    for item in items {
        three.ack(item.seq, item.update_id).await.unwrap();
    }
    // Drained, but a worker is live.
    three
        .members("worker-1", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(
        eight().await,
        Err(QueueError::PartitionsChanged { .. })
    ));
    // It left: without `repartition()` still refused; with it the new number is recorded,
    // and the old one is now the other one.
    three.members("worker-1", Duration::ZERO).await.unwrap();
    let plain = NatsQueue::builder([server.url()])
        .name("repart")
        .partitions(8)
        .connect()
        .await;
    assert!(
        matches!(plain, Err(QueueError::PartitionsChanged { .. })),
        "{plain:?}"
    );
    let eight = eight().await.unwrap();
    assert_eq!(eight.partitions(), 8);
    eight.enqueue(&message(2, 2)).await.unwrap();
    let old = NatsQueue::builder([server.url()])
        .name("repart")
        .partitions(3)
        .connect()
        .await;
    assert!(
        matches!(
            old,
            Err(QueueError::PartitionsChanged {
                stored: 8,
                asked: 3
            })
        ),
        "{old:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_is_an_engine_error_within_the_timeout_and_it_recovers() {
    let mut server = NatsServer::start().await.unwrap();
    let queue = NatsQueue::builder([server.url()])
        .name("down")
        .op_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    queue.enqueue(&message(1, 1)).await.unwrap();
    server.kill();
    let started = std::time::Instant::now();
    let refused = queue.enqueue(&message(2, 1)).await;
    assert!(matches!(refused, Err(QueueError::Engine(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
    assert!(matches!(
        queue.take(0, 0, 10, WAIT).await,
        Err(QueueError::Engine(_))
    ));
    server.restart().await.unwrap();
    // The client reconnects by itself; the stored update is still there.
    let mut attempts = 0;
    let items = loop {
        match queue.take(0, 0, 10, WAIT).await {
            Ok(items) if !items.is_empty() => break items,
            _ => {
                attempts += 1;
                assert!(attempts < 100, "never recovered");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(items[0].update_id, 1);
    assert_eq!(
        queue.enqueue(&message(2, 1)).await.unwrap(),
        Enqueued::Stored
    );
    // Connecting to nothing fails within the timeout too.
    let nothing = NatsQueue::builder(["nats://127.0.0.1:1"])
        .op_timeout(Duration::from_millis(300))
        .connect()
        .await;
    assert!(matches!(nothing, Err(QueueError::Engine(_))));
}
