//! Channel names: the first path segment of every relay URL.

use std::fmt;
use std::sync::Arc;

use crate::error::RelayError;

/// Longest accepted channel name, in bytes.
pub const MAX_CHANNEL_NAME_LEN: usize = 64;

/// A validated channel name: 1–64 characters of `A-Z a-z 0-9 _ -`.
///
/// Validation keeps names safe to use as database keys, Redis key parts and log fields,
/// and rejects typos such as a trailing slash before anything is stored.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    /// Checks `name` and wraps it, or says why it is not a channel name.
    pub fn parse(name: &str) -> Result<Self, RelayError> {
        if name.is_empty() || name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(RelayError::BadChannel(format!(
                "channel name must be 1-{MAX_CHANNEL_NAME_LEN} characters, got {}",
                name.len()
            )));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(RelayError::BadChannel(format!(
                "channel name may only hold A-Z a-z 0-9 _ -, found {c:?}"
            )));
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_digits_underscore_dash() {
        assert!(ChannelName::parse("my_Bot-42").is_ok());
        assert!(ChannelName::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        for bad in ["", "a b", "a/b", "ü", "a.b", &"a".repeat(65)] {
            assert!(ChannelName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
