//! The serde methods a wrapper forwards unchanged, written once. Each macro expands inside an
//! `impl` of the wrapper, where the wrapper types it names (`Wrap`, `StrictAsUnit`, …) are in
//! scope.

/// Every `deserialize_*` of a wrapper but `deserialize_newtype_struct` and
/// `deserialize_ignored_any`: the inner deserializer, with the visitor wrapped by
/// `$wrap(visitor, ...)`. After a `;`, those two as well: `newtype_struct` forwarded the same
/// way, `ignored_any` as `deserialize_any` with the visitor `$wrap(StrictAsUnit(visitor))` (an
/// ignored value is checked all the same).
macro_rules! forward_deserializer {
    ($self:ident . $inner:tt, |$v:ident| $wrap:expr $(; $($extra:ident),+)?) => {
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
        $($(forward_deserializer!(@ $extra $self . $inner, |$v| $wrap);)+)?
    };
    (@ newtype_struct $self:ident . $inner:tt, |$v:ident| $wrap:expr) => {
        forward_deserializer!(@ $self . $inner, |$v| $wrap;
            deserialize_newtype_struct(name: &'static str));
    };
    (@ ignored_any $self:ident . $inner:tt, |$v:ident| $wrap:expr) => {
        fn deserialize_ignored_any<V: Visitor<'de>>(
            $self,
            $v: V,
        ) -> Result<V::Value, Self::Error> {
            let $v = StrictAsUnit($v);
            let (inner, wrapped) = ($self.$inner, $wrap);
            inner.deserialize_any(wrapped)
        }
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

/// `visit_borrowed_str`, `visit_str` and `visit_string`: the text checked by `$check`, then
/// handed to the inner visitor `self.0`.
macro_rules! check_strs {
    ($check:path) => {
        fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
            $check(text)?;
            self.0.visit_borrowed_str(text)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            $check(text)?;
            self.0.visit_str(text)
        }
        fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
            $check(&text)?;
            self.0.visit_string(text)
        }
    };
}

/// A seed wrapper: `$seed(seed)` deserializes `seed` from `$de(deserializer)`.
macro_rules! wrapping_seed {
    ($(#[$attr:meta])* $vis:vis $seed:ident => $de:ident) => {
        $(#[$attr])*
        $vis struct $seed<S>(pub(super) S);

        impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for $seed<S> {
            type Value = S::Value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
                self.0.deserialize($de(d))
            }
        }
    };
}
