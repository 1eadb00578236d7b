//! Delivery: every update handled once, in chat order, across restarts, hung and slow
//! handlers, and failing ones.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use telehook_core::{Context, HandlerError, Update};
use telehook_emulator::User;
use telehook_polling::HandlerTimeout;
use tokio::sync::Notify;

use crate::{Log, delay_for, emulator, inject_round_robin, polling};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_updates_over_forty_chats_each_once_in_chat_order() {
    let (emu, tg) = emulator().await;
    let injected = inject_round_robin(&tg, 40, 2_000);
    let log = Log::default();
    let handler_log = log.clone();
    let stop_log = log.clone();
    let report = polling(&emu)
        .concurrency(16)
        .run(
            move |update: Update, _ctx: Context| {
                let log = handler_log.clone();
                async move {
                    log.handle(&update, delay_for(update.update_id())).await;
                    Ok::<_, HandlerError>(())
                }
            },
            async move { stop_log.wait_for(2_000).await },
        )
        .await
        .expect("polling");

    let mut ids = log.ids();
    assert_eq!(ids.len(), 2_000, "every update handled once");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, injected, "no update lost or handled twice");
    let mut last: HashMap<i64, u64> = HashMap::new();
    for (chat, id) in log.handled.lock().unwrap().iter() {
        let previous = last.insert(*chat, *id);
        assert!(
            previous.is_none_or(|p| p < *id),
            "chat {chat}: update {id} after {previous:?}"
        );
    }
    assert_eq!(
        log.overlaps.load(Ordering::SeqCst),
        0,
        "two updates of one chat were in flight at once"
    );
    assert_eq!(report.handled, 2_000);
    assert_eq!(report.confirmed_offset, Some(injected.last().unwrap() + 1));
    assert_eq!(
        tg.pending_update_count(),
        0,
        "the last offset was confirmed when stopping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_in_the_middle_then_restart_loses_nothing_and_repeats_nothing() {
    let (emu, tg) = emulator().await;
    let injected = inject_round_robin(&tg, 10, 300);
    let first = Log::default();
    let (handler_log, stop_log) = (first.clone(), first.clone());
    let report = polling(&emu)
        .concurrency(8)
        .run(
            move |update: Update, _ctx: Context| {
                let log = handler_log.clone();
                async move {
                    log.handle(&update, Duration::from_millis(2)).await;
                    Ok::<_, HandlerError>(())
                }
            },
            async move { stop_log.wait_for(100).await },
        )
        .await
        .expect("first run");
    let handled_first = first.ids();
    assert!(
        handled_first.len() >= 100 && handled_first.len() < 300,
        "stopped mid-way: {}",
        handled_first.len()
    );
    assert!(
        report.unfinished.is_empty() && report.not_started.is_empty(),
        "{report:?}"
    );

    let second = Log::default();
    let (handler_log, stop_log) = (second.clone(), second.clone());
    let remaining = 300 - handled_first.len();
    polling(&emu)
        .concurrency(8)
        .skip_update_ids(report.handled_beyond_offset.clone())
        .run(
            move |update: Update, _ctx: Context| {
                let log = handler_log.clone();
                async move {
                    log.handle(&update, Duration::ZERO).await;
                    Ok::<_, HandlerError>(())
                }
            },
            async move { stop_log.wait_for(remaining).await },
        )
        .await
        .expect("second run");
    let mut all: Vec<u64> = handled_first.into_iter().chain(second.ids()).collect();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        total,
        "an update was handled twice across the restart"
    );
    assert_eq!(all, injected, "an update was lost across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_handler_blocks_only_its_own_chat() {
    let (emu, tg) = emulator().await;
    let stuck_user = User::new(1, "Stuck");
    let first_stuck = tg.private_text(&stuck_user, "hang").update_id;
    let others: Vec<u64> = (0..50)
        .map(|i| {
            tg.private_text(&User::new(100 + i % 5, "Other"), "hi")
                .update_id
        })
        .collect();
    let second_stuck = tg.private_text(&stuck_user, "after the hang").update_id;

    let release = Arc::new(Notify::new());
    let log = Log::default();
    let (handler_log, handler_release) = (log.clone(), release.clone());
    let done = Arc::new(Notify::new());
    let stop = done.clone();
    let poller = tokio::spawn(polling(&emu).concurrency(4).run(
        move |update: Update, _ctx: Context| {
            let (log, release) = (handler_log.clone(), handler_release.clone());
            async move {
                if update.update_id() == first_stuck {
                    release.notified().await;
                }
                log.handle(&update, Duration::ZERO).await;
                Ok::<_, HandlerError>(())
            }
        },
        async move { stop.notified().await },
    ));
    log.wait_for(50).await;
    let handled: HashSet<u64> = log.ids().into_iter().collect();
    assert!(
        others.iter().all(|id| handled.contains(id)),
        "other chats were delayed by the hung one"
    );
    assert!(
        !handled.contains(&second_stuck),
        "the stuck chat's next update overtook the hung one"
    );
    release.notify_one();
    log.wait_for(52).await;
    let ids = log.ids();
    let pos = |id: u64| ids.iter().position(|x| *x == id).unwrap();
    assert!(pos(first_stuck) < pos(second_stuck));
    done.notify_one();
    poller.await.unwrap().expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_timeout_with_move_on_lets_the_chat_continue() {
    let (emu, tg) = emulator().await;
    let user = User::new(7, "Slow");
    let slow = tg.private_text(&user, "slow").update_id;
    let next = tg.private_text(&user, "next").update_id;
    let log = Log::default();
    let (handler_log, stop_log) = (log.clone(), log.clone());
    let report = polling(&emu)
        .handler_timeout(Duration::from_millis(50), HandlerTimeout::MoveOn)
        .run(
            move |update: Update, _ctx: Context| {
                let log = handler_log.clone();
                async move {
                    if update.update_id() == slow {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    log.handle(&update, Duration::ZERO).await;
                    Ok::<_, HandlerError>(())
                }
            },
            async move { stop_log.wait_for(2).await },
        )
        .await
        .expect("polling");
    let ids = log.ids();
    assert_eq!(
        ids,
        vec![next, slow],
        "the next update should run while the slow one is still going"
    );
    assert_eq!(report.confirmed_offset, Some(next + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handler_is_retried_then_given_up_and_confirmed() {
    let (emu, tg) = emulator().await;
    let id = tg.private_text(&User::new(3, "Err"), "fail").update_id;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let report = polling(&emu)
        .retry_delay(Duration::from_millis(5))
        .run(
            move |_: Update, _: Context| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Err::<(), HandlerError>("always fails".into())
                }
            },
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
            },
        )
        .await
        .expect("polling");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "default bounded retry: 3 attempts"
    );
    assert_eq!(report.given_up, 1);
    assert_eq!(report.confirmed_offset, Some(id + 1));
}
