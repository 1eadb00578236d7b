//! The scanner against `serde_json::Value`: fixtures, edge cases and mutated bodies.

use std::fmt;

use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::*;

/// The top-level keys in document order (serde_json's `Value` sorts them).
fn top_keys(body: &[u8]) -> Vec<String> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(key);
            }
            Ok(keys)
        }
    }
    serde_json::Deserializer::from_slice(body)
        .deserialize_map(Keys)
        .expect("keys of a valid object")
}

/// Why the reference refuses a body.
#[derive(Debug)]
enum Refused {
    /// serde_json refuses it.
    NotJson,
    /// A top-level key other than `update_id` appears twice.
    DuplicateKey,
}

/// What the probe must find, worked out from `serde_json::Value` with the same rules;
/// `Err` if serde_json refuses the body or it repeats a top-level key, `Ok(None)` if it is not
/// an object.
fn reference(body: &[u8]) -> Result<Option<Probe<'static>>, Refused> {
    let value: Value = serde_json::from_slice(body).map_err(|_| Refused::NotJson)?;
    let Value::Object(map) = &value else {
        return Ok(None);
    };
    let keys = top_keys(body);
    let kinds: Vec<&String> = keys.iter().filter(|k| *k != "update_id").collect();
    if (1..kinds.len()).any(|i| kinds[..i].contains(&kinds[i])) {
        return Err(Refused::DuplicateKey);
    }
    let update_id = match keys.iter().filter(|k| *k == "update_id").count() {
        0 => None,
        1 => Some(map["update_id"].as_u64().ok_or(InvalidUpdate::BadUpdateId)),
        _ => Some(Err(InvalidUpdate::DuplicateUpdateId)),
    };
    let kind = keys.into_iter().find(|k| k != "update_id");
    // Worked out independently of the scanner: from the parsed value.
    let payload = kind.as_ref().and_then(|k| Payload::from_value(&map[k]));
    let kind = kind.map(|k| Cow::Owned(k.into_bytes()));
    Ok(Some(Probe {
        update_id,
        kind,
        payload,
    }))
}

fn check(body: &[u8]) {
    let ours = probe(body);
    let theirs = reference(body);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(body)),
        (Err(InvalidUpdate::NotJson(_)), Err(Refused::NotJson))
        | (Err(InvalidUpdate::Malformed(_)), Err(Refused::DuplicateKey)) => {}
        _ => panic!(
            "probe {ours:?} but serde_json {theirs:?} for {:?}",
            String::from_utf8_lossy(body)
        ),
    }
}

fn fixtures() -> Vec<Vec<u8>> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../telehook-conformance/fixtures/updates"
    );
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("fixtures/updates") {
        out.push(std::fs::read(entry.expect("entry").path()).expect("fixture"));
    }
    assert!(out.len() > 10, "fixtures found: {}", out.len());
    out
}

#[test]
fn find_special_finds_the_first_quote_backslash_or_control_byte() {
    let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
    let mut rng = XorShift(0x0bad_cafe_f00d_0001);
    let alphabet = [
        b'a', b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xff, b'!', b'#',
    ];
    for _ in 0..20_000 {
        let len = rng.below(40);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(6) == 0 {
                    alphabet[rng.below(alphabet.len())]
                } else {
                    b'a' + rng.below(26) as u8
                }
            })
            .collect();
        assert_eq!(find_special(&bytes), naive(&bytes), "{bytes:?}");
    }
}

#[test]
fn agrees_with_serde_json_on_every_fixture() {
    for body in fixtures() {
        check(&body);
    }
}

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
        r#"{"update_id":1,"update_id":2}"#,
        r#"{"update_id":1,"message":{"chat":{"id":-9223372036854775808}}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":-9223372036854775809}}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":9223372036854775808}}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":5},"chat":7}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":5,"id":"x"}}}"#,
        r#"{"update_id":1,"poll":{"id":"a\"b\\c\u00e9\ud83d\ude00"}}"#,
        r#"{"upd\u0061te_id":9,"mess\u0061ge":{"ch\u0061t":{"id":5}}}"#,
        r#"{"update_id":1,"x":"\ud800"}"#,
        r#"{"update_id":1,"x":"\udc00"}"#,
        r#"{"update_id":1,"x":"\ud800\u0041"}"#,
        r#"{"update_id":1,"x":"\uZZZZ"}"#,
        r#"{"update_id":1,"x":"\q"}"#,
        r#"{"update_id":1,"x":1e400}"#,
        r#"{"update_id":1,"x":-1e400}"#,
        r#"{"update_id":1,"x":1e-400}"#,
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
        r#""text""#,
        r#"42"#,
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
    ];
    for body in cases {
        check(body.as_bytes());
    }
}

#[test]
fn integers_beyond_f64_agree_with_serde_json() {
    // Issue 14: integers of ~309 digits and more are floats to serde_json, out of range past
    // f64::MAX; the scanner used to accept every one of them.
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
    use crate::Update;
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
fn nesting_limit_matches_serde_json() {
    for depth in [120, 126, 127, 128, 129, 200] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let body = format!(
                "{{\"update_id\":1,\"x\":{}0{}}}",
                open.repeat(depth),
                close.repeat(depth)
            );
            check(body.as_bytes());
        }
    }
}

/// A small deterministic generator, so a failure names a reproducible case.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn agrees_with_serde_json_on_mutated_fixtures() {
    const PIECES: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b",",
        b":",
        b"\\",
        b"\\u",
        b"\\ud83d",
        b"\\ude00",
        b"0",
        b"-",
        b"1",
        b".",
        b"e",
        b"E",
        b"+",
        b" ",
        b"\n",
        b"\x01",
        b"t",
        b"true",
        b"null",
        b"\"update_id\":",
        b"\"id\":",
        b"\"chat\":",
        b"{\"id\":-7}",
        b"1e999",
        b"18446744073709551616",
        "é".as_bytes(),
        b"\"x\"",
    ];
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let mut checked = 0;
    for body in fixtures() {
        for _ in 0..400 {
            let mut b = body.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(b.len() + 1);
                match rng.below(4) {
                    0 => b.truncate(at),
                    1 if at < b.len() => {
                        b.remove(at);
                    }
                    _ => {
                        let piece = PIECES[rng.below(PIECES.len())];
                        b.splice(at..at, piece.iter().copied());
                    }
                }
            }
            check(&b);
            checked += 1;
        }
    }
    assert!(checked > 4_000);
}
