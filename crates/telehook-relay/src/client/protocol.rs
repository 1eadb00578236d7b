//! The relay's long-poll protocol (lua-long-polling's `poll.def.pm`): one request and how
//! its answer is read.

use std::time::Duration;

use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::value::RawValue;

use bytes::Bytes;

use super::{ClientError, RelayClient};

/// One long-poll answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Polled {
    /// The `ts` to send next time.
    pub ts: u64,
    /// Updates that retention dropped before they could be read (the relay's `missed`, or the
    /// gap between the `ts` step and the updates returned, as the reference server shows it).
    pub missed: u64,
    /// The relay answered from the start of the channel (`"reset":true`): the `ts` asked for
    /// was above its count (its storage was replaced), so everything returned is new.
    pub reset: bool,
    /// The updates, as raw JSON, oldest first.
    pub updates: Vec<Bytes>,
}

#[derive(Deserialize)]
struct Answer<'a> {
    ok: bool,
    ts: u64,
    #[serde(default)]
    missed: u64,
    #[serde(default)]
    reset: bool,
    #[serde(borrow, default, deserialize_with = "list_or_empty_object")]
    updates: Vec<&'a RawValue>,
}

/// A JSON array, or `{}`: the reference server (Lua, cjson) encodes an empty list as an
/// empty object.
fn list_or_empty_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<&'de RawValue>, D::Error> {
    struct ListOrEmpty;
    impl<'de> de::Visitor<'de> for ListOrEmpty {
        type Value = Vec<&'de RawValue>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of updates (or {} for none)")
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1_000));
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                out.push(raw);
            }
            Ok(out)
        }

        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            match map.next_key::<de::IgnoredAny>()? {
                None => Ok(Vec::new()),
                Some(_) => Err(de::Error::custom(
                    "`updates` is an object with keys; expected a list",
                )),
            }
        }
    }
    deserializer.deserialize_any(ListOrEmpty)
}

impl RelayClient {
    /// One long poll from `ts`.
    pub async fn poll(&self, ts: u64) -> Result<Polled, ClientError> {
        let uri = format!(
            "{}/{}?ts={ts}&sleep={}",
            self.base,
            self.channel.to_path_segment(),
            self.sleep.as_secs_f64()
        );
        let mut request = Request::get(uri).header(header::ACCEPT, "application/json");
        if let Some(token) = &self.read_token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| ClientError::Transport(e.into()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| ClientError::Transport(e.into()))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.into()))?;
            Ok::<_, ClientError>((status, retry_after, body.to_bytes()))
        };
        let (status, retry_after, body) =
            tokio::time::timeout(self.sleep + Duration::from_secs(15), exchange)
                .await
                .map_err(|_| {
                    ClientError::Transport(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "long poll timed out",
                    )))
                })??;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&body).into_owned();
            return Err(ClientError::Status {
                status,
                body,
                retry_after,
            });
        }
        let answer: Answer<'_> =
            serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer(e.into()))?;
        if !answer.ok {
            return Err(ClientError::BadAnswer("`ok` is false".into()));
        }
        let returned = answer.updates.len() as u64;
        // The reference server does not send `missed`: its `ts` step shows the gap.
        let gap = if answer.reset || answer.ts < ts {
            0
        } else {
            (answer.ts - ts).saturating_sub(returned)
        };
        let updates = answer
            .updates
            .iter()
            .map(|raw| body.slice_ref(raw.get().as_bytes()))
            .collect();
        Ok(Polled {
            ts: answer.ts,
            missed: answer.missed.max(gap),
            reset: answer.reset,
            updates,
        })
    }
}
