//! One parse of a webhook body into the handler's own type that is also the validation: the
//! body goes through serde_json into `T` once, behind a wrapper that
//!
//! - checks every value `T` ignores as `serde_json::Value` would (serde_json skips an ignored
//!   value without checking the range of its numbers or the surrogates of its strings),
//!   and every raw value `T` keeps (`Box<RawValue>` is skipped the same way);
//! - notes, at the top level, `update_id` and the kind in document order, and what
//!   `Update::from_bytes` refuses: a repeated or second kind, a repeated `update_id`, a body that
//!   is not an object, serde_json's raw-value key first.
//!
//! So a body reaches a typed handler exactly when `Update::from_bytes` accepts it and `T` fits.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};

use super::visit::{RAW_VALUE_TOKEN, Strict, StrictVisitor, check_raw_value_text};
use crate::invalid::InvalidUpdate;

/// What the one parse noted about the update.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    /// `update_id`, positive.
    pub(crate) update_id: u64,
    /// The key that holds the payload, decoded.
    pub(crate) kind: Option<Cow<'a, str>>,
}

/// Why a strict parse failed.
#[derive(Debug)]
pub(crate) enum StrictError {
    /// The body is valid JSON and an update, but it does not fit `T` (or it is not JSON:
    /// `Update::from_bytes` tells the two apart).
    Parse(serde_json::Error),
    /// `T` fit, but the body is not an update `Update::from_bytes` accepts.
    Invalid(InvalidUpdate),
}

/// Deserializes `body` into `T` in one pass, as strictly as `Update::from_bytes` validates it.
pub(crate) fn from_slice<'a, T: Deserialize<'a>>(
    body: &'a [u8],
) -> Result<(T, Head<'a>), StrictError> {
    // One check of the whole body: serde_json reading `str` then skips its check of each
    // string (cheaper in all, as for the probe), and the refusal is the validator's.
    let text = std::str::from_utf8(body)
        .map_err(|e| StrictError::Invalid(InvalidUpdate::NotJson(format!("not UTF-8 ({e})"))))?;
    let mut notes = Notes::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let value = T::deserialize(Top {
        de: &mut de,
        notes: &mut notes,
    })
    .and_then(|value| de.end().map(|()| value))
    .map_err(StrictError::Parse)?;
    notes
        .head()
        .map(|head| (value, head))
        .map_err(StrictError::Invalid)
}

/// What the top level showed, in document order.
#[derive(Default)]
struct Notes<'a> {
    object: bool,
    keys: usize,
    raw_value_first: bool,
    /// The key whose value is read next.
    last_is_update_id: bool,
    update_ids: usize,
    update_id: Option<Result<u64, InvalidUpdate>>,
    kind: Option<Cow<'a, str>>,
    second: Option<String>,
}

/// Where a key is noted.
trait NoteKey<'a> {
    fn key(&mut self, key: Cow<'a, str>);
}

/// The first key of an object below the top: whether it is [`RAW_VALUE_TOKEN`].
struct FirstKey(bool);

impl<'a> NoteKey<'a> for FirstKey {
    fn key(&mut self, key: Cow<'a, str>) {
        self.0 = key == RAW_VALUE_TOKEN;
    }
}

impl<'a> NoteKey<'a> for Notes<'a> {
    fn key(&mut self, key: Cow<'a, str>) {
        if self.keys == 0 && key == RAW_VALUE_TOKEN {
            self.raw_value_first = true;
        }
        self.keys += 1;
        self.last_is_update_id = key == "update_id";
        if self.last_is_update_id {
            self.update_ids += 1;
        } else if self.kind.is_none() {
            self.kind = Some(key);
        } else if self.second.is_none() {
            self.second = Some(key.into_owned());
        }
    }
}

impl<'a> Notes<'a> {
    /// The same verdicts, in the same order, as `Update::from_bytes`.
    fn head(self) -> Result<Head<'a>, InvalidUpdate> {
        if !self.object {
            return Err(InvalidUpdate::NotAnObject);
        }
        if self.raw_value_first {
            return Err(InvalidUpdate::Malformed(
                "an update's first key cannot be serde_json's raw-value token".into(),
            ));
        }
        if let Some(second) = self.second {
            return Err(super::visit::several_kinds(
                self.kind.as_deref().unwrap_or_default().as_bytes(),
                second.as_bytes(),
            ));
        }
        let update_id = match (self.update_ids, self.update_id) {
            (0, _) => return Err(InvalidUpdate::MissingUpdateId),
            (1, Some(Ok(id))) if id > 0 => id,
            (1, _) => return Err(InvalidUpdate::BadUpdateId),
            _ => return Err(InvalidUpdate::DuplicateUpdateId),
        };
        Ok(Head {
            update_id,
            kind: self.kind,
        })
    }
}

