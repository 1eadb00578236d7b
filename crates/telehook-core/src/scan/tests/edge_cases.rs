//! The probe against `serde_json::Value` on hand-written edge cases: numbers at the edge of
//! `f64`, escapes, nesting, serde_json's raw-value token, and the regressions of issue 14 and
//! of the differential fuzzer; and `has_top_level_key`.

use serde_json::Value;

use super::*;
use crate::SequenceKey;

#[test]
fn agrees_with_serde_json_on_edge_cases() {
    let cases: &[&str] = &[
        r#"{"update_id":1}"#,
        r#"{"update_id":0}"#,
        r#"{"update_id":-0}"#,
        r#"{"update_id":-1}"#,
        r#"{"update_id":1.0}"#,
        r#"{"update_id":1e2}"#,
        r#"{"update_id":18446744073709551615}"#,
        r#"{"update_id":18446744073709551616}"#,
        r#"{"update_id":"1"}"#,
        r#"{"update_id":[1]}"#,
        r#"{"update_id":{"a":1}}"#,
        r#"{"update_id":1,"update_id":2}"#,
        r#"{"update_id":1,"message":{"chat":{"id":-9223372036854775808}}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":-9223372036854775809}}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":9223372036854775808}}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":5},"chat":7}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":5,"id":"x"}}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":true},"from":{"id":null}}}"#,
        r#"{"update_id":1,"message":{"chat":[{"id":5}],"from":{"id":[7]}}}"#,
        r#"{"update_id":1,"poll":{"id":"a\"b\\c\u00e9\ud83d\ude00"}}"#,
        r#"{"update_id":1,"poll":{"id":5}}"#,
        r#"{"update_id":1,"poll_answer":{"poll_id":{"x":1}}}"#,
        r#"{"upd\u0061te_id":9,"mess\u0061ge":{"ch\u0061t":{"id":5}}}"#,
        r#"{"update_id":1,"x":"\ud800"}"#,
        r#"{"update_id":1,"x":"\udc00"}"#,
        r#"{"update_id":1,"x":"\ud800\u0041"}"#,
        r#"{"update_id":1,"x":"\uZZZZ"}"#,
        r#"{"update_id":1,"x":"\q"}"#,
        r#"{"update_id":1,"x":{"\ud800":1}}"#,
        r#"{"update_id":1,"x":["\udfff"]}"#,
        r#"{"update_id":1,"x":1e400}"#,
        r#"{"update_id":1,"x":-1e400}"#,
        r#"{"update_id":1,"x":1e-400}"#,
        r#"{"update_id":1,"x":[1e400]}"#,
        r#"{"update_id":1,"x":{"y":1e400}}"#,
        r#"{"update_id":1,"x":01}"#,
        r#"{"update_id":1,"x":1.}"#,
        r#"{"update_id":1,"x":.5}"#,
        r#"{"update_id":1,"x":-}"#,
        r#"{"update_id":1,"x":+1}"#,
        r#"{"update_id":1,"x":1e}"#,
        r#"{"update_id":1,"x":[1,]}"#,
        r#"{"update_id":1,}"#,
        r#"{"update_id":1 "x":2}"#,
        r#"{"update_id":1,"x":tru}"#,
        r#"{"update_id":1,"x":nul}"#,
        "{\"update_id\":1,\"x\":\"a\u{1}b\"}",
        "{\"update_id\":1,\"x\":\"a\u{7f}b\"}",
        " \t\r\n{ \"update_id\" : 1 , \"message\" : { } } \n",
        r#"[1,2,3]"#,
        r#"[1,"\ud800"]"#,
        r#""text""#,
        r#""\udc00""#,
        r#"42"#,
        r#"1e999"#,
        r#"null"#,
        r#"{}"#,
        r#""#,
        r#"{"update_id":1} x"#,
        r#"{"update_id":1}{"#,
        r#"{"update_id":1"#,
        r#"{"update_id":1,"message":{"text":"unterminated}}"#,
        r#"{"update_id":1,"callback_query":{"from":{"id":2},"message":{"chat":{"id":3}}}}"#,
        r#"{"update_id":1,"poll_answer":{"voter_chat":{"id":-100},"user":{"id":4}}}"#,
        // Issue 14: numbers at the edge of f64, where serde_json's float parser decides.
        r#"{"update_id":1,"x":1.7976931348623158e308}"#,
        r#"{"update_id":1,"x":1.79769313486231585e308}"#,
        r#"{"update_id":1,"x":1.7976931348623157e308}"#,
        r#"{"update_id":1,"x":1.7976931348623159e308}"#,
        r#"{"update_id":1,"x":-1.7976931348623158e308}"#,
        r#"{"update_id":1,"x":2.2250738585072011e-308}"#,
        r#"{"update_id":1,"x":4.9e-324}"#,
        // Issue 14: `-0` is a float to serde_json, so it names no chat.
        r#"{"update_id":1,"message":{"chat":{"id":-0},"from":{"id":-0}}}"#,
        r#"{"update_id":1,"poll_answer":{"voter_chat":{"id":-0},"user":{"id":-0}}}"#,
        r#"{"update_id":-0}"#,
        // Issue 14: a repeated top-level key is refused whichever copy comes first.
        r#"{"update_id":1,"message":{"chat":{"id":1},"text":"a"},"message":{"chat":{"id":2},"text":"b"}}"#,
        r#"{"update_id":1,"message":{},"edited_message":{},"message":{}}"#,
        r#"{"update_id":1,"message":{},"mess\u0061ge":{}}"#,
        r#"{"update_id":1,"message":{},"message":{} x"#,
        r#"{"update_id":1,"update_id":1,"message":{},"message":{}}"#,
        // Two different kinds (fuzz/, engineer C): refused like a repeated one.
        r#"{"update_id":5,"messcge":{"chat":{"id":1}},"message":{"chat":{"id":2}}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":1}},"edited_message":{"chat":{"id":2}}}"#,
    ];
    for body in cases {
        check(body.as_bytes());
    }
}

