//! Attacks on the NATS queue's copy handling (no `Nats-Msg-Id`: a repeated enqueue stores a
//! second copy, `take` drops it) and on its leases, against real nats-server processes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_core::Update;
use telehook_nats::NatsQueue;
use telehook_nats::testing::{NatsCluster, NatsServer};
use telehook_queue::{Enqueued, QueueBackend, QueuedItem};

const WAIT: Duration = Duration::from_millis(200);

fn message(update_id: u64, chat: i64) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"date":1,"chat":{{"id":{chat},"type":"private"}},"text":"hi"}}}}"#
    ))
    .unwrap()
}

async fn single(server: &NatsServer, name: &str, partitions: u32) -> NatsQueue {
    NatsQueue::builder([server.url()])
        .name(name)
        .partitions(partitions)
        .connect()
        .await
        .unwrap()
}

/// `count` handles on queue `name` (3 replicas), each on its own connection, entering the
/// cluster through different nodes: owners in different processes.
async fn handles(
    cluster: &NatsCluster,
    name: &str,
    count: usize,
    partitions: u32,
    lease: Duration,
) -> Vec<NatsQueue> {
    let mut queues = Vec::new();
    for i in 0..count {
        let mut urls = cluster.urls();
        urls.rotate_left(i % 3);
        queues.push(
            NatsQueue::builder(urls)
                .name(name)
                .replicas(3)
                .partitions(partitions)
                .lease(lease)
                .op_timeout(Duration::from_secs(10))
                .connect()
                .await
                .unwrap(),
        );
    }
    queues
}

/// Every handle claims `partition` at once, as owner `<label>-<i>`: the winners.
async fn race(queues: &[NatsQueue], partition: u32, label: &str, lease: Duration) -> Vec<String> {
    let claims = queues.iter().enumerate().map(|(i, q)| {
        let owner = format!("{label}-{i}");
        async move {
            let won = q.acquire(partition, &owner, lease).await.unwrap();
            (owner, won)
        }
    });
    futures_util::future::join_all(claims)
        .await
        .into_iter()
        .filter_map(|(owner, won)| won.then_some(owner))
        .collect()
}

/// The leader (node index) of stream `name`, from any node's view.
async fn leader_of(
    js: &async_nats::jetstream::Context,
    cluster: &NatsCluster,
    name: &str,
) -> Option<usize> {
    let mut stream = js.get_stream(name).await.ok()?;
    let info = stream.info().await.ok()?;
    let leader = info.cluster.as_ref()?.leader.clone()?;
    cluster.node_index(&leader)
}

