use super::*;
use serde_json::json;

#[test]
fn the_quick_check_lets_every_possible_method_key_through() {
    assert!(!may_name(br#"{"chat_id":1,"text":"hi"}"#, b"method"));
    assert!(may_name(br#"{"method":1}"#, b"method"));
    assert!(may_name(br#"{"m\u0065thod":1}"#, b"method"));
    assert!(may_name(br#"{"text":"a method"}"#, b"method"));
    assert!(!may_name(br#"{"text":"metho"}"#, b"method"));
    // Every position and length around the eight-byte steps.
    for len in 0..24 {
        for at in 0..len {
            let mut json = vec![b'x'; len];
            json[at] = b'\\';
            assert!(may_name(&json, b"method"), "{len} {at}");
            if at + 6 <= len {
                json[at..at + 6].copy_from_slice(b"method");
                assert!(may_name(&json, b"method"), "{len} {at}");
            }
        }
        assert!(!may_name(&vec![b'm'; len], b"method"), "{len}");
    }
}

fn webhook_ctx() -> (Context, Arc<ReplySlot>) {
    let slot = ReplySlot::new();
    (
        Context::webhook(7, 0, Instant::now(), Duration::from_secs(10), slot.clone()),
        slot,
    )
}

#[test]
fn reply_body_is_the_params_plus_method() {
    let (ctx, slot) = webhook_ctx();
    ctx.webhook_reply("sendMessage", json!({"chat_id": 1, "text": "hi"}))
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&slot.close().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"method": "sendMessage", "chat_id": 1, "text": "hi"})
    );
}

#[test]
fn empty_params_give_just_the_method() {
    let (ctx, slot) = webhook_ctx();
    ctx.webhook_reply("close2", json!({})).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&slot.close().unwrap()).unwrap();
    assert_eq!(body, json!({"method": "close2"}));
}

#[test]
fn typed_params_serialize_like_json() {
    #[derive(serde::Serialize)]
    struct SendMessage<'a> {
        chat_id: i64,
        text: &'a str,
    }
    let (ctx, slot) = webhook_ctx();
    let params = SendMessage {
        chat_id: -5,
        text: "a \"q\" é",
    };
    ctx.webhook_reply("sendMessage", params).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&slot.close().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"method": "sendMessage", "chat_id": -5, "text": "a \"q\" é"})
    );
}

#[test]
fn only_a_top_level_method_key_counts() {
    use crate::scan::has_top_level_key;
    assert!(has_top_level_key(br#"{"a":1,"method":"x"}"#, b"method"));
    assert!(has_top_level_key(
        br#"{"a":1,"m\u0065thod":"x"}"#,
        b"method"
    ));
    assert!(!has_top_level_key(
        br#"{"a":{"method":1},"b":["method"],"c":"method"}"#,
        b"method"
    ));
    assert!(!has_top_level_key(br#"{"a":"x\"method\":1"}"#, b"method"));
    let (ctx, slot) = webhook_ctx();
    let params = json!({"chat_id": 1, "reply_markup": {"method": "nested is fine"}});
    ctx.webhook_reply("sendMessage", &params).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&slot.close().unwrap()).unwrap();
    assert_eq!(body["reply_markup"]["method"], "nested is fine");
    assert_eq!(body["method"], "sendMessage");
}

#[test]
fn second_reply_is_refused() {
    let (ctx, _slot) = webhook_ctx();
    ctx.webhook_reply("sendMessage", json!({"chat_id": 1, "text": "a"}))
        .unwrap();
    assert!(!ctx.can_webhook_reply());
    let err = ctx
        .webhook_reply("sendMessage", json!({"chat_id": 1, "text": "b"}))
        .unwrap_err();
    assert_eq!(err, WebhookReplyError::AlreadyUsed { update_id: 7 });
}

#[test]
fn reply_after_the_response_left_is_refused() {
    let (ctx, slot) = webhook_ctx();
    assert_eq!(slot.close(), None);
    let err = ctx
        .webhook_reply("sendMessage", json!({"chat_id": 1}))
        .unwrap_err();
    assert!(matches!(
        err,
        WebhookReplyError::ResponseSent { update_id: 7, .. }
    ));
}

#[test]
fn ignored_methods_are_refused_case_insensitively() {
    let (ctx, _slot) = webhook_ctx();
    for method in [
        "getMe",
        "getupdates",
        "setWebhook",
        "DELETEWEBHOOK",
        "close",
        "logOut",
    ] {
        let err = ctx.webhook_reply(method, json!({})).unwrap_err();
        assert!(
            matches!(err, WebhookReplyError::IgnoredMethod { .. }),
            "{method}"
        );
    }
    assert!(
        ctx.can_webhook_reply(),
        "a refused attempt must not use up the slot"
    );
}

#[test]
fn params_must_be_an_object_without_method() {
    let (ctx, _slot) = webhook_ctx();
    assert!(matches!(
        ctx.webhook_reply("sendMessage", [1, 2]).unwrap_err(),
        WebhookReplyError::InvalidParams { .. }
    ));
    assert!(matches!(
        ctx.webhook_reply("sendMessage", json!({"method": "x"}))
            .unwrap_err(),
        WebhookReplyError::InvalidParams { .. }
    ));
    assert!(matches!(
        ctx.webhook_reply("send message", json!({})).unwrap_err(),
        WebhookReplyError::InvalidParams { .. }
    ));
}

#[test]
fn detached_context_has_no_reply() {
    let ctx = Context::detached(9);
    assert_eq!(ctx.source(), Source::Detached);
    assert_eq!(
        ctx.webhook_reply("sendMessage", json!({})).unwrap_err(),
        WebhookReplyError::NotAWebhook
    );
    // The message says what to do instead.
    let text = WebhookReplyError::NotAWebhook.to_string();
    assert!(
        text.contains("over HTTP") && text.contains("Bot::send_or_reply"),
        "{text}"
    );
}
