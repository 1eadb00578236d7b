//! Queue mode on real SQLite files: order on 1 and 3 workers, a crash loses nothing, the error
//! policy then the dead-letter list and re-drive, a full queue refuses, a duplicate runs once.
//!
//! One test binary, its tests in topic modules under `tests/queue/`; the helpers they share
//! are here.

// A test crate root resolves `mod x;` to `tests/x.rs`, which cargo would build as a test
// binary of its own: the paths keep the modules under `tests/queue/`.
#[path = "queue/storage.rs"]
mod storage;
#[path = "queue/webhook.rs"]
mod webhook;
#[path = "queue/workers.rs"]
mod workers;

use std::path::PathBuf;

use telehook_core::Update;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("telehook-queue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn db(&self) -> PathBuf {
        self.0.join("queue.sqlite3")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn message(update_id: u64, chat: i64) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"date":1,"chat":{{"id":{chat},"type":"private"}},"text":"hi"}}}}"#
    ))
    .unwrap()
}
