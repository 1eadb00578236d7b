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
//!
//! The wrappers: `top.rs` at the top level (the notes), `nested.rs` below it (the checks),
//! `raw.rs` for serde_json's raw values; `forward.rs` holds the macros that forward the serde
//! methods a wrapper does not change.

use std::borrow::Cow;

use serde::de::Deserialize;

use super::visit::RAW_VALUE_TOKEN;
use crate::invalid::InvalidUpdate;

#[macro_use]
mod forward;
mod nested;
mod raw;
mod top;

use top::Top;

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

#[cfg(test)]
#[path = "strict_tests.rs"]
mod tests;
