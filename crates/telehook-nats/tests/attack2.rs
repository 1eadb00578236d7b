//! Attacks on `connect` (replicas refused, streams left alone when they match, placement
//! retried), on the partition count recorded in the queue stream's description, and on the
//! compare-and-set lease writes under contention, against real nats-server processes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use telehook_core::{Context, HandlerError, Update};
use telehook_nats::NatsQueue;
use telehook_nats::testing::{NatsCluster, NatsServer};
use telehook_queue::{QueueBackend, QueueError, RunnerConfig, Workers};

fn message(update_id: u64, chat: i64) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"date":1,"chat":{{"id":{chat},"type":"private"}},"text":"hi"}}}}"#
    ))
    .unwrap()
}

fn builder(urls: Vec<String>, name: &str, partitions: u32) -> telehook_nats::NatsQueueBuilder {
    NatsQueue::builder(urls).name(name).partitions(partitions)
}

/// Owners racing for partition 0 of a lease stream nobody ever wrote to (its last sequence is
/// 0): `Nats-Expected-Last-Sequence: 0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_very_first_claims_of_a_fresh_queue_have_one_winner() {
    let server = NatsServer::start().await.unwrap();
    let lease = Duration::from_secs(20);
    let mut doubles = Vec::new();
    for round in 0..10 {
        let name = format!("first{round}");
        let mut queues = Vec::new();
        for _ in 0..5 {
            queues.push(
                builder(vec![server.url()], &name, 2)
                    .connect()
                    .await
                    .unwrap(),
            );
        }
        let claims = queues.iter().enumerate().map(|(i, q)| {
            let owner = format!("owner-{i}");
            async move { (q.acquire(0, &owner, lease).await.unwrap(), owner) }
        });
        let won: Vec<String> = futures_util::future::join_all(claims)
            .await
            .into_iter()
            .filter_map(|(won, owner)| won.then_some(owner))
            .collect();
        if won.len() > 1 {
            doubles.push((round, won));
        }
    }
    assert!(doubles.is_empty(), "two holders at once: {doubles:?}");
}

/// The stream config of `stream`, as the server keeps it.
async fn config_of(url: String, stream: &str) -> async_nats::jetstream::stream::Config {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone()
}

/// A chat whose partition is `p` of `partitions`.
fn chat_in(partition: u32, partitions: u32, not_in: Option<(u32, u32)>) -> i64 {
    (1..10_000)
        .find(|&c| {
            telehook_queue::partition_of(&message(1, c), partitions) == partition
                && not_in.is_none_or(|(q, n)| telehook_queue::partition_of(&message(1, c), n) != q)
        })
        .unwrap()
}

/// A queue created with a bound (capacity, bytes, retention) then opened by a process with
/// the defaults (a webhook started without the options): is the bound kept?
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_with_default_limits_keeps_the_queues_bounds() {
    let server = NatsServer::start().await.unwrap();
    let _bounded = builder(vec![server.url()], "bounds", 2)
        .capacity(10)
        .max_bytes(100_000)
        .completed_retention(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    let _default = builder(vec![server.url()], "bounds", 2)
        .connect()
        .await
        .unwrap();
    let main = config_of(server.url(), "bounds").await;
    let state = config_of(server.url(), "bounds_state").await;
    assert_eq!(
        (main.max_messages, main.max_bytes, state.max_age),
        (10, 100_000, Duration::from_secs(3600)),
        "the bounds the queue was created with"
    );
}

/// The recorded partition count while workers are live and the queue holds updates (in a
/// partition below the new count): a process asking for 3 partitions of an 8-partition
/// queue is refused — also when it asks for another capacity too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_partition_count_with_another_capacity_is_refused_too() {
    let server = NatsServer::start().await.unwrap();
    let eight = builder(vec![server.url()], "repart", 8)
        .connect()
        .await
        .unwrap();
    assert!(
        eight
            .members("worker-a", Duration::from_secs(30))
            .await
            .is_ok()
    );
    let chat = chat_in(0, 8, None);
    eight.enqueue(&message(1, chat)).await.unwrap();
    // Same capacity: refused, as documented.
    let same = builder(vec![server.url()], "repart", 3).connect().await;
    assert!(
        matches!(
            same,
            Err(QueueError::PartitionsChanged {
                stored: 8,
                asked: 3
            })
        ),
        "{same:?}"
    );
    // Another capacity as well.
    let other = builder(vec![server.url()], "repart", 3)
        .capacity(5_000)
        .connect()
        .await;
    assert!(
        matches!(
            other,
            Err(QueueError::PartitionsChanged {
                stored: 8,
                asked: 3
            })
        ),
        "a 3-partition process opened an 8-partition queue with live workers: {other:?}"
    );
    // And the queue's own processes still open it.
    let again = builder(vec![server.url()], "repart", 8).connect().await;
    assert!(again.is_ok(), "an 8-partition process refused: {again:?}");
}

