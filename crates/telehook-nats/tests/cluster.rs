//! A 3-node JetStream cluster on loopback, streams with 3 replicas: killing a node (`kill -9`,
//! the stream's leader) loses nothing acknowledged, the queue keeps working, and the node
//! comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use telehook_core::Update;
use telehook_nats::NatsQueue;
use telehook_nats::testing::NatsCluster;
use telehook_queue::{QueueBackend, QueuedItem};

fn message(update_id: u64, chat: i64) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"date":1,"chat":{{"id":{chat},"type":"private"}},"text":"hi"}}}}"#
    ))
    .unwrap()
}

const CHATS: u64 = 30;

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}

/// Enqueues `ids` as a webhook under Telegram's retries would: a refused enqueue (an error
/// answer) is delivered again until it is acknowledged. Returns the acknowledged ids.
async fn deliver(queue: &NatsQueue, ids: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    let mut acknowledged = Vec::new();
    for id in ids {
        let update = message(id, (id % CHATS) as i64);
        let mut attempts = 0;
        while let Err(e) = queue.enqueue(&update).await {
            attempts += 1;
            eprintln!("update {id}: {}", chain(&e));
            assert!(
                attempts < 100,
                "update {id} never acknowledged: {}",
                chain(&e)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        acknowledged.push(id);
    }
    acknowledged
}

/// Everything queued, partition by partition (as workers that just claimed them), retrying
/// while the cluster elects leaders.
async fn take_everything(queue: &NatsQueue) -> BTreeMap<u32, Vec<QueuedItem>> {
    let mut all = BTreeMap::new();
    for partition in 0..queue.partitions() {
        let mut items: Vec<QueuedItem> = Vec::new();
        let mut attempts = 0;
        loop {
            let from = items.last().map_or(0, |i| i.seq + 1);
            match queue
                .take(partition, from, 1_000, Duration::from_millis(300))
                .await
            {
                Ok(more) if more.is_empty() => break,
                Ok(more) => items.extend(more),
                Err(e) => {
                    attempts += 1;
                    eprintln!("take {partition}: {}", chain(&e));
                    assert!(attempts < 30, "partition {partition} unreadable: {e}");
                    // Read it again from the start, as a new holder would.
                    items.clear();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        all.insert(partition, items);
    }
    all
}

fn check(all: &BTreeMap<u32, Vec<QueuedItem>>, expected: &BTreeSet<u64>) {
    let mut seen = BTreeSet::new();
    for (partition, items) in all {
        let mut last_per_chat: BTreeMap<i64, u64> = BTreeMap::new();
        for item in items {
            assert!(
                seen.insert(item.update_id),
                "update {} twice",
                item.update_id
            );
            let chat = (item.update_id % CHATS) as i64;
            if let Some(last) = last_per_chat.insert(chat, item.update_id) {
                assert!(
                    last < item.update_id,
                    "partition {partition}: chat {chat} out of order ({last} then {})",
                    item.update_id
                );
            }
        }
    }
    let lost: Vec<_> = expected.difference(&seen).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_lose_nothing_acknowledged_when_a_node_is_killed_and_comes_back() {
    let mut cluster = NatsCluster::start(3).await.unwrap();
    let queue = NatsQueue::builder(cluster.urls())
        .name("ha")
        .replicas(3)
        .partitions(3)
        .op_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut acknowledged: BTreeSet<u64> = deliver(&queue, 1..=200).await.into_iter().collect();

    // kill -9 the node leading the queue's stream: the worst one to lose.
    let leader = queue.stream_leader().await.unwrap().expect("a leader");
    let killed = cluster.node_index(&leader).expect("a node of the cluster");
    cluster.kill(killed);
    acknowledged.extend(deliver(&queue, 201..=400).await);

    // Everything acknowledged is there, once, each chat in order; half of it is handled.
    let all = take_everything(&queue).await;
    check(&all, &acknowledged);
    for items in all.values() {
        for item in items.iter().filter(|i| i.update_id % 2 == 0) {
            queue.ack(item.seq, item.update_id).await.unwrap();
        }
    }
    acknowledged.retain(|id| id % 2 == 1);

    // The node comes back; then another one dies: still nothing lost.
    cluster.restart(killed).await.unwrap();
    acknowledged.extend(deliver(&queue, 401..=500).await);
    let other = (killed + 1) % 3;
    cluster.kill(other);
    acknowledged.extend(deliver(&queue, 501..=550).await);
    let all = take_everything(&queue).await;
    check(&all, &acknowledged);
    let taken: usize = all.values().map(Vec::len).sum();
    assert_eq!(taken, acknowledged.len(), "nothing handled runs again");
}
