//! `request`: the webhook as a `tower::Service` (the path axum, hyper and lambda_http mount)
//! against a model of the adapter contract (`docs/adapter-contract.md`): method, source
//! allowlist with trusted proxies (`X-Forwarded-For` or `Forwarded`), secret token,
//! `Content-Length`, body size, then the body itself (the reference in [`crate::model`]).
//!
//! The input is a few header-choosing bytes, then the body (layout in [`Input::parse`]).
//! Forwarding headers are built from entry kinds whose meaning the model knows, written in the
//! spellings proxies use (with a port, IPv4-mapped IPv6, quoted, bracketed, `for=` pairs), so
//! the model never parses an address itself.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use telehook_core::{
    Context, ForwardedHeader, HandlerError, PeerAddr, SourceAllowlist, Update, Webhook,
};
use tower_service::Service;

use crate::model::{self, Verdict};
use crate::{Outcome, block_on, check};

/// The secret every test webhook is configured with.
pub const SECRET: &str = "s3cr3t_T0ken-for-tests";
/// The body limit of the test webhooks (small, so the fuzzer reaches it).
pub const MAX_BODY: usize = 4096;

/// An address inside Telegram's ranges, one a trusted proxy's range, one outside both.
pub const ALLOWED: &str = "149.154.167.220";
const PROXY: &str = "10.0.0.7";
const OTHER: &str = "198.51.100.7";

/// Who an entry of a forwarding header names, as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// An address Telegram sends from.
    Allowed,
    /// A trusted proxy.
    Proxy,
    /// Anyone else.
    Other,
    /// Not an address (`unknown`, an obfuscated name, empty): the client cannot be told.
    Unknown,
}

/// One forwarding entry: who it names and how it is written in `X-Forwarded-For`.
const ENTRIES: &[(Who, &str)] = &[
    (Who::Allowed, "149.154.167.220"),
    (Who::Allowed, "149.154.167.220:443"),
    (Who::Allowed, "::ffff:149.154.167.220"),
    (Who::Allowed, "\"149.154.167.220\""),
    (Who::Proxy, "10.0.0.7"),
    (Who::Proxy, "10.1.2.3:8080"),
    (Who::Proxy, "[::ffff:10.0.0.9]:80"),
    (Who::Other, "198.51.100.7"),
    (Who::Other, "[2001:db8::1]:4711"),
    (Who::Other, "2001:db8::2"),
    (Who::Unknown, "unknown"),
    (Who::Unknown, "_hidden"),
    (Who::Unknown, ""),
    (Who::Unknown, "149.154.167.256"),
];

/// The decoded input.
#[derive(Debug)]
struct Input<'a> {
    method: &'static str,
    secret: Option<&'static str>,
    allowlist: usize,
    peer: Option<Who>,
    /// Header lines, each a list of entries.
    lines: Vec<Vec<(Who, &'static str, u8)>>,
    content_length: u8,
    content_type: Option<&'static str>,
    body: &'a [u8],
}

