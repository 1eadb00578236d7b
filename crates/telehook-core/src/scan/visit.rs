//! The probe as one serde pass: `serde_json`'s own parser walks the body, and a few visitors
//! keep what the dispatcher needs (`update_id`, the kind, the ids in the kind's payload).
//!
//! Everything else goes through [`Strict`], which asks for every value with `deserialize_any`
//! and accepts it the way `serde_json::Value` does, so a body passes exactly when it parses
//! into a `Value`. `serde::de::IgnoredAny` would be faster and is not enough: serde_json skips
//! an ignored value without checking `\u` surrogates in its strings, the range of its numbers
//! or its nesting depth. Numbers, strings, escapes and depth are checked by the same code that
//! checks them for a `Value`, so the two cannot disagree at the edge of `f64` or on `-0`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Payload, Probe};
use crate::invalid::InvalidUpdate;

/// The key serde_json (feature `raw_value`, which telehook-core turns on) treats specially when
/// it is the first key of an object being parsed into a `Value`: the object must hold only that
/// key, its value must be a string, and the `Value` is that string parsed as JSON. Every reader
/// here does the same, so what a handler parsing a `Value` sees is what was checked; the one
/// difference: such a key inside the string of another is refused (see [`Reparsed`]).
pub(super) const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Probes `raw`: `Ok(None)` for valid JSON that is not an object.
pub(crate) fn probe(raw: &[u8]) -> Result<Option<Probe<'_>>, InvalidUpdate> {
    // serde_json checks UTF-8 only where it matters to it; checking the whole body once gives
    // the refusal its own message and lets the parser read `str`.
    let text =
        std::str::from_utf8(raw).map_err(|e| InvalidUpdate::NotJson(format!("not UTF-8 ({e})")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let top = de
        .deserialize_any(TopVisitor)
        .and_then(|top| de.end().map(|()| top))
        .map_err(|e| InvalidUpdate::NotJson(e.to_string()))?;
    match top {
        Top::NotAnObject => Ok(None),
        // Telegram never sends it; a `Value` would be some other document.
        Top::RawValue => Err(InvalidUpdate::Malformed(
            "an update's first key cannot be serde_json's raw-value token".into(),
        )),
        // Refused only now, once the whole body was checked: invalid JSON is reported as such.
        // An update holds at most one kind (core.telegram.org/bots/api#update). With two,
        // serde_json's `Value` keeps the last copy of a repeated key and sorts different keys,
        // so the sequence key and a handler could read different payloads: no reading is safe.
        Top::Object {
            second: Some(second),
            probe,
        } => Err(several_kinds(
            probe.kind.as_deref().unwrap_or_default(),
            &second,
        )),
        Top::Object {
            probe,
            second: None,
        } => Ok(Some(probe)),
    }
}

/// The refusal of an update with a second kind (or the same twice).
pub(super) fn several_kinds(kind: &[u8], second: &[u8]) -> InvalidUpdate {
    InvalidUpdate::Malformed(if second == kind {
        format!("duplicate field {}", short(second))
    } else {
        format!(
            "more than one update kind ({}, {})",
            short(kind),
            short(second)
        )
    })
}

/// A key as it goes into a short 400 body: cut and quoted.
fn short(key: &[u8]) -> String {
    let name: String = String::from_utf8_lossy(key).chars().take(32).collect();
    format!("{name:?}")
}

/// True if `json` is an object with the top-level key `key` (escapes in keys decoded).
/// Invalid JSON has no keys.
pub(crate) fn has_top_level_key(json: &[u8], key: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(json) else {
        return false;
    };
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_any(HasKey(key)).unwrap_or(false)
}

/// Arms of a visitor for the shapes it does not read: the value (already checked by serde_json,
/// or checked here for an array or an object) gives `$value`.
/// `give!(None; bool, i64, u64, f64, str, unit, seq, map)`.
macro_rules! give {
    ($value:expr; $($arm:ident),*) => { $( give!(@$arm $value); )* };
    (@bool $value:expr) => { give!(@scalar visit_bool(bool) $value); };
    (@i64 $value:expr) => { give!(@scalar visit_i64(i64) $value); };
    (@u64 $value:expr) => { give!(@scalar visit_u64(u64) $value); };
    (@f64 $value:expr) => { give!(@scalar visit_f64(f64) $value); };
    (@str $value:expr) => { give!(@scalar visit_str(&str) $value); };
    (@scalar $method:ident($ty:ty) $value:expr) => {
        fn $method<E: de::Error>(self, _: $ty) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@unit $value:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@seq $value:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            StrictVisitor.visit_seq(seq)?;
            Ok($value)
        }
    };
    (@map $value:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            StrictVisitor.visit_map(map)?;
            Ok($value)
        }
    };
}

