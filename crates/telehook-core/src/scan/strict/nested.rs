//! Below the top level: wrappers that check every value, and every value nested in it, as a
//! `serde_json::Value` parse would, whatever `T` makes of it.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::FirstKey;
use super::raw::{RawValueKeySeed, RawVisitor};
use super::top::KeySeed;
use crate::scan::visit::{RAW_VALUE_TOKEN, StrictVisitor};

/// A deserializer whose values, and every value nested in them, are checked like a `Value`'s.
pub(super) struct Wrap<D>(pub(super) D);

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
pub(super) struct StrictAsUnit<V>(pub(super) V);

/// `visit_*` methods that take a scalar as `()`.
macro_rules! as_unit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, _: $ty) -> Result<V::Value, E> {
                self.0.visit_unit()
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictAsUnit<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
    as_unit!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str),
    );
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

wrapping_seed!(pub(super) WrapSeed => Wrap);

pub(super) struct WrapSeq<A>(pub(super) A);

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

pub(super) struct WrapMap<A> {
    map: A,
    /// Keys read so far, up to 2.
    keys: u8,
    first: FirstKey,
}

impl<A> WrapMap<A> {
    pub(super) fn new(map: A) -> Self {
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

pub(super) struct WrapEnum<A>(pub(super) A);

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

pub(super) struct WrapVariant<A>(A);

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