// --- the top level --------------------------------------------------------------------------

/// The top-level deserializer: notes what the value is.
struct Top<'n, 'a, D> {
    de: D,
    notes: &'n mut Notes<'a>,
}

/// Every `deserialize_*` of a wrapper: the inner deserializer, with the visitor wrapped by
/// `$wrap(visitor, ...)`.
macro_rules! forward_deserializer {
    ($self:ident . $inner:tt, |$v:ident| $wrap:expr) => {
        forward_deserializer!(@ $self . $inner, |$v| $wrap;
            deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(),
            deserialize_i32(), deserialize_i64(), deserialize_i128(), deserialize_u8(),
            deserialize_u16(), deserialize_u32(), deserialize_u64(), deserialize_u128(),
            deserialize_f32(), deserialize_f64(), deserialize_char(), deserialize_str(),
            deserialize_string(), deserialize_bytes(), deserialize_byte_buf(),
            deserialize_option(), deserialize_unit(), deserialize_seq(), deserialize_map(),
            deserialize_identifier(),
            deserialize_unit_struct(name: &'static str),
            deserialize_tuple(len: usize),
            deserialize_tuple_struct(name: &'static str, len: usize),
            deserialize_struct(name: &'static str, fields: &'static [&'static str]),
            deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        );
    };
    (@ $self:ident . $inner:tt, |$v:ident| $wrap:expr;
        $($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(
                $self,
                $($arg: $ty,)*
                $v: V,
            ) -> Result<V::Value, Self::Error> {
                let (inner, wrapped) = ($self.$inner, $wrap);
                inner.$method($($arg,)* wrapped)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Top<'_, 'de, D> {
    type Error = D::Error;

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        // A raw value at the top: checked like any raw value; never an object of keys.
        Wrap(self.de).deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_any(TopVisitor {
            inner: StrictAsUnit(visitor),
            notes: self.notes,
        })
    }

    forward_deserializer!(self.de, |visitor| TopVisitor {
        inner: visitor,
        notes: self.notes,
    });
}

struct TopVisitor<'n, 'a, V> {
    inner: V,
    notes: &'n mut Notes<'a>,
}

/// Every `visit_*` but the compound ones, forwarded to `self.$inner`.
macro_rules! forward_scalars {
    ($inner:tt) => {
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.$inner.expecting(f)
        }
        forward_scalars!(@ $inner;
            visit_bool(bool), visit_i8(i8), visit_i16(i16), visit_i32(i32), visit_i64(i64),
            visit_i128(i128), visit_u8(u8), visit_u16(u16), visit_u32(u32), visit_u64(u64),
            visit_u128(u128), visit_f32(f32), visit_f64(f64), visit_char(char),
            visit_str(&str), visit_borrowed_str(&'de str), visit_string(String),
            visit_bytes(&[u8]), visit_borrowed_bytes(&'de [u8]), visit_byte_buf(Vec<u8>),
        );
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            self.$inner.visit_none()
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            self.$inner.visit_unit()
        }
    };
    (@ $inner:tt; $($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.$inner.$method(v)
            }
        )*
    };
}

/// The compound `visit_*`: the inner visitor reads through wrappers, so the values nested in a
/// value are checked too.
macro_rules! forward_compounds {
    ($inner:tt) => {
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            self.$inner.visit_some(Wrap(d))
        }
        fn visit_newtype_struct<D2: Deserializer<'de>>(
            self,
            d: D2,
        ) -> Result<Self::Value, D2::Error> {
            self.$inner.visit_newtype_struct(Wrap(d))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            self.$inner.visit_seq(WrapSeq(seq))
        }
        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
            self.$inner.visit_enum(WrapEnum(data))
        }
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for TopVisitor<'_, 'de, V> {
    type Value = V::Value;

    forward_scalars!(inner);
    forward_compounds!(inner);

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.notes.object = true;
        self.inner.visit_map(TopMap {
            map,
            notes: self.notes,
        })
    }
}

struct TopMap<'n, 'a, A> {
    map: A,
    notes: &'n mut Notes<'a>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for TopMap<'_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.map.next_key_seed(KeySeed {
            seed,
            notes: self.notes,
        })
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if std::mem::take(&mut self.notes.last_is_update_id) {
            self.map.next_value_seed(IdSeed {
                seed,
                notes: self.notes,
            })
        } else if self.notes.keys == 1 && self.notes.raw_value_first {
            self.map.next_value_seed(RawValueKeySeed(seed))
        } else {
            self.map.next_value_seed(WrapSeed(seed))
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A top-level key: noted as it goes to the inner seed.
struct KeySeed<'n, N, S> {
    seed: S,
    notes: &'n mut N,
}

impl<'de, N: NoteKey<'de>, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, N, S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(KeyDe {
            de: d,
            notes: self.notes,
        })
    }
}

struct KeyDe<'n, N, D> {
    de: D,
    notes: &'n mut N,
}

