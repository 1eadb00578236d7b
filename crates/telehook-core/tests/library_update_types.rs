//! frankenstein's and teloxide's `Update` types (features `frankenstein`, `teloxide`) agree
//! with telehook's own view on `update_id` and the sequence key, for every fixture kind.
#![cfg(any(feature = "frankenstein", feature = "teloxide"))]

use telehook_core::{Update, UpdateType};

const KINDS: &[&str] = &[
    "message_text_private.json",
    "message_command_group.json",
    "edited_message.json",
    "callback_query.json",
    "inline_query.json",
    "channel_post.json",
    "chat_join_request.json",
    "poll.json",
    "pre_checkout_query.json",
];

fn fixture(name: &str) -> Update {
    let path = format!(
        "{}/../telehook-conformance/fixtures/updates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Update::from_bytes(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn check<T: UpdateType>() {
    for name in KINDS {
        let update = fixture(name);
        let typed = T::from_update(update.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(typed.update_id(), update.update_id(), "{name}");
        assert_eq!(
            typed.sequence_key().as_ref(),
            update.sequence_key(),
            "{name}"
        );
    }
}

#[cfg(feature = "frankenstein")]
#[test]
fn frankenstein_update_agrees() {
    check::<frankenstein::updates::Update>();
}

#[cfg(feature = "teloxide")]
#[test]
fn teloxide_update_agrees() {
    check::<teloxide_core::types::Update>();
}
