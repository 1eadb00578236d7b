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
    "my_chat_member.json",
];

/// Kinds the official server queues apart from their chat: a poll answer by its poll, a member
/// change by the member (`Client::add_update_poll_answer`, `Client::add_update_chat_member`).
const BODIES: &[&str] = &[
    r#"{"update_id":100000050,"poll_answer":{"poll_id":"5368813427014254593","user":{"id":111111111,"is_bot":false,"first_name":"Ann"},"option_ids":[1],"option_persistent_ids":["b"]}}"#,
    r#"{"update_id":100000051,"chat_member":{"chat":{"id":-1001234567890,"title":"Group","type":"supergroup"},"from":{"id":222222222,"is_bot":false,"first_name":"Admin"},"date":1732320000,"old_chat_member":{"user":{"id":333333333,"is_bot":false,"first_name":"Bob"},"status":"left"},"new_chat_member":{"user":{"id":333333333,"is_bot":false,"first_name":"Bob"},"status":"member"}}}"#,
];

fn fixture(name: &str) -> Update {
    let path = format!(
        "{}/../telehook-conformance/fixtures/updates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Update::from_bytes(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn check<T: UpdateType>() {
    let updates = KINDS
        .iter()
        .map(|name| ((*name).to_owned(), fixture(name)))
        .chain(
            BODIES
                .iter()
                .map(|body| ((*body).to_owned(), Update::from_bytes(*body).unwrap())),
        );
    for (name, update) in updates {
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