/// `DeserializeSeed` for a visitor that is its own seed: the value asked for with `$method`.
macro_rules! seed {
    ($method:ident: $visitor:ty) => {
        impl<'de> DeserializeSeed<'de> for $visitor {
            type Value = <Self as Visitor<'de>>::Value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.$method(self)
            }
        }
    };
}

/// One value, checked as `serde_json::Value` checks it, and dropped.
pub(super) struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

pub(super) struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    give!(Strict; bool, i64, u64, f64, str, unit);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        match map.next_key_seed(IsRawValueToken)? {
            None => return Ok(Strict),
            Some(true) => return map.next_value_seed(Reparsed(StrictSeed)),
            Some(false) => map.next_value::<Strict>()?,
        };
        while map.next_key::<Strict>()?.is_some() {
            map.next_value::<Strict>()?;
        }
        Ok(Strict)
    }
}

#[derive(Clone, Copy)]
struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Strict;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Strict, D::Error> {
        Strict::deserialize(deserializer)
    }
}

/// A key: `true` if it is [`RAW_VALUE_TOKEN`].
struct IsRawValueToken;

seed!(deserialize_str: IsRawValueToken);

impl<'de> Visitor<'de> for IsRawValueToken {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == RAW_VALUE_TOKEN)
    }
}

/// The value of a [`RAW_VALUE_TOKEN`] key: a string, read with the seed as a JSON document of
/// its own, as serde_json does for a `Value`.
struct Reparsed<S>(S);

impl<'de, S, T> DeserializeSeed<'de> for Reparsed<S>
where
    S: for<'x> DeserializeSeed<'x, Value = T>,
{
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, S, T> Visitor<'de> for Reparsed<S>
where
    S: for<'x> DeserializeSeed<'x, Value = T>,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("raw value")
    }
    fn visit_str<E: de::Error>(self, json: &str) -> Result<T, E> {
        // Each parse in a parse starts its own 128 levels, so a chain of them would recurse as
        // deep as the body is long (17 levels in 1 MiB overflow a 2 MiB stack): one is allowed.
        if IN_RAW_VALUE.replace(true) {
            return Err(E::custom("serde_json's raw-value key inside another"));
        }
        let mut de = serde_json::Deserializer::from_str(json);
        let result = self
            .0
            .deserialize(&mut de)
            .and_then(|value| de.end().map(|()| value))
            .map_err(E::custom);
        IN_RAW_VALUE.set(false);
        result
    }
}

/// Checks the string of a [`RAW_VALUE_TOKEN`] key as `Value` reads it (one link; see
/// [`Reparsed`]), for a reader that hands the string on to a parse of its own.
pub(super) fn check_raw_value_text<E: de::Error>(text: &str) -> Result<(), E> {
    Reparsed(StrictSeed).visit_str(text).map(drop)
}

thread_local! {
    /// Whether this thread is reading the string of a [`RAW_VALUE_TOKEN`] key.
    static IN_RAW_VALUE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A key, borrowed from the body unless it has escapes.
struct Key;

seed!(deserialize_str: Key);

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}

fn bytes(key: Cow<'_, str>) -> Cow<'_, [u8]> {
    match key {
        Cow::Borrowed(key) => Cow::Borrowed(key.as_bytes()),
        Cow::Owned(key) => Cow::Owned(key.into_bytes()),
    }
}

/// What the top-level value is.
#[expect(
    clippy::large_enum_variant,
    reason = "one per body, returned once: boxing would allocate on every update"
)]
enum Top<'a> {
    NotAnObject,
    /// An object whose first key is [`RAW_VALUE_TOKEN`].
    RawValue,
    Object {
        probe: Probe<'a>,
        /// The first key after the kind other than `update_id`: the kind again, or another.
        second: Option<Cow<'a, [u8]>>,
    },
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    give!(Top::NotAnObject; bool, i64, u64, f64, str, unit, seq);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut probe = Probe::default();
        let mut second = None;
        let mut first = true;
        while let Some(key) = map.next_key_seed(Key)? {
            if std::mem::take(&mut first) && key == RAW_VALUE_TOKEN {
                map.next_value_seed(Reparsed(StrictSeed))?;
                return Ok(Top::RawValue);
            }
            if key == "update_id" {
                probe.update_id = Some(if probe.update_id.is_some() {
                    map.next_value::<Strict>()?;
                    Err(InvalidUpdate::DuplicateUpdateId)
                } else {
                    map.next_value_seed(UpdateId)?
                });
                continue;
            }
            let key = bytes(key);
            if probe.kind.is_none() {
                probe.payload = map.next_value_seed(PayloadSeed)?;
                probe.kind = Some(key);
            } else {
                second.get_or_insert(key);
                map.next_value::<Strict>()?;
            }
        }
        Ok(Top::Object { probe, second })
    }
}

