//! Files the bot sent: opaque, unique `file_id`s, `getFile` paths and the bytes behind the
//! download route `/file/bot{token}/{file_path}`.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// One stored file.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    pub(crate) file_id: String,
    pub(crate) file_unique_id: String,
    pub(crate) file_path: String,
    pub(crate) bytes: Bytes,
    pub(crate) file_name: Option<String>,
    pub(crate) mime_type: Option<String>,
}

impl StoredFile {
    /// The fields every file object has.
    pub(crate) fn base(&self) -> Value {
        json!({
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.bytes.len(),
        })
    }

    /// The Bot API `File` object (`getFile`).
    pub(crate) fn file_object(&self) -> Value {
        let mut file = self.base();
        file["file_path"] = json!(self.file_path);
        file
    }
}

/// Every file of one bot, bounded in count and in bytes (the oldest goes first).
#[derive(Debug, Default)]
pub(crate) struct FileStore {
    by_id: HashMap<String, StoredFile>,
    order: VecDeque<String>,
    bytes: usize,
    next: u64,
    salt: u64,
}

impl FileStore {
    /// Stores a new file of `kind` (`photos`, `documents`, …) and gives it fresh ids.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        bot_id: i64,
        kind: &str,
        bytes: Bytes,
        file_name: Option<String>,
        mime_type: Option<String>,
        max_files: usize,
        max_bytes: usize,
    ) -> StoredFile {
        if self.salt == 0 {
            self.salt = RandomState::new().hash_one(bot_id) | 1;
        }
        self.next += 1;
        let n = self.next;
        // Opaque, like Telegram's: the bot id, a counter and a salt, base64url-encoded.
        let mut raw = Vec::with_capacity(25);
        raw.push(kind.len() as u8);
        raw.extend_from_slice(&bot_id.to_le_bytes());
        raw.extend_from_slice(&n.to_le_bytes());
        raw.extend_from_slice(&self.salt.to_le_bytes());
        let file_id = URL_SAFE_NO_PAD.encode(&raw);
        let mut unique = Vec::with_capacity(12);
        unique.extend_from_slice(&n.to_le_bytes());
        unique.extend_from_slice(&(self.salt as u32).to_le_bytes());
        let file_unique_id = URL_SAFE_NO_PAD.encode(&unique);
        let extension = file_name
            .as_deref()
            .and_then(|name| name.rsplit_once('.'))
            .map(|(_, ext)| ext)
            .filter(|ext| {
                !ext.is_empty() && ext.len() <= 8 && ext.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            .unwrap_or(default_extension(kind));
        let file = StoredFile {
            file_id: file_id.clone(),
            file_unique_id,
            file_path: format!("{kind}/file_{n}.{extension}"),
            bytes,
            file_name,
            mime_type,
        };
        self.bytes += file.bytes.len();
        self.by_id.insert(file_id.clone(), file.clone());
        self.order.push_back(file_id);
        while self.order.len() > max_files.max(1)
            || (self.bytes > max_bytes && self.order.len() > 1)
        {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.by_id.remove(&oldest) {
                self.bytes -= gone.bytes.len();
            }
        }
        file
    }

    pub(crate) fn get(&self, file_id: &str) -> Option<&StoredFile> {
        self.by_id.get(file_id)
    }

    pub(crate) fn by_path(&self, path: &str) -> Option<&StoredFile> {
        self.by_id.values().find(|file| file.file_path == path)
    }
}

fn default_extension(kind: &str) -> &'static str {
    match kind {
        "photos" => "jpg",
        "voice" => "oga",
        "music" => "mp3",
        "videos" | "animations" | "video_notes" => "mp4",
        "stickers" => "webp",
        _ => "bin",
    }
}
