//! The validator's cost: `Update::from_bytes` (parse, validate, pick out `update_id`, the kind
//! and the sequence key) on every update fixture, compact as Telegram sends it.
//!
//! - `cargo bench -p telehook-core --bench validator`: CPU time per fixture (criterion).
//! - `cargo bench -p telehook-core --bench validator -- --instructions`: instructions counted by
//!   valgrind's callgrind (installed separately), per `Update::from_bytes` on each fixture and
//!   per whole dispatch (`Webhook::handle_bytes` with the handler of `benches/dispatch.rs`, a
//!   fresh `update_id` each time), against the same handler called directly. The binary runs
//!   itself under callgrind once per case and counts only the measured loop
//!   (`--toggle-collect`), so start-up and warm-up are left out. Counts do not depend on the
//!   machine's load.

#![allow(missing_docs)]
#![allow(
    clippy::print_stdout,
    reason = "it prints its table of instruction counts"
)]

use std::hint::black_box;
use std::process::Command;

use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use telehook_core::{Context, HandlerError, RequestHead, Update, Webhook};

const SECRET: &str = "s3cr3t_T0ken-for-tests";
/// Set in the child that runs under callgrind: which case to run.
const CASE_VAR: &str = "TELEHOOK_VALIDATOR_CASE";
/// Iterations counted per case.
const ROUNDS: u64 = 2_000;

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../telehook-conformance/fixtures/updates")
}

/// Every fixture that is an update, compact, smallest first: `(name, body)`.
fn fixtures() -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixture_dir()).expect("fixtures/updates") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("fixture");
        let body = Bytes::from(compact(&text));
        if Update::from_bytes(body.clone()).is_ok() {
            let name = path
                .file_stem()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            out.push((name, body));
        }
    }
    out.sort_by_key(|(name, body)| (body.len(), name.clone()));
    out
}

/// The fixture as Telegram sends it: compact JSON, no indentation.
fn compact(pretty: &str) -> String {
    let mut out = String::with_capacity(pretty.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in pretty.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !c.is_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// The handler of `benches/dispatch.rs`: reads the chat and builds a `sendMessage` reply.
async fn handler(update: Update, ctx: Context) -> Result<(), HandlerError> {
    let chat_id = black_box(update.chat_id()).unwrap_or_default();
    let params = serde_json::json!({ "chat_id": chat_id, "text": "ok" });
    if ctx.can_webhook_reply() {
        ctx.webhook_reply("sendMessage", params)?;
    } else {
        black_box(params);
    }
    Ok(())
}

/// `message_text_private` with `update_id`s `first..first + n`.
fn dispatch_bodies(first: u64, n: u64) -> Vec<Bytes> {
    let path = fixture_dir().join("message_text_private.json");
    let template = compact(&std::fs::read_to_string(path).expect("fixture"));
    (first..first + n)
        .map(|id| Bytes::from(template.replacen("100000001", &id.to_string(), 1)))
        .collect()
}

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    for (name, body) in fixtures() {
        group.bench_function(format!("{name}_{}B", body.len()), |b| {
            b.iter_batched(
                || body.clone(),
                |body| black_box(Update::from_bytes(body).expect("update")),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

// --- instruction counts ---------------------------------------------------------------------

#[inline(never)]
fn counted_validate(body: &Bytes) {
    for _ in 0..ROUNDS {
        black_box(Update::from_bytes(black_box(body.clone())).expect("update"));
    }
}

#[inline(never)]
fn counted_dispatch(runtime: &tokio::runtime::Runtime, webhook: &Webhook, bodies: Vec<Bytes>) {
    runtime.block_on(async {
        for body in bodies {
            let head = RequestHead::new("POST", |name| {
                (name == "x-telegram-bot-api-secret-token").then_some(SECRET.as_bytes())
            });
            let response = webhook.handle_bytes(head, body).await;
            assert_eq!(response.status(), 200);
            black_box(response);
        }
    });
}

#[inline(never)]
fn counted_direct(runtime: &tokio::runtime::Runtime, updates: Vec<Update>) {
    runtime.block_on(async {
        for update in updates {
            let ctx = Context::detached(update.update_id());
            handler(update, ctx).await.expect("handler");
        }
    });
}

/// Runs one case (in the child under callgrind).
fn run_case(case: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match case {
        "dispatch" => {
            let webhook = Webhook::builder()
                .secret_token(SECRET)
                .build(handler)
                .expect("webhook");
            // Warm-up: the runtime, the guard and the allocator reach their steady state.
            warm_up_dispatch(&runtime, &webhook, dispatch_bodies(1, 200));
            counted_dispatch(&runtime, &webhook, dispatch_bodies(1_000, ROUNDS));
        }
        "direct" => {
            let updates = |first, n| {
                dispatch_bodies(first, n)
                    .into_iter()
                    .map(|b| Update::from_bytes(b).expect("update"))
                    .collect::<Vec<_>>()
            };
            let warm = updates(1, 200);
            runtime.block_on(async {
                for update in warm {
                    let ctx = Context::detached(update.update_id());
                    handler(update, ctx).await.expect("handler");
                }
            });
            counted_direct(&runtime, updates(1_000, ROUNDS));
        }
        name => {
            let (_, body) = fixtures()
                .into_iter()
                .find(|(n, _)| n == name)
                .expect("a fixture of that name");
            black_box(Update::from_bytes(body.clone()).expect("update"));
            counted_validate(&body);
        }
    }
}

fn warm_up_dispatch(runtime: &tokio::runtime::Runtime, webhook: &Webhook, bodies: Vec<Bytes>) {
    runtime.block_on(async {
        for body in bodies {
            let head = RequestHead::new("POST", |name| {
                (name == "x-telegram-bot-api-secret-token").then_some(SECRET.as_bytes())
            });
            black_box(webhook.handle_bytes(head, body).await);
        }
    });
}

/// Instructions per iteration of `case`, counted by callgrind in the `counted_*` function.
fn count(case: &str, function: &str) -> f64 {
    let exe = std::env::current_exe().expect("own path");
    let out = std::env::temp_dir().join(format!("telehook-validator-{}.cg", std::process::id()));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect=*{function}*"))
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .env(CASE_VAR, case)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("valgrind (apt-get install valgrind)");
    assert!(status.success(), "{case} under callgrind: {status}");
    let profile = std::fs::read_to_string(&out).expect("callgrind output");
    let _ = std::fs::remove_file(&out);
    let total: u64 = profile
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .or_else(|| profile.lines().find_map(|l| l.strip_prefix("totals: ")))
        .and_then(|n| n.trim().parse().ok())
        .expect("a summary line");
    total as f64 / ROUNDS as f64
}

fn instructions() {
    println!("| fixture (compact) | bytes | instr/validate |");
    println!("|---|---|---|");
    for (name, body) in fixtures() {
        let n = count(&name, "counted_validate");
        println!("| {name} | {} | {n:.0} |", body.len());
    }
    let dispatch = count("dispatch", "counted_dispatch");
    let direct = count("direct", "counted_direct");
    println!();
    println!("| message_text_private, compact | instr/update |");
    println!("|---|---|");
    println!("| through the dispatcher | {dispatch:.0} |");
    println!("| handler called directly | {direct:.0} |");
}

fn main() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        run_case(&case);
        return;
    }
    if std::env::args().any(|a| a == "--instructions") {
        instructions();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