impl<'de, N: NoteKey<'de>, D: Deserializer<'de>> Deserializer<'de> for KeyDe<'_, N, D> {
    type Error = D::Error;

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_newtype_struct(
            name,
            KeyVisitor {
                inner: visitor,
                notes: self.notes,
            },
        )
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_any(KeyVisitor {
            inner: StrictAsUnit(visitor),
            notes: self.notes,
        })
    }

    forward_deserializer!(self.de, |visitor| KeyVisitor {
        inner: visitor,
        notes: self.notes,
    });
}

struct KeyVisitor<'n, N, V> {
    inner: V,
    notes: &'n mut N,
}

impl<'de, N: NoteKey<'de>, V: Visitor<'de>> Visitor<'de> for KeyVisitor<'_, N, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }
    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<V::Value, E> {
        self.notes.key(Cow::Borrowed(key));
        self.inner.visit_borrowed_str(key)
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<V::Value, E> {
        self.notes.key(Cow::Owned(key.to_owned()));
        self.inner.visit_str(key)
    }
    fn visit_string<E: de::Error>(self, key: String) -> Result<V::Value, E> {
        self.notes.key(Cow::Owned(key.clone()));
        self.inner.visit_string(key)
    }
}

/// The value of `update_id`: noted as it goes to the inner seed.
struct IdSeed<'n, 'a, S> {
    seed: S,
    notes: &'n mut Notes<'a>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for IdSeed<'_, 'de, S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(IdDe {
            de: d,
            notes: self.notes,
        })
    }
}

struct IdDe<'n, 'a, D> {
    de: D,
    notes: &'n mut Notes<'a>,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for IdDe<'_, 'de, D> {
    type Error = D::Error;

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_newtype_struct(
            name,
            IdVisitor {
                inner: visitor,
                notes: self.notes,
            },
        )
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_any(IdVisitor {
            inner: StrictAsUnit(visitor),
            notes: self.notes,
        })
    }

    forward_deserializer!(self.de, |visitor| IdVisitor {
        inner: visitor,
        notes: self.notes,
    });
}

struct IdVisitor<'n, 'a, V> {
    inner: V,
    notes: &'n mut Notes<'a>,
}

impl<'de, V: Visitor<'de>> IdVisitor<'_, 'de, V> {
    fn note(&mut self, id: Result<u64, InvalidUpdate>) {
        self.notes.update_id = Some(id);
    }
}

/// `visit_*` methods that note `update_id` as not a non-negative integer, then forward.
macro_rules! bad_id {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(mut self, v: $ty) -> Result<Self::Value, E> {
                self.note(Err(InvalidUpdate::BadUpdateId));
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for IdVisitor<'_, 'de, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }
    fn visit_u64<E: de::Error>(mut self, id: u64) -> Result<V::Value, E> {
        self.note(Ok(id));
        self.inner.visit_u64(id)
    }
    bad_id!(
        visit_bool(bool),
        visit_i64(i64),
        visit_f64(f64),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
    );
    fn visit_unit<E: de::Error>(mut self) -> Result<V::Value, E> {
        self.note(Err(InvalidUpdate::BadUpdateId));
        self.inner.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, seq: A) -> Result<V::Value, A::Error> {
        self.note(Err(InvalidUpdate::BadUpdateId));
        self.inner.visit_seq(WrapSeq(seq))
    }
    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<V::Value, A::Error> {
        self.note(Err(InvalidUpdate::BadUpdateId));
        self.inner.visit_map(WrapMap::new(map))
    }
    fn visit_none<E: de::Error>(mut self) -> Result<V::Value, E> {
        self.note(Err(InvalidUpdate::BadUpdateId));
        self.inner.visit_none()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(IdDe {
            de: d,
            notes: self.notes,
        })
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(IdDe {
            de: d,
            notes: self.notes,
        })
    }
    fn visit_enum<A: EnumAccess<'de>>(mut self, data: A) -> Result<V::Value, A::Error> {
        self.note(Err(InvalidUpdate::BadUpdateId));
        self.inner.visit_enum(WrapEnum(data))
    }
}