/// Re-partitioning is explicit: a process asking for 8 partitions of a drained 3-partition
/// queue with no worker live is refused unless it calls `repartition()` (a webhook handle
/// still open with 3 would put one chat in two partitions; the operator stops every process
/// first, as the builder's docs say).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repartition_is_refused_unless_asked_for() {
    let server = NatsServer::start().await.unwrap();
    let three = builder(vec![server.url()], "oldhandle", 3)
        .connect()
        .await
        .unwrap();
    let eight = builder(vec![server.url()], "oldhandle", 8).connect().await;
    assert!(
        matches!(
            eight,
            Err(QueueError::PartitionsChanged {
                stored: 3,
                asked: 8
            })
        ),
        "{eight:?}"
    );
    drop(three);
    let eight = builder(vec![server.url()], "oldhandle", 8)
        .repartition()
        .connect()
        .await
        .unwrap();
    assert_eq!(eight.partitions(), 8);
}

/// Two processes with different partition counts opening a fresh queue at the same moment:
/// at most one of them may succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_with_different_partitions_opening_together_are_not_both_accepted() {
    let server = NatsServer::start().await.unwrap();
    let mut both = Vec::new();
    for round in 0..5 {
        let name = format!("together{round}");
        let (a, b) = tokio::join!(
            builder(vec![server.url()], &name, 3).connect(),
            builder(vec![server.url()], &name, 8).connect()
        );
        if a.is_ok() && b.is_ok() {
            let recorded = config_of(server.url(), &name).await.description;
            both.push((round, recorded));
        }
    }
    assert!(both.is_empty(), "3 and 8 partitions both opened: {both:?}");
}

/// A queue named like another queue's dead-letter stream (`shop` and `shop_dead`): opening
/// one must not take over the other's streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_named_like_another_queues_stream_does_not_take_it_over() {
    let server = NatsServer::start().await.unwrap();
    let shop = builder(vec![server.url()], "shop", 1)
        .connect()
        .await
        .unwrap();
    let other = builder(vec![server.url()], "shop_dead", 1).connect().await;
    let dead = config_of(server.url(), "shop_dead").await;
    assert_eq!(
        dead.subjects,
        vec!["shop.dead".to_owned()],
        "queue `shop_dead` ({:?}) rewrote queue `shop`'s dead-letter stream",
        other.as_ref().map(|_| ())
    );
    // `shop` can still dead-letter.
    shop.enqueue(&message(1, 1)).await.unwrap();
    let item = shop.take(0, 0, 1, Duration::ZERO).await.unwrap().remove(0);
    shop.dead_letter(item.seq).await.unwrap();
}

/// Replicas 3 asked of a single server: refused, with an error naming the cause, within the
/// operation bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_server_fail_clearly() {
    let server = NatsServer::start().await.unwrap();
    let started = Instant::now();
    let result = builder(vec![server.url()], "toomany", 1)
        .replicas(3)
        .op_timeout(Duration::from_secs(2))
        .connect()
        .await;
    let took = started.elapsed();
    let error = format!("{:?}", result.as_ref().err());
    assert!(error.contains("replicas"), "after {took:?}: {error}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

/// Opening a 3-replica queue while one node of three is paused (SIGSTOP, as a host that
/// stopped answering: its TCP port still accepts, nothing answers). The client shuffles the
/// URLs; each open must reach one of the two live nodes within `op_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_while_a_node_is_paused_succeeds() {
    let mut cluster = NatsCluster::start(3).await.unwrap();
    let urls = cluster.urls();
    let open = || {
        builder(urls.clone(), "paused", 4)
            .replicas(3)
            .op_timeout(Duration::from_secs(10))
            .connect()
    };
    open().await.unwrap().enqueue(&message(1, 1)).await.unwrap();
    cluster.pause(2);
    let mut failed = Vec::new();
    for attempt in 0..5 {
        let started = Instant::now();
        if let Err(e) = open().await {
            failed.push((attempt, started.elapsed(), format!("{e:?}")));
        }
    }
    cluster.resume(2);
    assert!(
        failed.is_empty(),
        "opens failed with 2 of 3 nodes up: {failed:?}"
    );
}

/// One handler run: chat, update, start and end.
type Run = (i64, u64, Instant, Instant);