#[test]
fn serde_jsons_raw_value_token_is_read_as_a_value_reads_it() {
    // serde_json (feature `raw_value`) parses an object whose first key is this token into a
    // `Value` as the JSON text in its string. Found while writing the serde probe; the
    // hand-written scanner read such an object literally.
    let cases: &[&str] = &[
        // Inside a payload: the chat a `Value` sees is the one inside the string.
        r#"{"update_id":1,"message":{"$serde_json::private::RawValue":"{\"chat\":{\"id\":5}}"}}"#,
        r#"{"update_id":1,"message":{"chat":{"$serde_json::private::RawValue":"{\"id\":5}"}}}"#,
        r#"{"update_id":1,"callback_query":{"message":{"$serde_json::private::RawValue":"{\"chat\":{\"id\":5}}"}}}"#,
        r#"{"update_id":1,"chat_member":{"new_chat_member":{"$serde_json::private::RawValue":"{\"user\":{\"id\":9}}"}}}"#,
        // Refused by `Value`: not a string, not JSON inside, or another key after it.
        r#"{"update_id":1,"x":{"$serde_json::private::RawValue":5}}"#,
        r#"{"update_id":1,"x":{"$serde_json::private::RawValue":"[1,"}}"#,
        r#"{"update_id":1,"x":{"$serde_json::private::RawValue":"\"\\ud800\""}}"#,
        r#"{"update_id":1,"x":{"$serde_json::private::RawValue":"1","y":2}}"#,
        r#"{"update_id":1,"message":{"$serde_json::private::RawValue":"1","chat":{"id":5}}}"#,
        r#"{"update_id":1,"message":{"chat":{"$serde_json::private::RawValue":{"id":5}}}}"#,
        // Accepted by `Value`.
        r#"{"update_id":1,"x":{"$serde_json::private::RawValue":"[1,2]"}}"#,
        r#"{"update_id":1,"x":{"\u0024serde_json::private::RawValue":"{}"}}"#,
        r#"{"update_id":1,"x":["$serde_json::private::RawValue"]}"#,
        // Only the first key counts.
        r#"{"update_id":1,"x":{"y":2,"$serde_json::private::RawValue":5}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":5},"$serde_json::private::RawValue":"x"}}"#,
        // At the top: refused, whatever the string holds.
        r#"{"$serde_json::private::RawValue":"{\"update_id\":1,\"message\":{}}"}"#,
        r#"{"$serde_json::private::RawValue":"[1]"}"#,
        r#"{"$serde_json::private::RawValue":"{\"update_id\":1}","update_id":2}"#,
        r#"{"$serde_json::private::RawValue":"{\"$serde_json::private::RawValue\":\"1\"}"}"#,
        r#"{"update_id":1,"$serde_json::private::RawValue":"x"}"#,
    ];
    for body in cases {
        check(body.as_bytes());
    }
    let u = Update::from_bytes(cases[0]).unwrap();
    assert_eq!(u.sequence_key(), Some(&SequenceKey::Chat(5)));
}

