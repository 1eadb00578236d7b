//! The validator's cost: `Update::from_bytes` (parse, validate, pick out `update_id`, the kind
//! and the sequence key) on every update fixture, compact as Telegram sends it.
//!
//! - `cargo bench -p telehook-core --bench validator`: CPU time per fixture (criterion).
//! - `cargo bench -p telehook-core --bench validator -- --instructions`: instructions counted by
//!   valgrind's callgrind (installed separately), per `Update::from_bytes` on each fixture and
//!   per whole dispatch (`Webhook::handle_bytes` with the handler of `benches/dispatch.rs`, a
//!   fresh `update_id` each time), against the same handler called directly, and the same work
//!   by a handler that takes its own small struct (one parse, into it). The binary runs
//!   itself under callgrind once per case and counts only the measured loop
//!   (`--toggle-collect`), so start-up and warm-up are left out. Counts do not depend on the
//!   machine's load.
//! - `cargo bench -p telehook-core --bench validator -- --cpu`: the same cases timed by the
//!   thread's own CPU time (`/proc/thread-self/schedstat`, Linux), which leaves out the time
//!   spent waiting for a core on a loaded machine; lowest and highest of 7 runs.

#![allow(missing_docs)]
#![allow(
    clippy::print_stdout,
    reason = "it prints its table of instruction counts"
)]

use std::hint::black_box;
use std::process::Command;
use std::rc::Rc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use telehook_core::{Context, HandlerError, RequestHead, SequenceKey, Update, UpdateType, Webhook};

const SECRET: &str = "s3cr3t_T0ken-for-tests";
/// Set in the child that runs under callgrind: which case to run.
const CASE_VAR: &str = "TELEHOOK_VALIDATOR_CASE";
/// Iterations counted per case under callgrind.
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

/// What a hand-written handler takes: a few fields of the update, the rest ignored.
#[derive(serde::Deserialize)]
struct Small {
    update_id: u64,
    message: Option<SmallMessage>,
}

#[derive(serde::Deserialize)]
struct SmallMessage {
    chat: SmallChat,
    text: Option<String>,
}

#[derive(serde::Deserialize)]
struct SmallChat {
    id: i64,
}

impl UpdateType for Small {
    fn update_id(&self) -> u64 {
        self.update_id
    }

    fn sequence_key(&self) -> Option<SequenceKey> {
        self.message.as_ref().map(|m| SequenceKey::Chat(m.chat.id))
    }
}

/// [`handler`] on the handler's own type: the dispatcher parses the body once, into it.
async fn typed_handler(update: Small, ctx: Context) -> Result<(), HandlerError> {
    let chat_id = black_box(update.message.as_ref().map(|m| m.chat.id)).unwrap_or_default();
    black_box(update.message.and_then(|m| m.text));
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

// --- instruction counts and CPU time ------------------------------------------------------

/// A prepared run of a case: its inputs are built, calling it runs the measured work.
type Run = Box<dyn FnOnce()>;

/// The cases: a fixture's name (`Update::from_bytes` on it), `dispatch` (through the
/// dispatcher, a fresh `update_id` each time) or `direct` (the handler on a parsed update).
/// The returned function prepares `n` iterations.
fn case(case: &str) -> Box<dyn FnMut(u64) -> Run> {
    let runtime = Rc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    );
    let mut next_id = 1;
    let mut ids = move |n| {
        let first = next_id;
        next_id += n;
        dispatch_bodies(first, n)
    };
    match case {
        "dispatch" | "dispatch-typed" => {
            let builder = Webhook::builder().secret_token(SECRET);
            let webhook = Rc::new(if case == "dispatch" {
                builder.build(handler).expect("webhook")
            } else {
                builder.build(typed_handler).expect("webhook")
            });
            Box::new(move |n| {
                let (runtime, webhook, bodies) = (runtime.clone(), webhook.clone(), ids(n));
                Box::new(move || {
                    runtime.block_on(async {
                        for body in bodies {
                            let head = RequestHead::new("POST", |name| {
                                (name == "x-telegram-bot-api-secret-token")
                                    .then_some(SECRET.as_bytes())
                            });
                            let response = webhook.handle_bytes(head, body).await;
                            assert_eq!(response.status(), 200);
                            black_box(response);
                        }
                    });
                })
            })
        }
        "direct" => Box::new(move |n| {
            let runtime = runtime.clone();
            let updates: Vec<Update> = ids(n)
                .into_iter()
                .map(|b| Update::from_bytes(b).expect("update"))
                .collect();
            Box::new(move || {
                runtime.block_on(async {
                    for update in updates {
                        let ctx = Context::detached(update.update_id());
                        handler(update, ctx).await.expect("handler");
                    }
                });
            })
        }),
        name => {
            let (_, body) = fixtures()
                .into_iter()
                .find(|(n, _)| n == name)
                .expect("a fixture of that name");
            Box::new(move |n| {
                let body = body.clone();
                Box::new(move || {
                    for _ in 0..n {
                        black_box(Update::from_bytes(black_box(body.clone())).expect("update"));
                    }
                })
            })
        }
    }
}

