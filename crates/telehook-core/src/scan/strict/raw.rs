//! serde_json's raw values, read as a `Value` parse reads them: the value of a first key
//! `RAW_VALUE_TOKEN`, and the text of a `RawValue` that `T` keeps.

use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Unexpected,
    Visitor,
};

use super::nested::{StrictAsUnit, Wrap, WrapEnum, WrapSeq};
use crate::scan::visit::{Strict, check_raw_value_text};

// --- a first key RAW_VALUE_TOKEN ------------------------------------------------------------

/// What `Value` expects as the value of a first key `RAW_VALUE_TOKEN`.
const RAW_VALUE_TEXT: &str = "a string of JSON text";

wrapping_seed!(
    /// The value of a first key `RAW_VALUE_TOKEN`: a string is checked as the JSON text a
    /// `Value` would parse it as (one link, as `Update::from_bytes` checks it) before the inner
    /// seed (perhaps `Value`'s own parse of it) sees it.
    pub(super) RawValueKeySeed => RawValueKeyDe
);

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

    forward_deserializer!(self.0, |visitor| RawValueKeyVisitor(visitor); ignored_any);
}

struct RawValueKeyVisitor<V>(V);

/// `visit_*` methods refusing their value as [`RAW_VALUE_TEXT`] would: a scalar (named `v`, or
/// `_`), or a compound one's deserializer or access.
macro_rules! refuse {
    ($($method:ident($($v:tt: $ty:ty)?) => $unexpected:expr),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self $(, $v: $ty)?) -> Result<V::Value, E> {
                Err(E::invalid_type($unexpected, &RAW_VALUE_TEXT))
            }
        )*
    };
    ($($method:ident<$a:ident: $bound:ident> => $unexpected:expr),* $(,)?) => {
        $(
            fn $method<$a: $bound<'de>>(self, _: $a) -> Result<V::Value, $a::Error> {
                Err(de::Error::invalid_type($unexpected, &RAW_VALUE_TEXT))
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for RawValueKeyVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
    // `Value` reads this key's value as a string of JSON text and refuses anything else
    // (serde_json's `BoxedFromString`), whatever the type that reads it here would accept (a
    // lenient type, e.g. teloxide's `Update`, keeps unknown payloads as they are).
    refuse!(
        visit_bool(v: bool) => Unexpected::Bool(v),
        visit_i64(v: i64) => Unexpected::Signed(v),
        visit_u64(v: u64) => Unexpected::Unsigned(v),
        visit_f64(v: f64) => Unexpected::Float(v),
        visit_char(v: char) => Unexpected::Char(v),
        visit_i128(_: i128) => Unexpected::Other("integer"),
        visit_u128(_: u128) => Unexpected::Other("integer"),
        visit_bytes(v: &[u8]) => Unexpected::Bytes(v),
        visit_none() => Unexpected::Option,
        visit_unit() => Unexpected::Unit,
    );
    refuse!(
        visit_some<D2: Deserializer> => Unexpected::Option,
        visit_newtype_struct<D2: Deserializer> => Unexpected::NewtypeStruct,
        visit_seq<A: SeqAccess> => Unexpected::Seq,
        visit_map<A: MapAccess> => Unexpected::Map,
        visit_enum<A: EnumAccess> => Unexpected::Enum,
    );
    check_strs!(check_raw_value_text);
}

// --- RawValue -------------------------------------------------------------------------------

/// serde_json hands a `RawValue`'s visitor a map of one entry whose value is the raw text.
pub(super) struct RawVisitor<V>(pub(super) V);

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

wrapping_seed!(RawSeed => RawText);

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
    check_strs!(Self::check);
}