/// Moves the leadership of stream `name` to node `want`; false if it never got there.
async fn move_leader(cluster: &NatsCluster, name: &str, want: usize) -> bool {
    let client = async_nats::connect(cluster.urls()[0].as_str())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client.clone());
    for _ in 0..40 {
        match leader_of(&js, cluster, name).await {
            Some(l) if l == want => return true,
            Some(_) => {
                let _ = client
                    .request(
                        format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"),
                        bytes::Bytes::new(),
                    )
                    .await;
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Regression (found by attack, fixed with it): on nats-server 2.9 in a cluster, `Nats-Expected-Last-Subject-Sequence` > 0 is checked
/// only by the stream leader *before* it proposes the message, against what it has applied
/// (server/jetstream_cluster.go, processClusteredInboundMsg; the replicas skip the check when
/// they apply). Two claims of a released partition sent before the first one is applied both
/// pass, both are stored, and both owners are told they hold the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_partition_is_claimed_by_exactly_one_of_racing_owners() {
    let cluster = NatsCluster::start(3).await.unwrap();
    let lease = Duration::from_secs(20);
    let queues = handles(&cluster, "relrace", 6, 2, lease).await;
    assert!(queues[0].acquire(1, "first", lease).await.unwrap());
    queues[0].release(1, "first").await.unwrap();
    let mut doubles = Vec::new();
    for round in 0..30 {
        // The partition is released (a tombstone is its last message): racing claims.
        let won = race(&queues, 1, &format!("owner-{round}"), lease).await;
        assert!(
            !won.is_empty(),
            "round {round}: nobody won a released partition"
        );
        if won.len() > 1 {
            doubles.push((round, won.clone()));
        }
        // Release through the one the lease stream names (the others' releases do nothing).
        for owner in &won {
            queues[0].release(1, owner).await.unwrap();
        }
    }
    assert!(doubles.is_empty(), "two holders at once: {doubles:?}");
}

/// Regression (found by attack, fixed with it): `take` advances the partition's read position and registers the batch as handed out
/// before it deletes the copies it dropped; when that delete fails (the stream lost its
/// quorum for a moment) the take returns an error and the batch is never handed out: the
/// runner retries `take(from)` with the same `from`, which starts after the batch. The chat's
/// next update runs, the skipped one waits until the partition changes hands (never, while
/// the worker holds its lease) — per-chat order broken, the update stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_take_hands_its_batch_out_again() {
    let mut cluster = NatsCluster::start(3).await.unwrap();
    let setup = NatsQueue::builder(cluster.urls())
        .name("strand")
        .replicas(3)
        .op_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    // Chat 7: update 1, a second copy of update 1 (an enqueue repeated), update 2.
    for id in [1, 1, 2] {
        assert_eq!(
            setup.enqueue(&message(id, 7)).await.unwrap(),
            Enqueued::Stored
        );
    }
    // The queue's stream and the records lead on node 0; the worker talks to node 0.
    assert!(move_leader(&cluster, "strand_state", 0).await);
    assert!(move_leader(&cluster, "strand", 0).await);
    let queue = NatsQueue::builder([cluster.url(0).unwrap()])
        .name("strand")
        .replicas(3)
        .op_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let first = queue.take(0, 0, 1, WAIT).await.unwrap();
    assert_eq!(first.iter().map(|i| i.update_id).collect::<Vec<_>>(), [1]);
    let from = first[0].seq + 1;

    // The followers stall: node 0 still answers reads, but cannot delete the copy of update 1.
    let followers = [1, 2];
    for &i in &followers {
        cluster.pause(i);
    }
    let failed = queue.take(0, from, 10, WAIT).await;
    for &i in &followers {
        cluster.resume(i);
    }
    eprintln!("take while the followers stalled: {failed:?}");

    // As the runner does: the same `from` again, until it hands something out.
    let mut next: Vec<QueuedItem> = Vec::new();
    for _ in 0..12 {
        match queue.take(0, from, 10, WAIT).await {
            Ok(items) if !items.is_empty() => {
                next = items;
                break;
            }
            Ok(_) => {}
            Err(e) => eprintln!("take: {e}"),
        }
        if failed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let handed: Vec<u64> = match &failed {
        Ok(items) => items.iter().chain(&next).map(|i| i.update_id).collect(),
        Err(_) => next.iter().map(|i| i.update_id).collect(),
    };
    assert_eq!(handed, [2], "update 2 is handed out once, after update 1");
}

/// Regression (found by attack, fixed with it): the second copy of an update, read while the first copy is being acked: `take` reads
/// the copy's record (nothing yet) before it looks at what is handed out (the first copy, gone
/// by then): if the ack lands in between, the copy is handed out and runs a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_read_while_its_first_copy_is_acked_is_not_handed_out() {
    let server = NatsServer::start().await.unwrap();
    let queue = single(&server, "ackrace", 1).await;
    let webhook = single(&server, "ackrace", 1).await;
    let mut next = 0;
    let mut twice = Vec::new();
    let started = std::time::Instant::now();
    let mut rounds = 0u64;
    let mut last_took = Duration::from_millis(50);
    while started.elapsed() < Duration::from_secs(15) {
        rounds += 1;
        let id = rounds * 1_000;
        webhook.enqueue(&message(id, 1)).await.unwrap();
        let first = queue.take(0, next, 1, WAIT).await.unwrap();
        assert_eq!(first.len(), 1);
        let first = first[0].clone();
        assert_eq!(first.update_id, id);
        // The copy, then other updates making the take's batch (and its record reads) long.
        webhook.enqueue(&message(id, 1)).await.unwrap();
        for k in 1..=100 {
            webhook.enqueue(&message(id + k, 1)).await.unwrap();
        }
        // The ack lands late in the take: while it reads the batch's records.
        let delay = last_took.mul_f64(0.7 + 0.3 * ((rounds * 7) % 10) as f64 / 10.0);
        let ack = {
            let queue = queue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                queue.ack(first.seq, first.update_id).await.unwrap();
            })
        };
        let t = std::time::Instant::now();
        let batch = queue.take(0, first.seq + 1, 1_000, WAIT).await.unwrap();
        last_took = t.elapsed();
        ack.await.unwrap();
        if batch.iter().any(|i| i.update_id == id) {
            twice.push((rounds, delay));
            break;
        }
        for item in &batch {
            queue.ack(item.seq, item.update_id).await.unwrap();
        }
        next = batch.last().map_or(first.seq + 1, |i| i.seq + 1);
    }
    eprintln!("{rounds} rounds");
    assert!(
        twice.is_empty(),
        "copies handed out after their first copy was acked: {twice:?}"
    );
}

/// Takes `partition` from its start (as a new holder) until it is empty.
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

