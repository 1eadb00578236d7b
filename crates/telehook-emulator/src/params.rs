//! A call's parameters, as Telegram accepts them: a query string, a JSON body, a form-encoded
//! body, or `multipart/form-data` (parsed with `multer`), whose file parts are uploads.

use axum::body::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::answer::Fail;

/// A file part of a `multipart/form-data` call.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) file_name: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) bytes: Bytes,
}

/// What a call brought: its parameters (form values are strings) and its uploaded files.
#[derive(Debug, Clone, Default)]
pub(crate) struct Input {
    pub(crate) params: Map<String, Value>,
    pub(crate) files: Vec<(String, Part)>,
}

impl Input {
    pub(crate) fn file(&self, name: &str) -> Option<&Part> {
        self.files
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, part)| part)
    }

    /// The file parameter `field`: a part of that name, or the part its `attach://name` value
    /// names (how aiogram and grammY send every file, `certificate` included).
    pub(crate) fn file_param(&self, field: &str) -> Option<&Part> {
        match self.params.get(field) {
            Some(Value::String(value)) => value
                .strip_prefix("attach://")
                .and_then(|name| self.file(name)),
            _ => self.file(field),
        }
    }

    /// What tests read about each uploaded file.
    pub(crate) fn uploads(&self) -> Vec<Upload> {
        self.files
            .iter()
            .map(|(field, part)| Upload {
                field: field.clone(),
                file_name: part.file_name.clone(),
                content_type: part.content_type.clone(),
                size: part.bytes.len() as u64,
                sha256: hex(&Sha256::digest(&part.bytes)),
            })
            .collect()
    }
}

/// A file the bot uploaded in a `multipart/form-data` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Upload {
    /// The form field that carried it (e.g. `photo`, or the name an `attach://` refers to).
    pub field: String,
    /// The file name the bot gave.
    pub file_name: Option<String>,
    /// The part's `Content-Type`.
    pub content_type: Option<String>,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, lower-case hex.
    pub sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Parameters from the query string and the body, as Telegram accepts them.
pub(crate) async fn parse(
    query: Option<&str>,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Input, Fail> {
    let mut input = Input::default();
    if let Some(query) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| Fail::bad_request("can't parse query string"))?;
        input
            .params
            .extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(input);
    }
    let content_type = content_type.unwrap_or("");
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|_| Fail::bad_request("can't parse form data"))?;
        input
            .params
            .extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
    } else if lower.starts_with("multipart/form-data") {
        multipart(content_type, body, &mut input).await?;
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(object)) => input.params.extend(object),
            Ok(_) | Err(_) => return Err(Fail::bad_request("can't parse JSON object")),
        }
    }
    Ok(input)
}

async fn multipart(content_type: &str, body: Bytes, input: &mut Input) -> Result<(), Fail> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| Fail::bad_request("can't find multipart boundary"))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::debug!(%error, "multipart body refused");
                return Err(Fail::bad_request("can't parse multipart/form-data body"));
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(ToString::to_string);
        let bytes = field
            .bytes()
            .await
            .map_err(|_| Fail::bad_request("can't parse multipart/form-data body"))?;
        // A part with a file name is a file; so is one that is not text.
        let text = match (&file_name, std::str::from_utf8(&bytes)) {
            (None, Ok(text)) => Some(text.to_owned()),
            _ => None,
        };
        match text {
            Some(text) => {
                input.params.insert(name, Value::String(text));
            }
            None => input.files.push((
                name,
                Part {
                    file_name,
                    content_type,
                    bytes,
                },
            )),
        }
    }
}
