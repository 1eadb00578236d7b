#![doc = include_str!("../README.md")]

mod capture;
mod cases;
mod streaming;

use std::future::Future;
use std::path::PathBuf;

use bytes::Bytes;
pub use telehook_core::{Bots, Webhook};

pub use capture::{LogEvent, install as install_log_capture};
pub use streaming::StreamingBody;

/// The path the harness mounts the webhook at; every case sends its requests there.
pub const PATH: &str = "/webhook";

/// The secret token the cases configure and send.
pub const SECRET: &str = "s3cr3t_T0ken-for-tests";

/// Where [`Harness::serve_bots`] routes by path: a request to `{BOTS_PATH}/{name}` goes to
/// [`Bots::handle_by_name`] with `name`.
pub const BOTS_PATH: &str = "/bot";

/// Where [`Harness::serve_bots`] routes by the secret token header: a request to this path
/// goes to [`Bots::handle_by_secret_token`].
pub const BOTS_BY_SECRET_PATH: &str = "/bots";

/// Mounts a webhook in one framework.
pub trait Harness {
    /// What sends requests to the mounted webhook.
    type Client: Client;

    /// Mounts `webhook` at [`PATH`] (next to nothing else, or next to other routes: the suite
    /// only sends to [`PATH`]). The adapter passes the connection's peer address to the core
    /// ([`telehook_core::PeerAddr`]) as it does in production; where there is none (an
    /// in-memory client, a platform without one) the source-allowlist cases report skipped.
    fn serve(&self, webhook: Webhook) -> impl Future<Output = Self::Client>;

    /// Mounts several bots: `{BOTS_PATH}/{name}` routed by [`Bots::handle_by_name`] and
    /// [`BOTS_BY_SECRET_PATH`] routed by [`Bots::handle_by_secret_token`] (both for `POST` at
    /// least). `None` (the default) means the harness cannot: the multi-bot cases are reported
    /// as skipped.
    fn serve_bots(&self, bots: Bots) -> impl Future<Output = Option<Self::Client>> {
        drop(bots);
        std::future::ready(None)
    }
}

/// Sends requests through a framework to the mounted webhook.
pub trait Client {
    /// Sends one request and returns the whole response (status, every header, body). Must
    /// allow several calls at once on one client (the suite joins them on one task).
    fn send(&self, request: http::Request<Bytes>) -> impl Future<Output = http::Response<Bytes>>;

    /// Sends one request whose body arrives as [`StreamingBody`] says (it may never finish)
    /// and returns the response as soon as it comes, without waiting for the body to be sent.
    /// `None` means the transport cannot stream a request body (a platform that hands the
    /// dispatcher a body already in memory, such as AWS Lambda): the cases that need it are
    /// reported as skipped. The default is `None`; every HTTP server adapter implements it.
    fn send_streaming(
        &self,
        request: http::Request<StreamingBody>,
    ) -> impl Future<Output = Option<http::Response<Bytes>>> {
        drop(request);
        std::future::ready(None)
    }
}

/// The fixtures folder shipped in this crate (`fixtures/`), or `TELEHOOK_FIXTURES` when set.
pub fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TELEHOOK_FIXTURES") {
        return PathBuf::from(dir);
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
}

/// Reads one fixture file, panicking with the path if it is missing.
pub fn fixture(relative: &str) -> Bytes {
    let path = fixtures_dir().join(relative);
    match std::fs::read(&path) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => panic!(
            "cannot read fixture {}: {e} (set TELEHOOK_FIXTURES to the fixtures folder)",
            path.display()
        ),
    }
}

/// The name of every case, in the order [`run`] plays them.
pub fn case_names() -> Vec<&'static str> {
    cases::all::<cases::NoHarness>()
        .iter()
        .map(|(name, _)| *name)
        .collect()
}

/// Plays every case of the contract against the harness and panics listing the failures.
pub async fn run<H: Harness>(harness: &H) {
    capture::install();
    let mut failures = Vec::new();
    let cases = cases::all::<H>();
    let total = cases.len();
    for (name, case) in cases {
        cases::take_skipped();
        let result = case(harness).await;
        match result {
            Ok(()) if let Some(reason) = cases::take_skipped() => {
                eprintln!("conformance: {name} ... skipped ({reason})");
            }
            Ok(()) => eprintln!("conformance: {name} ... ok"),
            Err(message) => {
                eprintln!("conformance: {name} ... FAILED: {message}");
                failures.push(format!("{name}: {message}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} conformance cases failed:\n  {}",
        failures.len(),
        total,
        failures.join("\n  ")
    );
}