// --- below the top level ---------------------------------------------------------------------

/// A deserializer whose values, and every value nested in them, are checked like a `Value`'s.
struct Wrap<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Wrap<D> {
    type Error = D::Error;

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        if name == RAW_VALUE_TOKEN {
            // serde_json's `RawValue`: its text was skipped, not checked; check it here.
            return self.0.deserialize_newtype_struct(name, RawVisitor(visitor));
        }
        self.0
            .deserialize_newtype_struct(name, WrapVisitor(visitor))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(StrictAsUnit(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }

    forward_deserializer!(self.0, |visitor| WrapVisitor(visitor));
}

struct WrapVisitor<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for WrapVisitor<V> {
    type Value = V::Value;

    forward_scalars!(0);
    forward_compounds!(0);

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(WrapMap::new(map))
    }
}

/// An ignored value: checked as a `Value` would be, then given to the visitor as `()`.
struct StrictAsUnit<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictAsUnit<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        StrictVisitor.visit_seq(seq)?;
        self.0.visit_unit()
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        StrictVisitor.visit_map(map)?;
        self.0.visit_unit()
    }
}

struct WrapSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for WrapSeed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Wrap(d))
    }
}

struct WrapSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for WrapSeq<A> {
    type Error = A::Error;
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.0.next_element_seed(WrapSeed(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct WrapMap<A> {
    map: A,
    /// Keys read so far, up to 2.
    keys: u8,
    first: FirstKey,
}

impl<A> WrapMap<A> {
    fn new(map: A) -> Self {
        Self {
            map,
            keys: 0,
            first: FirstKey(false),
        }
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WrapMap<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.keys = self.keys.saturating_add(1);
        if self.keys == 2 && self.first.0 {
            // A `Value` takes such an object for its raw text alone and refuses more keys.
            return match self.map.next_key_seed(WrapSeed(seed))? {
                None => Ok(None),
                Some(_) => Err(de::Error::custom("a key after serde_json's raw-value key")),
            };
        }
        if self.keys == 1 {
            // The first key: a `Value` reads the object as raw JSON text if it is the token.
            self.map.next_key_seed(KeySeed {
                seed,
                notes: &mut self.first,
            })
        } else {
            self.map.next_key_seed(WrapSeed(seed))
        }
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if self.keys == 1 && self.first.0 {
            self.map.next_value_seed(RawValueKeySeed(seed))
        } else {
            self.map.next_value_seed(WrapSeed(seed))
        }
    }
    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// What `Value` expects as the value of a first key [`RAW_VALUE_TOKEN`].
const RAW_VALUE_TEXT: &str = "a string of JSON text";

/// `visit_*` methods refusing their scalar as [`RAW_VALUE_TEXT`] would.
macro_rules! refuse_non_strings {
    ($($method:ident($ty:ty) => $unexpected:expr),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                Err(E::invalid_type($unexpected(v), &RAW_VALUE_TEXT))
            }
        )*
    };
}

/// The value of a first key [`RAW_VALUE_TOKEN`]: a string is checked as the JSON text a
/// `Value` would parse it as (one link, as `Update::from_bytes` checks it) before the inner
/// seed (perhaps `Value`'s own parse of it) sees it.
struct RawValueKeySeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for RawValueKeySeed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(RawValueKeyDe(d))
    }
}

struct RawValueKeyDe<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for RawValueKeyDe<D> {
    type Error = D::Error;

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        Wrap(self.0).deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_any(RawValueKeyVisitor(StrictAsUnit(visitor)))
    }

    forward_deserializer!(self.0, |visitor| RawValueKeyVisitor(visitor));
}