impl<'a> Input<'a> {
    /// Layout: `method secret allowlist peer n entry*n content_length content_type body…`;
    /// missing bytes read as 0 (a valid POST with the right secret).
    fn parse(data: &'a [u8]) -> Self {
        let mut at = 0;
        let mut next = || {
            let b = data.get(at).copied().unwrap_or(0);
            at += 1;
            b
        };
        let method = match next() % 8 {
            0..=4 => "POST",
            5 => "GET",
            6 => "PUT",
            _ => "post",
        };
        let secret = match next() % 5 {
            0 | 4 => Some(SECRET),
            1 => None,
            2 => Some("s3cr3t_T0ken-for-tesTs"),
            _ => Some("s3cr3t"),
        };
        let allowlist = usize::from(next() % 3);
        let peer = match next() % 4 {
            0 => Some(Who::Allowed),
            1 => Some(Who::Proxy),
            2 => Some(Who::Other),
            _ => None,
        };
        let n = next() % 6;
        let mut lines: Vec<Vec<(Who, &'static str, u8)>> = Vec::new();
        for _ in 0..n {
            let spec = next();
            let (who, text) = ENTRIES[usize::from(spec & 0x0f) % ENTRIES.len()];
            if spec & 0x80 != 0 || lines.is_empty() {
                lines.push(Vec::new());
            }
            if let Some(line) = lines.last_mut() {
                line.push((who, text, spec));
            }
        }
        let content_length = next() % 4;
        let content_type = match next() % 3 {
            0 => None,
            1 => Some("application/json"),
            _ => Some("text/plain"),
        };
        let body = data.get(at.min(data.len())..).unwrap_or_default();
        Self {
            method,
            secret,
            allowlist,
            peer,
            lines,
            content_length,
            content_type,
            body,
        }
    }

    /// The header lines as sent, for `header` (`X-Forwarded-For` or `Forwarded`).
    fn header_lines(&self, header: ForwardedHeader) -> Vec<String> {
        self.lines
            .iter()
            .map(|line| {
                let entries: Vec<String> = line
                    .iter()
                    .map(|&(_, text, spec)| {
                        let pad = if spec & 0x20 != 0 { " " } else { "" };
                        match header {
                            ForwardedHeader::XForwardedFor => format!("{pad}{text}{pad}"),
                            _ => {
                                let bare = text.trim_matches('"');
                                let value = if bare.contains(':') || bare.is_empty() {
                                    format!("\"{bare}\"")
                                } else {
                                    bare.to_owned()
                                };
                                let name = if spec & 0x10 != 0 { "For" } else { "for" };
                                if spec & 0x40 != 0 {
                                    format!("{pad}proto=https;{name}={value}{pad}")
                                } else {
                                    format!("{pad}{name}={value};by=_proxy{pad}")
                                }
                            }
                        }
                    })
                    .collect();
                entries.join(",")
            })
            .collect()
    }

    /// Whether the model admits the source: an untrusted peer is the client; a trusted one
    /// defers to the header, walked from the right to the first entry that is not a proxy.
    fn source_admitted(&self) -> bool {
        let Some(peer) = self.peer else {
            return false;
        };
        let mut client = peer;
        if client == Who::Proxy {
            for line in self.lines.iter().rev() {
                for &(who, _, _) in line.iter().rev() {
                    client = who;
                    if who != Who::Proxy {
                        break;
                    }
                }
                if client != Who::Proxy {
                    break;
                }
            }
        }
        client == Who::Allowed
    }
}

/// What a test handler last saw: `update_id` and kind.
pub type Seen = Arc<Mutex<Option<(u64, Option<String>)>>>;

/// A webhook with an allowlist or without, and what its handler last saw.
struct Setup {
    webhooks: [Webhook; 3],
    seen: Seen,
}

thread_local! {
    static SETUP: Setup = {
        let seen: Seen = Arc::default();
        let build = |allowlist: Option<SourceAllowlist>| {
            let seen = Arc::clone(&seen);
            let mut builder = Webhook::builder()
                .secret_token(SECRET)
                .max_body_bytes(MAX_BODY)
                .redelivery_guard(1, Duration::ZERO);
            if let Some(list) = allowlist {
                builder = builder.source_allowlist(list);
            }
            builder
                .build(move |update: Update, _ctx: Context| {
                    let seen = Arc::clone(&seen);
                    async move {
                        *seen.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((update.update_id(), update.kind().map(str::to_owned)));
                        Ok::<_, HandlerError>(())
                    }
                })
                .expect("a valid configuration")
        };
        let trusted = |header| {
            SourceAllowlist::telegram()
                .trusted_proxies(["10.0.0.0/8"], header)
                .expect("valid ranges")
        };
        Setup {
            webhooks: [
                build(None),
                build(Some(trusted(ForwardedHeader::XForwardedFor))),
                build(Some(trusted(ForwardedHeader::Forwarded))),
            ],
            seen,
        }
    };
}

/// The status the contract asks for, and whether the handler runs.
pub fn expected_status(
    method_ok: bool,
    source_ok: bool,
    secret_ok: bool,
    length: Result<Option<u64>, ()>,
    body: &[u8],
    verdict: &Verdict,
) -> u16 {
    if !method_ok {
        405
    } else if !source_ok {
        403
    } else if !secret_ok {
        401
    } else if length.is_err() {
        400
    } else if length.is_ok_and(|l| l.is_some_and(|l| l > MAX_BODY as u64)) || body.len() > MAX_BODY
    {
        413
    } else if verdict.update().is_none() {
        400
    } else {
        200
    }
}

/// Runs the target on one input.
pub fn run(data: &[u8]) -> Outcome {
    let input = Input::parse(data);
    let verdict = model::reference(input.body);
    let header = match input.allowlist {
        2 => ForwardedHeader::Forwarded,
        _ => ForwardedHeader::XForwardedFor,
    };
    let mut request = http::Request::builder()
        .method(input.method)
        .uri("/telegram");
    if let Some(secret) = input.secret {
        request = request.header(telehook_core::SECRET_TOKEN_HEADER, secret);
    }
    let length = match input.content_length {
        0 => Ok(None),
        1 => Ok(Some(input.body.len() as u64)),
        2 => Err(()),
        _ => Ok(Some(99_999_999)),
    };
    match input.content_length {
        0 => {}
        1 => request = request.header("content-length", input.body.len()),
        2 => request = request.header("content-length", "12a"),
        _ => request = request.header("content-length", "99999999"),
    }
    if let Some(ct) = input.content_type {
        request = request.header("content-type", ct);
    }
    for line in input.header_lines(header) {
        request = request.header(header.name(), line);
    }
    // A decoy: the other forwarding header, which the allowlist must ignore.
    let decoy = match header {
        ForwardedHeader::XForwardedFor => "forwarded",
        _ => "x-forwarded-for",
    };
    request = request.header(
        decoy,
        if decoy == "forwarded" {
            "for=149.154.167.220"
        } else {
            ALLOWED
        },
    );
    let mut request = request
        .body(Full::new(Bytes::copy_from_slice(input.body)))
        .map_err(|e| format!("building the request: {e}"))?;
    if let Some(peer) = input.peer {
        let ip: IpAddr = match peer {
            Who::Allowed => ALLOWED,
            Who::Proxy => PROXY,
            _ => OTHER,
        }
        .parse()
        .map_err(|e| format!("{e}"))?;
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip, 40000)));
    }
    let source_ok = input.allowlist == 0 || input.source_admitted();
    let want = expected_status(
        input.method == "POST",
        source_ok,
        input.secret == Some(SECRET),
        length,
        input.body,
        &verdict,
    );
    SETUP.with(|setup| {
        let mut webhook = setup.webhooks[input.allowlist].clone();
        let response = block_on(async move {
            std::future::poll_fn(|cx| {
                Service::<http::Request<Full<Bytes>>>::poll_ready(&mut webhook, cx)
            })
            .await?;
            webhook.call(request).await
        })
        .map_err(|e: std::convert::Infallible| format!("{e}"))?;
        let seen = setup.seen.lock().unwrap_or_else(|p| p.into_inner()).take();
        let status = response.status().as_u16();
        check!(
            status == want,
            "status {status} (body {:?}), model {want}; input {input:?} lines {:?}",
            String::from_utf8_lossy(&body_bytes(response.into_body())),
            input.header_lines(header)
        );
        if status == 405 {
            check!(
                response.headers().get("allow").is_some_and(|v| v == "POST"),
                "405 without Allow: POST"
            );
        }
        let expected_seen = verdict
            .update()
            .filter(|_| want == 200)
            .map(|e| (e.update_id, e.kind.clone()));
        check!(
            seen == expected_seen,
            "handler saw {seen:?}, model {expected_seen:?}"
        );
        Ok(())
    })
}

/// The bytes of a `Full` body (ready at once).
fn body_bytes(body: Full<Bytes>) -> Bytes {
    use http_body_util::BodyExt;
    let mut fut = std::pin::pin!(body.collect());
    match fut
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
    {
        Poll::Ready(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    }
}
