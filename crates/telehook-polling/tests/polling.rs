//! Long polling against the Bot API emulator over real HTTP on loopback.
//!
//! One test binary; the tests are split by topic into the modules under `tests/polling/`
//! (named with `#[path]`, as this crate root would otherwise look for them in `tests/`, where
//! cargo would build each as a test binary of its own).

#[path = "polling/delivery.rs"]
mod delivery;
#[path = "polling/faults.rs"]
mod faults;
#[path = "polling/max_held.rs"]
mod max_held;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_api::Bot;
use telehook_core::Update;
use telehook_emulator::{BotHandle, Emulator, Timing, User};
use telehook_polling::Polling;
use tokio::sync::Notify;

const TOKEN: &str = "123456:polling-test-token";

async fn emulator() -> (Emulator, BotHandle) {
    let emu = Emulator::builder()
        .bot(TOKEN)
        .timing(Timing::scaled(0.01))
        .start()
        .await
        .expect("emulator");
    let tg = emu.bot(TOKEN).expect("bot");
    (emu, tg)
}

fn polling(emu: &Emulator) -> Polling {
    let bot = Bot::builder(TOKEN).base_url(emu.base_url()).build();
    Polling::new(bot)
        .timeout(Duration::from_secs(30))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
}

/// Records every handled update and checks that no chat ever has two in flight.
#[derive(Clone, Default)]
struct Log {
    handled: Arc<Mutex<Vec<(i64, u64)>>>,
    in_flight: Arc<Mutex<HashSet<i64>>>,
    overlaps: Arc<AtomicUsize>,
    count: Arc<AtomicUsize>,
    reached: Arc<Notify>,
}

impl Log {
    async fn handle(&self, update: &Update, delay: Duration) {
        let chat = update.chat_id().expect("chat");
        if !self.in_flight.lock().unwrap().insert(chat) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(delay).await;
        self.handled
            .lock()
            .unwrap()
            .push((chat, update.update_id()));
        self.in_flight.lock().unwrap().remove(&chat);
        self.count.fetch_add(1, Ordering::SeqCst);
        self.reached.notify_waiters();
    }

    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let notified = self.reached.notified();
                if self.count.load(Ordering::SeqCst) >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} of {n} updates handled in 60 s",
                self.count.load(Ordering::SeqCst)
            )
        });
    }

    fn ids(&self) -> Vec<u64> {
        self.handled
            .lock()
            .unwrap()
            .iter()
            .map(|(_, id)| *id)
            .collect()
    }
}

/// A pseudo-random delay in 0..4 ms, fixed per update.
fn delay_for(update_id: u64) -> Duration {
    Duration::from_micros(update_id.wrapping_mul(2_654_435_761) % 4_000)
}

fn inject_round_robin(tg: &BotHandle, chats: i64, total: usize) -> Vec<u64> {
    (0..total)
        .map(|i| {
            // A scrambled but deterministic chat order.
            let chat = (i as i64 * 7 + i as i64 / 3) % chats;
            tg.private_text(&User::new(10_000 + chat, "User"), &format!("message {i}"))
                .update_id
        })
        .collect()
}