#[test]
fn integers_beyond_f64_agree_with_serde_json() {
    // Issue 14: integers of ~309 digits and more are floats to serde_json, out of range past
    // f64::MAX; the hand-written scanner used to accept every one of them.
    for digits in [20, 300, 308, 309, 310, 400, 1000] {
        for lead in ["1", "17976931348623157", "17976931348623159", "9"] {
            let mut number = lead.to_owned();
            while number.len() < digits {
                number.push('0');
            }
            for sign in ["", "-"] {
                let body = format!(r#"{{"update_id":1,"x":{sign}{number}}}"#);
                check(body.as_bytes());
                let body =
                    format!(r#"{{"update_id":1,"message":{{"chat":{{"id":{sign}{number}}}}}}}"#);
                check(body.as_bytes());
            }
        }
    }
}

#[test]
fn the_four_kinds_of_issue_14_as_updates() {
    // Out of range for serde_json: 400, where the webhook used to answer 500 or 200.
    for body in [
        r#"{"update_id":1,"message":{"x":1.7976931348623159e308}}"#,
        &format!(
            r#"{{"update_id":1,"message":{{"x":1{}}}}}"#,
            "0".repeat(400)
        ),
    ] {
        let refused = Update::from_bytes(body.to_owned()).is_err();
        let serde_refused = serde_json::from_str::<Value>(body).is_err();
        assert_eq!(refused, serde_refused, "{body}");
    }
    // `-0`: no chat, no sequence key, as the handler reading a `Value` sees it.
    let u =
        Update::from_bytes(r#"{"update_id":1,"message":{"chat":{"id":-0},"text":"t"}}"#).unwrap();
    assert_eq!((u.chat_id(), u.sequence_key()), (None, None));
    // A repeated kind: refused, never half of one copy and half of the other.
    let err = Update::from_bytes(
        r#"{"update_id":1,"message":{"chat":{"id":1},"text":"a"},"message":{"chat":{"id":2},"text":"b"}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        InvalidUpdate::Malformed("duplicate field \"message\"".into())
    );
}

#[test]
fn an_update_with_two_kinds_is_refused() {
    // Found by the differential fuzzer (fuzz/, engineer C): the kind was the first key, so the
    // sequence key came from "messcge" (chat 1) while a handler reading `message` saw chat 2:
    // issue 14's echo mix through two different keys. An update has at most one kind
    // (core.telegram.org/bots/api#update).
    let err = Update::from_bytes(
        r#"{"update_id":5,"messcge":{"chat":{"id":1}},"message":{"chat":{"id":2},"text":"b"}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        InvalidUpdate::Malformed("more than one update kind (\"messcge\", \"message\")".into())
    );
    for body in [
        r#"{"update_id":1,"message":{},"edited_message":{}}"#,
        r#"{"message":{},"update_id":1,"x_future_field":null}"#,
        r#"{"update_id":1,"message":{},"update_id":1,"message":{}}"#,
    ] {
        assert!(
            matches!(Update::from_bytes(body), Err(InvalidUpdate::Malformed(_))),
            "{body}"
        );
    }
    // Invalid JSON after the second kind is reported as such.
    assert!(matches!(
        Update::from_bytes(r#"{"update_id":1,"message":{},"poll":{} x"#),
        Err(InvalidUpdate::NotJson(_))
    ));
}

#[test]
fn nesting_limit_matches_serde_json() {
    for depth in [120, 126, 127, 128, 129, 200] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let body = format!(
                "{{\"update_id\":1,\"x\":{}0{}}}",
                open.repeat(depth),
                close.repeat(depth)
            );
            check(body.as_bytes());
            // The same depth reached through the payload and a chat.
            let body = format!(
                "{{\"update_id\":1,\"message\":{{\"chat\":{{\"id\":{}0{}}}}}}}",
                open.repeat(depth),
                close.repeat(depth)
            );
            check(body.as_bytes());
        }
    }
}

#[test]
fn has_top_level_key_reads_only_the_top_level() {
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
    assert!(!has_top_level_key(br#"["method"]"#, b"method"));
    assert!(!has_top_level_key(
        br#"{"method":"x","a":"\ud800"}"#,
        b"method"
    ));
    assert!(!has_top_level_key(b"{\"method\":\"\xff\"}", b"method"));
}

#[test]
fn a_raw_value_key_inside_another_is_refused_without_deep_recursion() {
    // serde_json gives each raw-value string a parse of its own with its own 128 levels, so a
    // chain of them recursed as deep as the body allowed: 17 links of 120 arrays fit in 1 MiB
    // and overflowed the stack (found while writing the serde probe). One link is allowed; a
    // second is refused, where a `Value` would recurse on.
    let link = |inner: &str| {
        format!(
            "{}{{\"{RAW_VALUE_TOKEN}\":{}}}{}",
            "[".repeat(120),
            serde_json::to_string(inner).expect("a string"),
            "]".repeat(120)
        )
    };
    let one = format!("{{\"update_id\":1,\"x\":{}}}", link("0"));
    assert!(matches!(probe(one.as_bytes()), Ok(Some(_))));
    check(one.as_bytes());
    let two = format!("{{\"update_id\":1,\"x\":{}}}", link(&link("0")));
    assert!(serde_json::from_str::<Value>(&two).is_ok());
    assert!(matches!(
        probe(two.as_bytes()),
        Err(InvalidUpdate::NotJson(_))
    ));
    let mut chain = "0".to_owned();
    while chain.len() < 1 << 20 {
        chain = link(&chain);
    }
    let body = format!("{{\"update_id\":1,\"message\":{{\"chat\":{chain}}}}}");
    assert!(matches!(
        probe(body.as_bytes()),
        Err(InvalidUpdate::NotJson(_))
    ));
    // The flag is cleared after a refusal: one link still passes.
    assert!(matches!(probe(one.as_bytes()), Ok(Some(_))));
}
