//! The top level: its keys and `update_id` are noted as they go to `T`; the values below go
//! through the checking wrappers of `nested.rs`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

use super::nested::{StrictAsUnit, Wrap, WrapEnum, WrapMap, WrapSeed, WrapSeq};
use super::raw::RawValueKeySeed;
use super::{NoteKey, Notes};
use crate::invalid::InvalidUpdate;

/// The top-level deserializer: notes what the value is.
pub(super) struct Top<'n, 'a, D> {
    pub(super) de: D,
    pub(super) notes: &'n mut Notes<'a>,
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

    forward_deserializer!(self.de, |visitor| TopVisitor {
        inner: visitor,
        notes: self.notes,
    }; ignored_any);
}

struct TopVisitor<'n, 'a, V> {
    inner: V,
    notes: &'n mut Notes<'a>,
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

// --- keys -----------------------------------------------------------------------------------

/// A key (at the top, or the first of an object below it): noted as it goes to the inner seed.
pub(super) struct KeySeed<'n, N, S> {
    pub(super) seed: S,
    pub(super) notes: &'n mut N,
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

    forward_deserializer!(self.de, |visitor| KeyVisitor {
        inner: visitor,
        notes: self.notes,
    }; newtype_struct, ignored_any);
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

// --- update_id ------------------------------------------------------------------------------

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

    forward_deserializer!(self.de, |visitor| IdVisitor {
        inner: visitor,
        notes: self.notes,
    }; newtype_struct, ignored_any);
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

/// `visit_*` methods that note `update_id` as not a non-negative integer, then forward (the
/// value, if any, named `v`; a compound one through `$wrap`).
macro_rules! bad_id {
    ($($method:ident($($v:ident: $ty:ty)?)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(mut self $(, $v: $ty)?) -> Result<Self::Value, E> {
                self.note(Err(InvalidUpdate::BadUpdateId));
                self.inner.$method($($v)?)
            }
        )*
    };
    ($($method:ident<$a:ident: $access:ident>($wrap:path)),* $(,)?) => {
        $(
            fn $method<$a: $access<'de>>(mut self, a: $a) -> Result<Self::Value, $a::Error> {
                self.note(Err(InvalidUpdate::BadUpdateId));
                self.inner.$method($wrap(a))
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
        visit_bool(v: bool),
        visit_i64(v: i64),
        visit_f64(v: f64),
        visit_str(v: &str),
        visit_borrowed_str(v: &'de str),
        visit_string(v: String),
        visit_unit(),
        visit_none(),
    );
    bad_id!(
        visit_seq<A: SeqAccess>(WrapSeq),
        visit_map<A: MapAccess>(WrapMap::new),
        visit_enum<A: EnumAccess>(WrapEnum),
    );
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
}
