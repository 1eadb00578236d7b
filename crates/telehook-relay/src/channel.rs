//! Channel names: the one path segment of every relay URL.

use std::fmt;
use std::sync::Arc;

/// Longest accepted channel name, in bytes of UTF-8.
pub const MAX_CHANNEL_NAME_LEN: usize = 256;

/// Why a text is not a channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelNameError {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than [`MAX_CHANNEL_NAME_LEN`] bytes.
    #[error("channel name is {len} bytes long; at most {MAX_CHANNEL_NAME_LEN} are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds `/` or a control character.
    #[error(
        "channel name may not hold {found:?} (a channel is one path segment of printable text)"
    )]
    Character {
        /// The first character refused.
        found: char,
    },
    /// The name is `.` or `..`, which URL resolution removes or turns into "parent"
    /// ([RFC 3986 §5.2.4](https://www.rfc-editor.org/rfc/rfc3986#section-5.2.4)).
    #[error("channel name may not be {0:?} (a dot segment)")]
    DotSegment(&'static str),
    /// The path segment is not valid UTF-8 once percent-decoded.
    #[error("channel name is not valid UTF-8")]
    NotUtf8,
}

/// A validated channel name: 1–256 bytes of printable UTF-8 without `/`, i.e. any one
/// percent-decoded URL path segment, as the reference (`lua-long-polling`) accepts it
/// (`my.bot`, `SomeS3cretP@th`, `café`), minus control characters, invisible formatting
/// characters (bidirectional overrides such as U+202E, zero-width characters such as U+200B,
/// the line and paragraph separators U+2028/U+2029) and the dot segments `.` and `..`.
///
/// The bound keeps names safe to use as database keys, Redis key parts and log fields: a name
/// shows in a log as what it is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    /// Checks `name` (already percent-decoded) and wraps it, or says why it is not a channel
    /// name.
    pub fn parse(name: &str) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(ChannelNameError::TooLong { len: name.len() });
        }
        if let Some(found) = name
            .chars()
            .find(|c| *c == '/' || c.is_control() || is_invisible(*c))
        {
            return Err(ChannelNameError::Character { found });
        }
        if let Some(dots) = [".", ".."].into_iter().find(|d| *d == name) {
            return Err(ChannelNameError::DotSegment(dots));
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as one URL path segment: every byte outside `A-Z a-z 0-9 - . _ ~` is
    /// percent-encoded ([RFC 3986 §2.1](https://www.rfc-editor.org/rfc/rfc3986#section-2.1)).
    pub fn to_path_segment(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for byte in self.0.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }
}

/// Characters that print as nothing or reorder or break the text around them: Unicode's
/// format characters (category Cf) and the line/paragraph separators (Zl, Zp).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
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
    fn accepts_any_printable_segment_up_to_the_bound() {
        for ok in [
            "my_Bot-42",
            "my.bot",
            "SomeS3cretP@th",
            "café",
            "a b",
            "x~!$&'()*+,;=:",
        ] {
            assert!(ChannelName::parse(ok).is_ok(), "{ok:?} was refused");
        }
        assert!(ChannelName::parse(&"a".repeat(256)).is_ok());
    }

    #[test]
    fn rejects_empty_long_slash_and_control_characters() {
        for bad in [
            "",
            "a/b",
            "a\nb",
            "\u{7f}",
            "\u{85}",
            &"a".repeat(257),
            "bot\u{202E}gnp.exe",
            "bo\u{200B}t",
            "a\u{2028}b",
            "\u{FEFF}bot",
            ".",
            "..",
        ] {
            assert!(ChannelName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn path_segments_round_trip_through_percent_encoding() {
        let name = ChannelName::parse("SomeS3cretP@th café").unwrap();
        assert_eq!(name.to_path_segment(), "SomeS3cretP%40th%20caf%C3%A9");
    }
}