/// `update_id`: a non-negative integer, else `BadUpdateId`.
struct UpdateId;

seed!(deserialize_any: UpdateId);

impl<'de> Visitor<'de> for UpdateId {
    type Value = Result<u64, InvalidUpdate>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an update id")
    }
    give!(Err(InvalidUpdate::BadUpdateId); bool, i64, f64, str, unit, seq, map);
    fn visit_u64<E: de::Error>(self, id: u64) -> Result<Self::Value, E> {
        Ok(Ok(id))
    }
}

/// The payload of the update's kind, if it is an object.
#[derive(Clone, Copy)]
struct PayloadSeed;

seed!(deserialize_any: PayloadSeed);

impl<'de> Visitor<'de> for PayloadSeed {
    type Value = Option<Payload>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a payload")
    }
    give!(None; bool, i64, u64, f64, str, unit, seq);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut p = Payload::default();
        let mut first = true;
        // A field seen twice: the last copy counts, as in a `Value`.
        while let Some(key) = map.next_key_seed(Key)? {
            match &*key {
                RAW_VALUE_TOKEN if std::mem::take(&mut first) => {
                    return map.next_value_seed(Reparsed(self));
                }
                "chat" => p.chat = map.next_value_seed(IdObject)?,
                "from" => p.from = map.next_value_seed(IdObject)?,
                "user" => p.user = map.next_value_seed(IdObject)?,
                "message" => p.message_chat = map.next_value_seed(NestedId("chat"))?,
                "new_chat_member" => p.member = map.next_value_seed(NestedId("user"))?,
                "id" => p.id = map.next_value_seed(StringValue)?,
                "poll_id" => p.poll_id = map.next_value_seed(StringValue)?,
                _ => {
                    map.next_value::<Strict>()?;
                }
            }
            first = false;
        }
        Ok(Some(p))
    }
}

/// The integer `id` of an object such as `chat` or `from`, if it has one that fits i64.
#[derive(Clone, Copy)]
struct IdObject;

seed!(deserialize_any: IdObject);

impl<'de> Visitor<'de> for IdObject {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with an id")
    }
    give!(None; bool, i64, u64, f64, str, unit, seq);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        let mut first = true;
        while let Some(key) = map.next_key_seed(Key)? {
            match &*key {
                RAW_VALUE_TOKEN if std::mem::take(&mut first) => {
                    return map.next_value_seed(Reparsed(self));
                }
                "id" => id = map.next_value_seed(IdValue)?,
                _ => {
                    map.next_value::<Strict>()?;
                }
            }
            first = false;
        }
        Ok(id)
    }
}

/// `<inner>.id` of an object (`message.chat.id`, say), if it has one.
#[derive(Clone, Copy)]
struct NestedId(&'static str);

seed!(deserialize_any: NestedId);

impl<'de> Visitor<'de> for NestedId {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    give!(None; bool, i64, u64, f64, str, unit, seq);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        let mut first = true;
        while let Some(key) = map.next_key_seed(Key)? {
            if std::mem::take(&mut first) && key == RAW_VALUE_TOKEN {
                return map.next_value_seed(Reparsed(self));
            }
            if key == self.0 {
                id = map.next_value_seed(IdObject)?;
            } else {
                map.next_value::<Strict>()?;
            }
        }
        Ok(id)
    }
}

/// An id: an integer that fits i64. `-0` is a float to serde_json, so it is no id.
struct IdValue;

seed!(deserialize_any: IdValue);

impl<'de> Visitor<'de> for IdValue {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id")
    }
    give!(None; bool, f64, str, unit, seq, map);
    fn visit_i64<E: de::Error>(self, id: i64) -> Result<Self::Value, E> {
        Ok(Some(id))
    }
    fn visit_u64<E: de::Error>(self, id: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(id).ok())
    }
}

/// A string value (a poll's id), else `None`.
struct StringValue;

seed!(deserialize_any: StringValue);

impl<'de> Visitor<'de> for StringValue {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    give!(None; bool, i64, u64, f64, unit, seq, map);
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(s.to_owned()))
    }
}

/// Whether an object has a top-level key (values checked like a `Value`'s).
struct HasKey<'k>(&'k [u8]);

impl<'de> Visitor<'de> for HasKey<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    give!(false; bool, i64, u64, f64, str, unit, seq);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key_seed(Key)? {
            found |= key.as_bytes() == self.0;
            map.next_value::<Strict>()?;
        }
        Ok(found)
    }
}
