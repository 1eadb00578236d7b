//! `POST /{channel}`: read the body in bounded size and time, merge query parameters, store.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};

use super::extract::{ChannelPath, QueryPairs, query_pairs};
use super::state::{Access, Shared, bearer};
use crate::error::RelayError;
use crate::store::NewUpdate;

/// Header carrying the channel's count after a POST.
pub const TOTAL_UPDATES_HEADER: &str = "x-total-updates";
/// Header Telegram sends with the webhook's `secret_token`; accepted as a write token. The
/// same constant as the webhook adapters use.
pub use telehook_core::SECRET_TOKEN_HEADER;

/// `POST /{channel}` and `POST /{channel}/pushUpdates`.
pub(crate) async fn push_update(
    State(shared): State<Arc<Shared>>,
    channel: ChannelPath,
    query: QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RelayError> {
    let channel = channel.0?;
    let token = headers
        .get(SECRET_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(&headers));
    shared.authorize(&channel, Access::Write, token)?;
    let pairs = query_pairs(query)?;
    let limit = shared.config.max_body_bytes;
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64)
    {
        return Err(RelayError::BodyTooLarge { limit });
    }
    let time_limit = shared.config.body_read_timeout;
    let bytes = tokio::time::timeout(time_limit, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| RelayError::BodyTimeout { limit: time_limit })?
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return RelayError::BodyTooLarge { limit };
                }
                source = err.source();
            }
            RelayError::BodyRead(e)
        })?;
    let update = update_json(&bytes, &pairs)?;
    let update_id = update.update_id;
    let appended = shared.store.append(channel.clone(), update).await?;
    if appended.duplicate {
        tracing::info!(%channel, update_id, seq = appended.seq, "redelivered update acknowledged, not stored again");
    } else {
        tracing::debug!(%channel, update_id, seq = appended.seq, "update stored");
    }
    let mut response = "OK".into_response();
    response
        .headers_mut()
        .insert(TOTAL_UPDATES_HEADER, HeaderValue::from(appended.seq));
    Ok(response)
}

/// Validates the body as JSON and returns it as stored: the body's own bytes with the
/// whitespace between tokens removed (never a value changed: numbers, escapes, key order and
/// repeated keys stay exactly as sent), plus the query parameters appended as string fields.
/// A parameter naming a field the body already has, or given twice, is refused (400) rather
/// than overwriting data (the reference overwrites; see docs/relay.md, compatibility table).
pub(crate) fn update_json(
    body: &[u8],
    pairs: &[(String, String)],
) -> Result<NewUpdate, RelayError> {
    let top: TopLevel = serde_json::from_slice(body).map_err(RelayError::BadJson)?;
    // from_slice accepted it, so it is UTF-8.
    let mut json = minify(std::str::from_utf8(body).unwrap_or_default());
    if pairs.is_empty() {
        return Ok(NewUpdate {
            json,
            update_id: top.update_id,
        });
    }
    if !top.object {
        return Err(RelayError::NotAnObject);
    }
    let mut seen: Vec<&str> = Vec::with_capacity(pairs.len());
    for (key, _) in pairs {
        if top.keys.iter().any(|k| k == key) || seen.contains(&key.as_str()) {
            return Err(RelayError::BadParameter {
                name: "query",
                reason: format!(
                    "parameter {key:?} is given twice or is already a field of the body; \
                     the relay does not overwrite a body's fields"
                ),
            });
        }
        seen.push(key);
    }
    // The body is `{…}` without outer whitespace: splice the fields in before the last `}`.
    json.pop();
    for (key, value) in pairs {
        if !json.ends_with('{') {
            json.push(',');
        }
        json.push_str(&serde_json::Value::String(key.clone()).to_string());
        json.push(':');
        json.push_str(&serde_json::Value::String(value.clone()).to_string());
    }
    json.push('}');
    Ok(NewUpdate {
        json,
        update_id: top.update_id,
    })
}

/// Removes the whitespace JSON allows between tokens; strings are copied untouched (raw
/// whitespace cannot occur inside a valid JSON string except as a space, which is kept).
fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

/// What the relay needs from a body's top level: whether it is an object, its keys (repeats
/// included) and its `update_id` (the last one, as JSON parsers read repeated keys).
#[derive(Default)]
struct TopLevel {
    object: bool,
    keys: Vec<String>,
    update_id: Option<i64>,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = TopLevel;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TopLevel, A::Error> {
                let mut top = TopLevel {
                    object: true,
                    ..TopLevel::default()
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "update_id" {
                        let value: serde_json::Value = map.next_value()?;
                        top.update_id = value.as_i64();
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                    top.keys.push(key);
                }
                Ok(top)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<TopLevel, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(TopLevel::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
                Ok(TopLevel::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
                Ok(TopLevel::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
                Ok(TopLevel::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
                Ok(TopLevel::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
                Ok(TopLevel::default())
            }
            fn visit_unit<E>(self) -> Result<TopLevel, E> {
                Ok(TopLevel::default())
            }
        }
        de.deserialize_any(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_merged_into_the_object() {
        let update = update_json(br#"{"a":1}"#, &[("b".into(), "x y".into())]).unwrap();
        assert_eq!(update.json, r#"{"a":1,"b":"x y"}"#);
        assert_eq!(update.update_id, None);
    }

    #[test]
    fn compact_bodies_are_stored_as_sent_with_their_update_id() {
        let update = update_json(br#" {"z":1,"update_id":2} "#, &[]).unwrap();
        assert_eq!(update.json, r#"{"z":1,"update_id":2}"#);
        assert_eq!(update.update_id, Some(2));
    }

    #[test]
    fn bodies_are_stored_byte_for_byte_but_for_whitespace_between_tokens() {
        let body = "{\"update_id\": 1,\n \"big\": 18446744073709551617, \"e\": 1e2,\r\n\t\
                    \"s\": \"a \\\" b\\n\", \"d\": 1, \"d\": 2, \"f\": 1.50}\n";
        let update = update_json(body.as_bytes(), &[]).unwrap();
        assert_eq!(
            update.json,
            r#"{"update_id":1,"big":18446744073709551617,"e":1e2,"s":"a \" b\n","d":1,"d":2,"f":1.50}"#
        );
        assert_eq!(update.update_id, Some(1));
        let merged = update_json(body.as_bytes(), &[("botname".into(), "x".into())]).unwrap();
        assert_eq!(
            merged.json,
            r#"{"update_id":1,"big":18446744073709551617,"e":1e2,"s":"a \" b\n","d":1,"d":2,"f":1.50,"botname":"x"}"#
        );
        assert_eq!(
            update_json(b"{ }", &[("a".into(), "\"".into())])
                .unwrap()
                .json,
            r#"{"a":"\""}"#
        );
    }

    #[test]
    fn query_parameters_never_overwrite_a_field_of_the_body() {
        for (body, pairs) in [
            (r#"{"update_id":1}"#, vec![("update_id", "9")]),
            (r#"{"a":1}"#, vec![("b", "1"), ("b", "2")]),
        ] {
            let pairs: Vec<(String, String)> = pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let err = update_json(body.as_bytes(), &pairs).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn parameters_cannot_merge_into_a_non_object() {
        assert!(matches!(
            update_json(b"[1]", &[("a".into(), "b".into())]),
            Err(RelayError::NotAnObject)
        ));
    }
}
