use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../telehook-conformance/fixtures/updates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn private_message_is_keyed_by_its_chat() {
    let u = Update::from_bytes(fixture("message_text_private.json")).unwrap();
    assert_eq!(u.update_id(), 100_000_001);
    assert_eq!(u.kind(), Some("message"));
    assert_eq!(u.chat_id(), Some(111_111_111));
    assert_eq!(u.sender_id(), Some(111_111_111));
    assert_eq!(u.sequence_key(), Some(&SequenceKey::Chat(111_111_111)));
}

#[test]
fn callback_query_is_keyed_by_the_user_not_the_chat() {
    let u = Update::from_bytes(fixture("callback_query.json")).unwrap();
    assert_eq!(u.kind(), Some("callback_query"));
    assert_eq!(u.chat_id(), Some(-1_001_234_567_890));
    assert_eq!(u.sequence_key(), Some(&SequenceKey::User(222_222_222)));
}

#[test]
fn poll_is_keyed_by_the_poll_id() {
    let u = Update::from_bytes(fixture("poll.json")).unwrap();
    assert!(matches!(u.sequence_key(), Some(SequenceKey::Poll(id)) if !id.is_empty()));
}

#[test]
fn join_request_and_pre_checkout_are_keyed_by_the_user() {
    let u = Update::from_bytes(fixture("chat_join_request.json")).unwrap();
    assert_eq!(u.sequence_key(), Some(&SequenceKey::User(111_111_111)));
    let u = Update::from_bytes(fixture("pre_checkout_query.json")).unwrap();
    assert!(matches!(u.sequence_key(), Some(SequenceKey::User(_))));
}

#[test]
fn poll_answers_by_the_poll_and_member_changes_by_the_member_as_the_server_queues_them() {
    let u = Update::from_bytes(
        r#"{"update_id":5,"poll_answer":{"poll_id":"p-1","user":{"id":42},"option_ids":[0]}}"#,
    )
    .unwrap();
    assert_eq!(u.sequence_key(), Some(&SequenceKey::Poll("p-1".into())));
    assert_eq!(u.sender_id(), Some(42));
    let u = Update::from_bytes(
        r#"{"update_id":6,"chat_member":{"chat":{"id":-100},"from":{"id":7},"date":0,
                "old_chat_member":{"user":{"id":9},"status":"left"},
                "new_chat_member":{"user":{"id":9},"status":"member"}}}"#,
    )
    .unwrap();
    assert_eq!(u.sequence_key(), Some(&SequenceKey::User(9)));
    assert_eq!(u.chat_id(), Some(-100));
    // The bot's own membership stays queued by the chat.
    let u = Update::from_bytes(
        r#"{"update_id":7,"my_chat_member":{"chat":{"id":-100},"from":{"id":7},
                "new_chat_member":{"user":{"id":1},"status":"member"}}}"#,
    )
    .unwrap();
    assert_eq!(u.sequence_key(), Some(&SequenceKey::Chat(-100)));
}

#[test]
fn channel_post_and_member_change_are_keyed_by_the_chat() {
    let u = Update::from_bytes(fixture("channel_post.json")).unwrap();
    assert_eq!(
        u.sequence_key(),
        Some(&SequenceKey::Chat(-1_009_876_543_210))
    );
    let u = Update::from_bytes(fixture("my_chat_member.json")).unwrap();
    assert!(matches!(u.sequence_key(), Some(SequenceKey::Chat(_))));
}

#[test]
fn unknown_kind_passes_through_with_its_json_intact() {
    let raw = fixture("unknown_future_kind.json");
    let u = Update::from_bytes(raw.clone()).unwrap();
    assert!(!KNOWN_KINDS.contains(&u.kind().unwrap()));
    assert_eq!(u.raw().as_ref(), raw.as_slice());
}

#[test]
fn bad_bodies_are_refused_with_a_reason() {
    let cases = [
        ("bad_not_json.txt", "not valid JSON"),
        ("bad_truncated.json", "not valid JSON"),
        ("bad_missing_update_id.json", "missing field `update_id`"),
        ("bad_update_id_string.json", "positive integer"),
        ("bad_array_not_object.json", "not a JSON object"),
    ];
    for (name, reason) in cases {
        let err = Update::from_bytes(fixture(name)).unwrap_err();
        assert!(err.to_string().contains(reason), "{name}: {err}");
    }
}

#[test]
fn zero_negative_and_fractional_update_ids_are_refused() {
    for body in [
        r#"{"update_id":0}"#,
        r#"{"update_id":-5}"#,
        r#"{"update_id":1.5}"#,
    ] {
        assert_eq!(
            Update::from_bytes(body).unwrap_err(),
            InvalidUpdate::BadUpdateId,
            "{body}"
        );
    }
    let dup = r#"{"update_id":1,"update_id":2}"#;
    assert_eq!(
        Update::from_bytes(dup).unwrap_err(),
        InvalidUpdate::DuplicateUpdateId
    );
}

#[test]
fn invalid_utf8_is_not_json() {
    let err =
        Update::from_bytes(&b"{\"update_id\":1,\"message\":{\"text\":\"\xff\"}}"[..]).unwrap_err();
    assert!(
        matches!(err, InvalidUpdate::NotJson(ref m) if m.contains("UTF-8")),
        "{err}"
    );
}

#[test]
fn escaped_keys_are_decoded() {
    let body = r#"{"upd\u0061te_id":9,"mess\u0061ge":{"ch\u0061t":{"id":5}}}"#;
    let u = Update::from_bytes(body).unwrap();
    assert_eq!(u.update_id(), 9);
    assert_eq!(u.kind(), Some("message"));
    assert_eq!(u.sequence_key(), Some(&SequenceKey::Chat(5)));
}

#[test]
fn odd_shapes_in_the_payload_do_not_reject_the_update() {
    let body = r#"{"update_id":3,"message":{"chat":"not an object","from":{"id":"x"},"id":[1,2]}}"#;
    let u = Update::from_bytes(body).unwrap();
    assert_eq!(
        (u.chat_id(), u.sender_id(), u.sequence_key()),
        (None, None, None)
    );
    let u = Update::from_bytes(r#"{"update_id":4,"future_kind":42}"#).unwrap();
    assert_eq!(u.kind(), Some("future_kind"));
}

#[test]
fn trailing_garbage_is_not_json() {
    let err = Update::from_bytes(r#"{"update_id":1} x"#).unwrap_err();
    assert!(matches!(err, InvalidUpdate::NotJson(_)));
}

#[test]
fn value_and_update_agree_on_id_and_sequence_key() {
    for name in [
        "message_text_private.json",
        "callback_query.json",
        "poll.json",
        "inline_query.json",
    ] {
        let u = Update::from_bytes(fixture(name)).unwrap();
        let v: serde_json::Value = UpdateType::from_update(u.clone()).unwrap();
        assert_eq!(UpdateType::update_id(&v), u.update_id(), "{name}");
        assert_eq!(
            UpdateType::sequence_key(&v).as_ref(),
            u.sequence_key(),
            "{name}"
        );
    }
}

#[test]
fn updates_deserialize_out_of_a_get_updates_answer() {
    #[derive(Deserialize)]
    struct Answer {
        result: Vec<Update>,
    }
    let answer: Answer = serde_json::from_slice(&fixture("getupdates_response.json")).unwrap();
    assert!(answer.result.len() >= 3);
    assert_eq!(answer.result[0].update_id(), 100_000_001);
    let back: serde_json::Value = answer.result[1].deserialize().unwrap();
    assert_eq!(back["update_id"], 100_000_002);
}