/// Telegram's redeliveries racing on several webhook instances: every update stored many
/// times; a reader hands each out once, in order per chat, and acking empties the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_enqueued_concurrently_from_several_handles_are_handed_out_once() {
    let server = NatsServer::start().await.unwrap();
    let mut webhooks = Vec::new();
    for _ in 0..4 {
        webhooks.push(single(&server, "copies", 3).await);
    }
    let enqueues = webhooks.iter().map(|q| async move {
        for id in 1..=60u64 {
            assert_eq!(
                q.enqueue(&message(id, (id % 5) as i64)).await.unwrap(),
                Enqueued::Stored
            );
        }
    });
    futures_util::future::join_all(enqueues).await;
    let worker = single(&server, "copies", 3).await;
    assert_eq!(worker.queued().await.unwrap(), 240);
    let mut seen = BTreeSet::new();
    for partition in 0..3 {
        let items = take_all(&worker, partition).await;
        let ids: Vec<u64> = items.iter().map(|i| i.update_id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "partition {partition}: once each, in order");
        seen.extend(ids);
        for item in &items {
            worker.ack(item.seq, item.update_id).await.unwrap();
        }
    }
    assert_eq!(seen, (1..=60).collect::<BTreeSet<_>>());
    assert_eq!(worker.queued().await.unwrap(), 0, "copies removed");
    // Once handled, a redelivery is a duplicate at the door.
    assert_eq!(
        webhooks[0].enqueue(&message(7, 2)).await.unwrap(),
        Enqueued::Duplicate
    );
}

/// An update with a second copy queued behind it: failed, dead-lettered (once, listed once),
/// the copy dropped; redriven while the copy is still queued: it runs once, from the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettering_and_redriving_an_update_with_a_queued_copy_runs_it_once() {
    let server = NatsServer::start().await.unwrap();
    let queue = single(&server, "deadcopy", 1).await;
    // Update 1 twice (a repeated enqueue), update 2 twice.
    for id in [1, 1, 2, 2] {
        queue.enqueue(&message(id, 3)).await.unwrap();
    }
    // Update 1: failed, dead-lettered; its copy is then dropped by the reader.
    let a = queue.take(0, 0, 1, WAIT).await.unwrap().remove(0);
    assert_eq!(queue.fail(a.seq, "boom").await.unwrap(), 1);
    queue.dead_letter(a.seq).await.unwrap();
    // Update 2: dead-lettered, then redriven before the reader reached its copy.
    // A take may come back empty having only dropped a copy: as the runner, take again.
    let mut rest = Vec::new();
    for _ in 0..5 {
        rest = queue.take(0, a.seq + 1, 1, WAIT).await.unwrap();
        if !rest.is_empty() {
            break;
        }
    }
    let b = rest.into_iter().next().unwrap();
    assert_eq!(b.update_id, 2, "the copy of 1 is dropped, 2 comes next");
    queue.dead_letter(b.seq).await.unwrap();
    let letters = queue.dead_letters(10).await.unwrap();
    assert_eq!(
        letters.iter().map(|l| l.update_id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(letters[0].failed_attempts, 1);
    assert_eq!(queue.redrive(Some(vec![2])).await.unwrap(), 1);
    let next = take_all(&queue, 0).await;
    assert_eq!(
        next.iter()
            .map(|i| (i.update_id, i.failed_attempts))
            .collect::<Vec<_>>(),
        [(2, 0)],
        "update 2 once (its old copy; the redriven one dropped), update 1 not at all"
    );
    queue.ack(next[0].seq, 2).await.unwrap();
    assert!(take_all(&queue, 0).await.is_empty());
    assert_eq!(queue.queued().await.unwrap(), 0);
    assert_eq!(queue.dead_count().await.unwrap(), 1);
}

/// Regression (found by attack, fixed with it): deleting a message already gone is not "fine" as `delete` means it to be: nats-server
/// 2.9.10 answers code 500 / err_code 10057 "no message found", not 404 (src/queue.rs, `delete`).
/// A deposed holder and its successor both handle an update (by design): the second ack is an
/// error, which the worker's handler wrapper turns into a failed run, and runs it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_acked_by_a_deposed_holder_and_its_successor_acks_twice() {
    let server = NatsServer::start().await.unwrap();
    let old = single(&server, "ack2", 1).await;
    let new = single(&server, "ack2", 1).await;
    old.enqueue(&message(5, 1)).await.unwrap();
    let a = old.take(0, 0, 10, WAIT).await.unwrap().remove(0);
    let b = new.take(0, 0, 10, WAIT).await.unwrap().remove(0);
    assert_eq!(a.seq, b.seq);
    old.ack(a.seq, a.update_id).await.unwrap();
    new.ack(b.seq, b.update_id)
        .await
        .expect("acking a message already removed succeeds");
}

