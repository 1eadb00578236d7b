//! Differential fuzz targets for telehook (see `fuzz/README.md`).
//!
//! Each target takes one input and returns `Err` with a description when telehook and the
//! reference disagree (a panic inside telehook is a failure too). The AFL++ binary
//! (`src/bin/afl.rs`) and the stable quick runner (`src/bin/quick.rs`) call the same functions.

pub mod model;
pub mod mutate;
pub mod platform;
pub mod request;
pub mod typed;
pub mod validator;

/// `Ok`, or what disagreed.
pub type Outcome = Result<(), String>;

/// A target: one input in, agreement or a disagreement out.
pub type Target = fn(&[u8]) -> Outcome;

/// Every target by name, in the order the runner runs them.
pub const TARGETS: &[(&str, Target)] = &[
    ("validator", validator::run),
    ("typed", typed::run),
    ("request", request::run),
    ("lambda", platform::lambda),
    ("vercel", platform::vercel),
];

/// The target of that name.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Returns `Err(format!(...))` from the enclosing function unless the condition holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

thread_local! {
    /// One current-thread runtime per thread, reused across inputs.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// Runs `fut` to completion on this thread's runtime.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(fut))
}

/// `bytes` as an escaped string (for reports: printable ASCII as is, the rest `\xNN`).
pub fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}
