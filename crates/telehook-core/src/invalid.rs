//! [`InvalidUpdate`]: why a body is not a Telegram update. Its own file so that the scanner
//! (`scan.rs`) and the update view (`update.rs`) both use it without importing each other.

/// Why a body is not a Telegram update. The message is short and safe to send back as the
/// plain-text body of a `400 Bad Request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUpdate {
    /// The body is not valid JSON (or is cut short).
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON, but a field has a shape no update has (such as a duplicate key).
    #[error("body is not a Telegram update: {0}")]
    Malformed(String),
    /// The body is JSON but not an object.
    #[error("body is not a JSON object")]
    NotAnObject,
    /// The object has no `update_id` field.
    #[error("missing field `update_id`")]
    MissingUpdateId,
    /// `update_id` is present but not a positive integer.
    #[error("`update_id` must be a positive integer")]
    BadUpdateId,
    /// `update_id` appears twice.
    #[error("duplicate field `update_id`")]
    DuplicateUpdateId,
}
