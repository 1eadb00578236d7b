//! The one strict parse into a handler's type against `Update::from_bytes` (the validator) and
//! against plain `serde_json::from_slice` (what the type reads).

use std::fmt::Debug;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use super::super::tests::{XorShift, all_fixtures, mutate};
use super::{StrictError, from_slice};
use crate::{InvalidUpdate, Update};

/// What a hand-written handler takes: a few fields, the rest ignored.
#[derive(Debug, PartialEq, Deserialize)]
struct Small {
    update_id: u64,
    message: Option<SmallMessage>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct SmallMessage {
    chat: SmallChat,
    text: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct SmallChat {
    id: i64,
}

/// The shape of frankenstein's `Update`: the kind as a flattened, externally tagged enum.
#[derive(Debug, PartialEq, Deserialize)]
struct Tagged {
    update_id: u32,
    #[serde(flatten)]
    content: Content,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Content {
    Message(Box<SmallMessage>),
    EditedMessage(Value),
    CallbackQuery { id: String },
}

/// A payload kept as raw JSON text.
#[derive(Debug, Deserialize)]
struct Raw {
    update_id: u64,
    message: Option<Box<RawValue>>,
}

impl PartialEq for Raw {
    fn eq(&self, other: &Self) -> bool {
        self.update_id == other.update_id
            && self.message.as_ref().map(|m| m.get()) == other.message.as_ref().map(|m| m.get())
    }
}

/// The strict parse into `T` agrees with the validator and with `T`'s own parse.
fn check<T: DeserializeOwned + PartialEq + Debug>(body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    let update = Update::from_bytes(body.to_vec());
    let plain = serde_json::from_slice::<T>(body);
    match (from_slice::<T>(body), update) {
        (Ok((value, head)), Ok(update)) => {
            assert_eq!(head.update_id, update.update_id(), "{text:?}");
            assert_eq!(head.kind.as_deref(), update.kind(), "{text:?}");
            assert_eq!(plain.as_ref().ok(), Some(&value), "{text:?}");
        }
        (Ok(_), Err(e)) => panic!(
            "accepted as {}, refused by the validator ({e}): {text:?}",
            std::any::type_name::<T>()
        ),
        (Err(StrictError::Invalid(e)), Ok(_)) => {
            panic!("refused ({e}), accepted by the validator: {text:?}")
        }
        // An update that does not fit the type: the type's own parse fails too.
        (Err(StrictError::Parse(e)), Ok(_)) => {
            assert!(
                plain.is_err(),
                "{e} but serde_json reads it as {}: {text:?}",
                std::any::type_name::<T>()
            );
        }
        (Err(_), Err(_)) => {}
    }
}

fn check_all(body: &[u8]) {
    check::<Small>(body);
    check::<Tagged>(body);
    check::<Raw>(body);
    check::<Value>(body);
}

#[test]
fn typed_parse_agrees_with_the_validator_on_the_issue_14_kinds() {
    let big = format!(
        r#"{{"update_id":1,"message":{{"chat":{{"id":1}},"x":1{}}}}}"#,
        "0".repeat(400)
    );
    let cases: &[&str] = &[
        // C's finding: an ignored field beyond f64 reached the handler.
        r#"{"update_id":1,"message":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"},"text":"a","location":{"latitude":1.7976931348623158e308,"longitude":0}}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":1},"location":{"latitude":1.7976931348623157e308}}}"#,
        &big,
        r#"{"update_id":1,"message":{"chat":{"id":1},"x":"\ud800"}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":1}},"x":["\udc00"]}"#,
        r#"{"update_id":1,"message":{"chat":{"id":-0}}}"#,
        // C's finding: repeated and second kinds reached a `Value` handler.
        r#"{"update_id":5,"message":{"chat":{"id":1},"text":"a"},"message":{"chat":{"id":2},"text":"b"}}"#,
        r#"{"update_id":5,"messcge":{"chat":{"id":1}},"message":{"chat":{"id":2}}}"#,
        r#"{"update_id":100000010,"chatror_code":401,"description":"Unauthorized"}"#,
        r#"{"update_id":1,"update_id":2,"message":{"chat":{"id":1}}}"#,
        r#"{"update_id":0,"message":{"chat":{"id":1}}}"#,
        r#"{"update_id":-1,"message":{"chat":{"id":1}}}"#,
        r#"{"update_id":"1","message":{"chat":{"id":1}}}"#,
        r#"{"message":{"chat":{"id":1}}}"#,
        r#"[1,{"chat":{"id":1}}]"#,
        r#"{"update_id":1,"message":{"chat":{"id":1}}} x"#,
        // serde_json's raw-value key.
        r#"{"update_id":1,"message":{"$serde_json::private::RawValue":"{\"chat\":"}}"#,
        r#"{"update_id":1,"message":{"$serde_json::private::RawValue":"{\"chat\":{\"id\":5}}"}}"#,
        r#"{"update_id":1,"message":{"chat":{"id":1},"x":{"$serde_json::private::RawValue":"\"\\ud800\""}}}"#,
        r#"{"$serde_json::private::RawValue":"{\"update_id\":1}"}"#,
        r#"{"update_id":1,"edited_message":{"$serde_json::private::RawValue":"{\"$serde_json::private::RawValue\":\"1\"}"}}"#,
        // Fine.
        r#"{"update_id":7,"message":{"chat":{"id":3},"text":"hi","entities":[{"offset":0}]}}"#,
        r#"{"update_id":7,"callback_query":{"id":"q","from":{"id":1}}}"#,
        r#"{"update_id":7,"edited_message":{"chat":{"id":3},"x":1e2}}"#,
        r#"{"update_id":7,"future_kind":{"chat":{"id":3}}}"#,
    ];
    for body in cases {
        check_all(body.as_bytes());
    }
    // Not UTF-8 in a string the type ignores: the validator's refusal, with its reason.
    let body = b"{\"update_id\":1,\"message\":{\"chat\":{\"id\":1},\"x\":\"\xff\"}}";
    check_all(body);
    assert!(matches!(
        from_slice::<Small>(body),
        Err(StrictError::Invalid(InvalidUpdate::NotJson(m))) if m.contains("UTF-8")
    ));
    // The first case, refused as the validator refuses it.
    assert!(matches!(
        from_slice::<Small>(cases[0].as_bytes()),
        Err(StrictError::Parse(_))
    ));
    assert!(matches!(
        from_slice::<Value>(cases[6].as_bytes()),
        Err(StrictError::Invalid(_))
    ));
}

#[test]
fn typed_parse_agrees_with_the_validator_on_10k_mutations() {
    let bodies = all_fixtures();
    let mut rng = XorShift(0x0014_7e57_0000_0001);
    let rounds = 10_000_usize.div_ceil(bodies.len());
    for body in &bodies {
        check_all(body);
        for _ in 0..rounds {
            check_all(&mutate(&mut rng, body));
        }
    }
}

/// A type that keeps whatever payload it does not know (as teloxide's `Update` does with its
/// `UpdateKind::Error`): serde buffers the payload before trying each variant.
#[derive(Debug, PartialEq, Deserialize)]
struct Lenient {
    update_id: u64,
    message: Option<LenientPayload>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
enum LenientPayload {
    Known(SmallMessage),
    Unknown(Anything),
}

/// Any value at all, read and dropped.
#[derive(Debug, PartialEq)]
struct Anything;

impl<'de> Deserialize<'de> for Anything {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Self)
    }
}

/// The fuzzer's teloxide inputs (fuzz/known/typed): serde_json's raw-value key with a value
/// that is not a string. `Value` refuses it (it reads that value as JSON text); a lenient type
/// kept it as an unknown payload, and the typed path answered 200 where `Update` answers 400.
#[test]
fn a_raw_value_key_with_a_non_string_value_is_refused_for_a_lenient_type_too() {
    for body in [
        r#"{"update_id":1,"message":{"$serde_json::private::RawValue":1}}"#,
        r#"{"update_id":1,"message":{"$serde_json::private::RawValue":1.79769313486231585e308}}"#,
        r#"{"update_id":1,"message":{"$serde_json::private::RawValue":{"a":1}}}"#,
        r#"{"update_id":1,"message":{"$serde_json::private::RawValue":[true,null]}}"#,
    ] {
        assert!(
            Update::from_bytes(body.as_bytes().to_vec()).is_err(),
            "{body}"
        );
        assert!(from_slice::<Lenient>(body.as_bytes()).is_err(), "{body}");
        check::<Lenient>(body.as_bytes());
        check_all(body.as_bytes());
    }
    // The string form stays as it was: checked as the JSON text a `Value` parses.
    check::<Lenient>(
        br#"{"update_id":1,"message":{"$serde_json::private::RawValue":"{\"chat\":{\"id\":1}}"}}"#,
    );
}
