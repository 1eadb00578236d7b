#![doc = include_str!("../README.md")]

mod capture;
mod cases;

use std::future::Future;
use std::path::PathBuf;

use bytes::Bytes;
pub use telehook_core::Webhook;

pub use capture::{LogEvent, install as install_log_capture};

/// The path the harness mounts the webhook at; every case sends its requests there.
pub const PATH: &str = "/webhook";

/// The secret token the cases configure and send.
pub const SECRET: &str = "s3cr3t_T0ken-for-tests";

/// Mounts a webhook in one framework.
pub trait Harness {
    /// What sends requests to the mounted webhook.
    type Client: Client;

    /// Mounts `webhook` at [`PATH`] (next to nothing else, or next to other routes: the suite
    /// only sends to [`PATH`]).
    fn serve(&self, webhook: Webhook) -> impl Future<Output = Self::Client>;
}

/// Sends requests through a framework to the mounted webhook.
pub trait Client {
    /// Sends one request and returns the whole response (status, every header, body). Must
    /// allow several calls at once on one client (the suite joins them on one task).
    fn send(&self, request: http::Request<Bytes>) -> impl Future<Output = http::Response<Bytes>>;
}

/// The fixtures folder shipped in this crate (`fixtures/`), or `TELEHOOK_FIXTURES` when set.
pub fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TELEHOOK_FIXTURES") {
        return PathBuf::from(dir);
    }
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures"
    ))
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
        let result = case(harness).await;
        match result {
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