struct RawValueKeyVisitor<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for RawValueKeyVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
    // `Value` reads this key's value as a string of JSON text and refuses anything else
    // (serde_json's `BoxedFromString`), whatever the type that reads it here would accept (a
    // lenient type, e.g. teloxide's `Update`, keeps unknown payloads as they are).
    refuse_non_strings!(
        visit_bool(bool) => Unexpected::Bool,
        visit_i64(i64) => Unexpected::Signed,
        visit_u64(u64) => Unexpected::Unsigned,
        visit_f64(f64) => Unexpected::Float,
        visit_char(char) => Unexpected::Char,
    );
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<V::Value, E> {
        Err(E::invalid_type(
            Unexpected::Other("integer"),
            &RAW_VALUE_TEXT,
        ))
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<V::Value, E> {
        Err(E::invalid_type(
            Unexpected::Other("integer"),
            &RAW_VALUE_TEXT,
        ))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        Err(E::invalid_type(Unexpected::Bytes(v), &RAW_VALUE_TEXT))
    }
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        Err(E::invalid_type(Unexpected::Option, &RAW_VALUE_TEXT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        Err(E::invalid_type(Unexpected::Unit, &RAW_VALUE_TEXT))
    }
    fn visit_some<D2: Deserializer<'de>>(self, _: D2) -> Result<V::Value, D2::Error> {
        Err(de::Error::invalid_type(Unexpected::Option, &RAW_VALUE_TEXT))
    }
    fn visit_newtype_struct<D2: Deserializer<'de>>(self, _: D2) -> Result<V::Value, D2::Error> {
        Err(de::Error::invalid_type(
            Unexpected::NewtypeStruct,
            &RAW_VALUE_TEXT,
        ))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<V::Value, A::Error> {
        Err(de::Error::invalid_type(Unexpected::Seq, &RAW_VALUE_TEXT))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<V::Value, A::Error> {
        Err(de::Error::invalid_type(Unexpected::Map, &RAW_VALUE_TEXT))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, _: A) -> Result<V::Value, A::Error> {
        Err(de::Error::invalid_type(Unexpected::Enum, &RAW_VALUE_TEXT))
    }
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<V::Value, E> {
        check_raw_value_text(text)?;
        self.0.visit_borrowed_str(text)
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<V::Value, E> {
        check_raw_value_text(text)?;
        self.0.visit_str(text)
    }
    fn visit_string<E: de::Error>(self, text: String) -> Result<V::Value, E> {
        check_raw_value_text(&text)?;
        self.0.visit_string(text)
    }
}

struct WrapEnum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for WrapEnum<A> {
    type Error = A::Error;
    type Variant = WrapVariant<A::Variant>;
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(WrapSeed(seed))?;
        Ok((value, WrapVariant(variant)))
    }
}

struct WrapVariant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for WrapVariant<A> {
    type Error = A::Error;
    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.0.newtype_variant_seed(WrapSeed(seed))
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, WrapVisitor(visitor))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, WrapVisitor(visitor))
    }
}

// --- raw values -----------------------------------------------------------------------------

/// serde_json hands a `RawValue`'s visitor a map of one entry whose value is the raw text.
struct RawVisitor<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for RawVisitor<V> {
    type Value = V::Value;
    forward_scalars!(0);
    forward_compounds!(0);
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(RawMap(map))
    }
}

struct RawMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for RawMap<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.0.next_value_seed(RawSeed(seed))
    }
}

struct RawSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for RawSeed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(RawText(d))
    }
}

/// The raw text, checked as a JSON document of its own the way a `Value` parse checks it.
struct RawText<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for RawText<D> {
    type Error = D::Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(RawTextVisitor(visitor))
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct RawTextVisitor<V>(V);

impl<V> RawTextVisitor<V> {
    fn check<E: de::Error>(text: &str) -> Result<(), E> {
        let mut de = serde_json::Deserializer::from_str(text);
        Strict::deserialize(&mut de)
            .and_then(|_| de.end())
            .map_err(E::custom)
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for RawTextVisitor<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<V::Value, E> {
        Self::check(text)?;
        self.0.visit_borrowed_str(text)
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<V::Value, E> {
        Self::check(text)?;
        self.0.visit_str(text)
    }
    fn visit_string<E: de::Error>(self, text: String) -> Result<V::Value, E> {
        Self::check(&text)?;
        self.0.visit_string(text)
    }
}

#[cfg(test)]
#[path = "strict_tests.rs"]
mod tests;