/// The one function callgrind counts in (`--toggle-collect`).
#[inline(never)]
fn counted_section(run: Run) {
    run();
}

/// Runs one case in the child under callgrind: a warm-up (the runtime, the guard and the
/// allocator reach their steady state), then `ROUNDS` counted iterations.
fn run_case(name: &str) {
    let mut prepare = case(name);
    prepare(200)();
    counted_section(prepare(ROUNDS));
}

/// Instructions per iteration of `case`, counted by callgrind in [`counted_section`].
fn count(case: &str) -> f64 {
    let exe = std::env::current_exe().expect("own path");
    let out = std::env::temp_dir().join(format!("telehook-validator-{}.cg", std::process::id()));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--collect-atstart=no")
        .arg("--toggle-collect=*counted_section*")
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

/// This thread's time on a CPU, in ns (Linux): unlike wall-clock time, it leaves out the time
/// the thread waited for a core, which on a loaded machine is most of it.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat (Linux)")
}

/// CPU time per iteration of `case`: the lowest and highest of `CPU_RUNS` runs, in ns.
fn cpu_time(name: &str, n: u64) -> (f64, f64) {
    let mut prepare = case(name);
    prepare(200)();
    let mut per = Vec::new();
    for _ in 0..CPU_RUNS {
        let run = prepare(n);
        let start = thread_cpu_ns();
        run();
        per.push((thread_cpu_ns() - start) as f64 / n as f64);
    }
    let min = per.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per.iter().copied().fold(0.0, f64::max);
    (min, max)
}

/// Runs of each case in `--cpu` mode.
const CPU_RUNS: usize = 7;

fn instructions() {
    println!("| fixture (compact) | bytes | instr/validate |");
    println!("|---|---|---|");
    for (name, body) in fixtures() {
        println!("| {name} | {} | {:.0} |", body.len(), count(&name));
    }
    println!();
    println!("| message_text_private, compact | instr/update |");
    println!("|---|---|");
    println!("| through the dispatcher | {:.0} |", count("dispatch"));
    println!("| handler called directly | {:.0} |", count("direct"));
    println!(
        "| a handler taking its own small struct, through the dispatcher | {:.0} |",
        count("dispatch-typed")
    );
}

fn cpu() {
    println!("| case | CPU ns per iteration (lowest–highest of {CPU_RUNS} runs) |");
    println!("|---|---|");
    for (name, body) in fixtures() {
        let (min, max) = cpu_time(&name, 20_000);
        println!("| validate {name} ({} B) | {min:.0}–{max:.0} |", body.len());
    }
    for name in ["dispatch", "direct", "dispatch-typed"] {
        let (min, max) = cpu_time(name, 20_000);
        println!("| {name} | {min:.0}–{max:.0} |");
    }
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
    if std::env::args().any(|a| a == "--cpu") {
        cpu();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