/// Four `Workers` processes (a connection each) on 16 partitions with a 1 s lease on a
/// 3-node cluster, updates arriving meanwhile: every lease write is a compare-and-set on the
/// whole lease stream. No chat ever runs in two workers at once, each chat runs in order,
/// and the partitions are not lost over and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_on_sixteen_partitions_with_a_short_lease() {
    let cluster = NatsCluster::start(3).await.unwrap();
    let lease = Duration::from_secs(1);
    let (partitions, total, chats) = (16, 600_u64, 48_i64);
    let mut queues = Vec::new();
    for i in 0..5 {
        let mut urls = cluster.urls();
        urls.rotate_left(i % 3);
        queues.push(
            builder(urls, "contend", partitions)
                .replicas(3)
                .lease(lease)
                .connect()
                .await
                .unwrap(),
        );
    }
    let producer = queues.pop().unwrap();
    let runs: Arc<Mutex<Vec<Run>>> = Arc::default();
    let done = Arc::new(tokio::sync::Notify::new());
    let stop = Arc::new(tokio::sync::watch::channel(false).0);
    let mut config = RunnerConfig::default();
    config.concurrency = 8;
    config.retry_delay = Duration::from_millis(1);
    let mut tasks = Vec::new();
    for (i, queue) in queues.into_iter().enumerate() {
        let runs = Arc::clone(&runs);
        let done = Arc::clone(&done);
        let handler = move |update: Update, _ctx: Context| {
            let runs = Arc::clone(&runs);
            let done = Arc::clone(&done);
            async move {
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(3)).await;
                let chat = update.chat_id().unwrap_or(0);
                let mut runs = runs.lock().unwrap();
                runs.push((chat, update.update_id(), start, Instant::now()));
                let distinct: std::collections::BTreeSet<u64> = runs.iter().map(|r| r.1).collect();
                if distinct.len() as u64 >= total {
                    done.notify_one();
                }
                Ok::<_, HandlerError>(())
            }
        };
        let mut stopped = stop.subscribe();
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            Workers::new(queue)
                .owner(format!("w{i}"))
                .lease(lease)
                .run(handler, config, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        }));
    }
    let started = Instant::now();
    for id in 1..=total {
        producer
            .enqueue(&message(id, id as i64 % chats))
            .await
            .unwrap();
        if id % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let enqueued = started.elapsed();
    let finished = tokio::time::timeout(Duration::from_secs(20), done.notified()).await;
    stop.send_replace(true);
    let mut lost = 0;
    let mut claimed = 0;
    for task in tasks {
        let report = task.await.unwrap().unwrap();
        lost += report.leases_lost;
        claimed += report.claimed;
    }
    let runs = runs.lock().unwrap().clone();
    let summary = format!(
        "enqueued in {enqueued:?}, finished {:?} after {:?}; {} runs; leases lost {lost}, claimed {claimed}",
        finished.is_ok(),
        started.elapsed(),
        runs.len()
    );
    let mut per_chat: BTreeMap<i64, Vec<Run>> = BTreeMap::new();
    for run in &runs {
        per_chat.entry(run.0).or_default().push(*run);
    }
    for (chat, mut chat_runs) in per_chat {
        chat_runs.sort_by_key(|r| r.2);
        for w in chat_runs.windows(2) {
            assert!(
                w[1].2 >= w[0].3,
                "chat {chat}: {} and {} ran at once",
                w[0].1,
                w[1].1
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        let firsts: Vec<u64> = chat_runs
            .iter()
            .map(|r| r.1)
            .filter(|id| seen.insert(*id))
            .collect();
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "chat {chat} out of order: {firsts:?}"
        );
    }
    assert!(
        finished.is_ok(),
        "not every update ran within 20 s of the last enqueue: {summary}"
    );
    assert!(lost <= 4, "partition runs lost their lease: {summary}");
}

/// Renewals alone (nobody else claims): four owners holding four partitions each renew them
/// together every third of a 1 s lease, as `Workers` does. A renewal of a lease nobody else
/// wants must never be answered "not yours" (`false`: the worker stops at once), nor take
/// longer than the third of the lease `Workers` gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_of_held_leases_are_never_refused() {
    let cluster = NatsCluster::start(3).await.unwrap();
    let lease = Duration::from_secs(1);
    let mut queues = Vec::new();
    for i in 0..4 {
        let mut urls = cluster.urls();
        urls.rotate_left(i % 3);
        queues.push(
            builder(urls, "renew", 16)
                .replicas(3)
                .lease(lease)
                .connect()
                .await
                .unwrap(),
        );
    }
    for (i, q) in queues.iter().enumerate() {
        for p in 0..4 {
            assert!(
                q.acquire(4 * i as u32 + p, &format!("o{i}"), lease)
                    .await
                    .unwrap()
            );
        }
    }
    let refused = Arc::new(Mutex::new(Vec::new()));
    let slow = Arc::new(Mutex::new(Vec::new()));
    let owners = queues.iter().enumerate().map(|(i, q)| {
        let (refused, slow) = (Arc::clone(&refused), Arc::clone(&slow));
        async move {
            for round in 0..9 {
                let renewals = (0..4).map(|p| {
                    let partition = 4 * i as u32 + p;
                    async move {
                        let started = Instant::now();
                        let result = q.acquire(partition, &format!("o{i}"), lease).await;
                        (partition, result, started.elapsed())
                    }
                });
                for (partition, result, took) in futures_util::future::join_all(renewals).await {
                    match result {
                        Ok(true) => {}
                        other => {
                            refused
                                .lock()
                                .unwrap()
                                .push((round, partition, format!("{other:?}")));
                        }
                    }
                    if took > lease / 3 {
                        slow.lock().unwrap().push((round, partition, took));
                    }
                }
                tokio::time::sleep(lease / 3).await;
            }
        }
    });
    futures_util::future::join_all(owners).await;
    let (refused, slow) = (
        refused.lock().unwrap().clone(),
        slow.lock().unwrap().clone(),
    );
    assert!(
        refused.is_empty(),
        "{} of 144 renewals refused: {refused:?}",
        refused.len()
    );
    assert!(slow.is_empty(), "renewals slower than lease/3: {slow:?}");
}