/// Same cause: a deposed holder and its successor both dead-letter one update. The second
/// dead-lettering must succeed; the two dead letters are listed once and redriven once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_dead_lettered_twice_is_listed_and_redriven_once() {
    let server = NatsServer::start().await.unwrap();
    let old = single(&server, "dead2", 1).await;
    let new = single(&server, "dead2", 1).await;
    old.enqueue(&message(5, 1)).await.unwrap();
    let a = old.take(0, 0, 10, WAIT).await.unwrap().remove(0);
    let b = new.take(0, 0, 10, WAIT).await.unwrap().remove(0);
    assert_eq!(a.seq, b.seq);
    old.dead_letter(a.seq).await.unwrap();
    let second = new.dead_letter(b.seq).await;
    assert_eq!(new.dead_count().await.unwrap(), 2);
    let letters = new.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "listed once");
    assert_eq!(new.redrive(None).await.unwrap(), 1);
    assert_eq!(new.dead_count().await.unwrap(), 0);
    let items = take_all(&new, 0).await;
    assert_eq!(items.iter().map(|i| i.update_id).collect::<Vec<_>>(), [5]);
    second.expect("dead-lettering a message already removed succeeds");
}

/// A partition taken again from the start while copies are queued: the first copy of each
/// update again, in order; the copies never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retake_from_the_start_hands_out_first_copies_in_order() {
    let server = NatsServer::start().await.unwrap();
    let queue = single(&server, "retake", 1).await;
    for id in [1, 2, 1, 3, 2, 3] {
        queue.enqueue(&message(id, 9)).await.unwrap();
    }
    let first = queue.take(0, 0, 2, WAIT).await.unwrap();
    assert_eq!(
        first.iter().map(|i| i.update_id).collect::<Vec<_>>(),
        [1, 2]
    );
    for _ in 0..2 {
        let again = take_all(&queue, 0).await;
        assert_eq!(
            again.iter().map(|i| i.update_id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            again[..2].iter().map(|i| i.seq).collect::<Vec<_>>(),
            first.iter().map(|i| i.seq).collect::<Vec<_>>()
        );
    }
    assert_eq!(queue.queued().await.unwrap(), 3, "the copies are gone");
}

/// Claims of never-held partitions on a 3-node cluster (`Nats-Expected-Last-Sequence`,
/// checked by every replica when it applies): exactly one winner per partition, while the
/// winners of the others renew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_partition_is_claimed_by_exactly_one_of_racing_owners() {
    let cluster = NatsCluster::start(3).await.unwrap();
    let lease = Duration::from_secs(20);
    let queues = handles(&cluster, "freerace", 5, 12, lease).await;
    let holders: Arc<Mutex<Vec<String>>> = Arc::default();
    for partition in 0..12 {
        let label = format!("owner-{partition}");
        let claims = race(&queues, partition, &label, lease);
        let renewals = {
            let holders = holders.lock().unwrap().clone();
            let q = queues[0].clone();
            async move {
                for (p, owner) in holders.iter().enumerate() {
                    assert!(
                        q.acquire(p as u32, owner, lease).await.unwrap(),
                        "{owner} renews"
                    );
                }
            }
        };
        let (won, ()) = tokio::join!(claims, renewals);
        assert!(won.len() <= 1, "partition {partition}: winners {won:?}");
        let holder = match won.into_iter().next() {
            Some(holder) => holder,
            // All refused because a renewal moved the stream on: a claim again wins.
            None => {
                let owner = format!("owner-{partition}-again");
                assert!(queues[1].acquire(partition, &owner, lease).await.unwrap());
                owner
            }
        };
        holders.lock().unwrap().push(holder);
    }
}

/// A holder's lease, between owners racing on a 3-node cluster: the holder renews, nobody else
/// gets it while it lasts, and once it ran out (the stream's `max_age`, on the servers' clock)
/// exactly one of the racing claims wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_ran_out_is_claimed_by_exactly_one_of_racing_owners() {
    let cluster = NatsCluster::start(3).await.unwrap();
    let lease = Duration::from_millis(1_500);
    let queues = handles(&cluster, "expiry", 4, 2, lease).await;
    let won = race(&queues, 1, "first", lease).await;
    assert_eq!(won.len(), 1, "winners {won:?}");
    let q = &queues[0];
    assert!(
        q.acquire(1, &won[0], lease).await.unwrap(),
        "the holder renews"
    );
    assert!(!q.acquire(1, "someone-else", lease).await.unwrap());
    tokio::time::sleep(lease + Duration::from_millis(1_500)).await;
    let next = race(&queues, 1, "second", lease).await;
    assert_eq!(next.len(), 1, "winners {next:?}");
}
