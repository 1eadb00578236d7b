//! Processes sharing the partitions: the split, a dead process's takeover, a process joining
//! and one leaving.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use telehook_queue::{QueueBackend, Workers, partition_of};

use super::{
    Deadline, LEASE, Log, TempDir, config, leases, live_members, message, open, spawn_workers,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_partitions_and_handle_everything_once_in_chat_order() {
    let dir = TempDir::new("share");
    let partitions = 4;
    let (qa, qb) = (open(&dir.db(), partitions), open(&dir.db(), partitions));
    let log = Log::default();
    let (stop_a, a) = spawn_workers(qa.clone(), "a", log.handler("a", |_| false));
    let (stop_b, b) = spawn_workers(qb.clone(), "b", log.handler("b", |_| false));
    // Both members claim their share (2 each) before the load, so both do work.
    let deadline = Deadline::new();
    loop {
        deadline.check("a 2/2 split");
        let held = leases(&dir.db());
        let by = |o: &str| held.values().filter(|h| *h == o).count();
        if by("a") == 2 && by("b") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The webhook side enqueues through both handles (two webhook processes).
    let total = 600u64;
    for id in 1..=total {
        let q = if id % 2 == 0 { &qa } else { &qb };
        q.enqueue(&message(id, (id % 24) as i64)).await.unwrap();
    }
    log.wait_until(|runs| runs.len() >= total as usize).await;
    stop_a.notify_one();
    stop_b.notify_one();
    let (ra, rb) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());

    log.assert_clean();
    let runs = log.runs();
    assert_eq!(runs.len(), total as usize, "each update once");
    // Each chat's partition is served by one process only (unless a renewal came late on a
    // loaded machine and the partition moved: allowed, drained first).
    let mut served: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for (owner, chat, id) in &runs {
        served
            .entry(partition_of(&message(*id, *chat), partitions))
            .or_default()
            .insert(owner.clone());
    }
    if ra.leases_lost + rb.leases_lost == 0 {
        assert!(served.values().all(|o| o.len() == 1), "{served:?}");
    }
    let a_runs = runs.iter().filter(|r| r.0 == "a").count();
    assert!(
        a_runs > 0 && a_runs < runs.len(),
        "both worked: a ran {a_runs}"
    );
    assert_eq!(qa.queued().await.unwrap(), 0);
    // Stopped: every lease released, no member left.
    assert!(leases(&dir.db()).is_empty());
    assert_eq!(live_members(&dir.db()), 0);
    // Renewals late on a loaded machine stop a partition's worker early (it drains and is
    // claimed again): allowed, and still never two holders.
    eprintln!("leases lost: a {}, b {}", ra.leases_lost, rb.leases_lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_processs_partitions_are_taken_over_and_its_unacked_updates_run_again_in_order() {
    let dir = TempDir::new("takeover");
    let partitions = 3;
    let total = 240u64;
    let handled_first = 120u64;
    {
        let q = open(&dir.db(), partitions);
        for id in 1..=total {
            q.enqueue(&message(id, (id % 12) as i64)).await.unwrap();
        }
    }
    let log = Log::default();
    // Process a: its own runtime; handles updates 1..=120, hangs on the others (taken,
    // never acked), then dies without releasing anything.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let qa = open(&dir.db(), partitions);
    let probe = open(&dir.db(), partitions);
    {
        let handler = log.handler("a", move |id| id > handled_first);
        // A hanging run keeps its concurrency slot: room for every chat of a partition, so
        // the chats not hanging yet get to their last update below 121.
        let mut config = config();
        config.concurrency = 12;
        let qa = qa.clone();
        runtime.spawn(Workers::new(qa).owner("a").lease(LEASE).run(
            handler,
            config,
            std::future::pending(),
        ));
    }
    drop(qa);
    log.wait_until(|runs| runs.len() >= handled_first as usize)
        .await;
    // Until a's acks are committed (the hanging ones are never acked), then kill it.
    let deadline = Deadline::new();
    while probe.queued().await.unwrap() > total - handled_first {
        deadline.check("a's acks");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(leases(&dir.db()).len(), 3, "a held every partition");
    runtime.shutdown_background();

    // Process b starts; a's leases run out, b takes the partitions over.
    let qb = open(&dir.db(), partitions);
    let (stop_b, b) = spawn_workers(qb.clone(), "b", log.handler("b", |_| false));
    log.wait_until(|runs| runs.len() >= total as usize).await;
    stop_b.notify_one();
    let report = b.await.unwrap().unwrap();

    // Nothing a acked runs again; everything else runs once, each chat in order (a's
    // hanging runs never finished, so they are not in the log).
    log.assert_clean();
    let runs = log.runs();
    assert_eq!(runs.len(), total as usize);
    let ids: BTreeSet<u64> = runs.iter().map(|r| r.2).collect();
    assert_eq!(ids.len(), total as usize, "an update ran twice");
    assert!(
        runs.iter()
            .all(|(owner, _, id)| (owner == "a") == (*id <= handled_first))
    );
    assert!(report.claimed >= 3, "{report:?}");
    assert_eq!(qb.queued().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_joining_gets_its_share_handed_over() {
    let dir = TempDir::new("rebalance");
    let partitions = 4;
    let qa = open(&dir.db(), partitions);
    let log = Log::default();
    let (stop_a, a) = spawn_workers(qa.clone(), "a", log.handler("a", |_| false));
    let deadline = Deadline::new();
    while leases(&dir.db()).len() < 4 {
        deadline.check("a claiming every partition");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Load while a holds everything, and keep it coming while b joins.
    let mut next = 1u64;
    let chats = 16i64;
    let mut enqueue = async |n: u64| {
        for _ in 0..n {
            qa.enqueue(&message(next, (next as i64) % chats))
                .await
                .unwrap();
            next += 1;
        }
        next - 1
    };
    enqueue(200).await;
    let qb = open(&dir.db(), partitions);
    let (stop_b, b) = spawn_workers(qb.clone(), "b", log.handler("b", |_| false));
    let mut sent;
    let deadline = Deadline::new();
    loop {
        deadline.check("a 2/2 split");
        sent = enqueue(20).await;
        let held = leases(&dir.db());
        let by = |o: &str| held.values().filter(|h| *h == o).count();
        if by("a") == 2 && by("b") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent = enqueue(200).await.max(sent);
    log.wait_until(|runs| runs.len() >= sent as usize).await;
    stop_a.notify_one();
    stop_b.notify_one();
    let (ra, rb) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());

    log.assert_clean();
    let runs = log.runs();
    assert_eq!(runs.len(), sent as usize, "each update once");
    assert!(runs.iter().any(|r| r.0 == "b"), "b got work");
    assert!(ra.handed_over >= 2, "{ra:?}");
    assert!(rb.claimed >= 2, "{rb:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_stops_hands_everything_to_the_one_left() {
    let dir = TempDir::new("leave");
    let partitions = 4;
    let (qa, qb) = (open(&dir.db(), partitions), open(&dir.db(), partitions));
    let log = Log::default();
    let (stop_a, a) = spawn_workers(qa.clone(), "a", log.handler("a", |_| false));
    let (stop_b, b) = spawn_workers(qb.clone(), "b", log.handler("b", |_| false));
    let by = |o: &str| leases(&dir.db()).values().filter(|h| *h == o).count();
    let deadline = Deadline::new();
    while by("a") != 2 || by("b") != 2 {
        deadline.check("a 2/2 split");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in 1..=200u64 {
        qa.enqueue(&message(id, (id % 16) as i64)).await.unwrap();
    }
    // a stops gracefully while updates are queued: it drains, releases, leaves.
    stop_a.notify_one();
    let ra = a.await.unwrap().unwrap();
    assert_eq!(live_members(&dir.db()), 1);
    assert_eq!(by("a"), 0, "a released its leases");
    for id in 201..=400u64 {
        qa.enqueue(&message(id, (id % 16) as i64)).await.unwrap();
    }
    log.wait_until(|runs| runs.len() >= 400).await;
    // b takes every partition.
    let deadline = Deadline::new();
    while by("b") != 4 {
        deadline.check("b holding every partition");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_b.notify_one();
    let rb = b.await.unwrap().unwrap();

    log.assert_clean();
    assert_eq!(log.runs().len(), 400, "each update once");
    assert!(rb.claimed >= 4, "{rb:?}");
    assert!(!ra.runs.is_empty());
    assert_eq!(qb.queued().await.unwrap(), 0);
}
