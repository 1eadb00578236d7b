//! The stable-Rust runner: replays each target's corpus and regressions, then runs a bounded,
//! seeded mutation loop through the same target functions the AFL++ binary calls.
//!
//! ```text
//! quick [--seconds S] [--execs N] [--seed X] [target…]     replay + mutate (default: all, 5 s each)
//! quick --replay <target> <file…>                          run the given inputs only
//! ```
//! Exit status 1 if any input disagreed; each such input is written to `fuzz/artifacts/` (or
//! `$FUZZ_ARTIFACTS`) and
//! printed escaped. Inputs under `fuzz/known/<target>/` are disagreements reported to their
//! owner and not fixed yet: they are replayed and listed (still disagrees / agrees now), and
//! never fail the run, nor do mutants failing the same way (same message but for digits); once
//! one agrees, move it to `fuzz/regressions/<target>/`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use telehook_fuzz::mutate::{Rng, mutate, parse_dict};
use telehook_fuzz::{TARGETS, Target, escape, target};

const FUZZ_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// Disagreements reported per target before it stops.
const MAX_REPORTS: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--replay") {
        std::process::exit(replay(&args[1..]));
    }
    let mut seconds = 5.0_f64;
    let mut execs = u64::MAX;
    let mut seed = 0x7e1e_400c_u64;
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match arg.as_str() {
            "--seconds" => seconds = value().parse().unwrap_or(seconds),
            "--execs" => execs = value().parse().unwrap_or(execs),
            "--seed" => seed = value().parse().unwrap_or(seed),
            name => names.push(name.to_owned()),
        }
    }
    if names.is_empty() {
        names = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    }
    let dict = parse_dict(
        &std::fs::read_to_string(Path::new(FUZZ_DIR).join("json.dict")).unwrap_or_default(),
    );
    let mut failed = false;
    println!(
        "{:<10} {:>7} {:>11} {:>10} {:>8}  failures",
        "target", "seeds", "execs", "execs/s", "seconds"
    );
    for name in &names {
        let Some(run) = target(name) else {
            eprintln!("unknown target {name}");
            std::process::exit(2);
        };
        let classes = known(name, run);
        let report = fuzz(
            name,
            run,
            &classes,
            &dict,
            Duration::from_secs_f64(seconds),
            execs,
            seed,
        );
        println!(
            "{:<10} {:>7} {:>11} {:>10.0} {:>8.1}  {}{}",
            name,
            report.seeds,
            report.execs,
            report.execs as f64 / report.elapsed.as_secs_f64().max(1e-9),
            report.elapsed.as_secs_f64(),
            report.failures,
            if report.known > 0 {
                format!(
                    " (+{} of a known, open kind: fuzz/known/{name}/)",
                    report.known
                )
            } else {
                String::new()
            }
        );
        failed |= report.failures > 0;
    }
    std::process::exit(i32::from(failed));
}

struct Report {
    seeds: usize,
    execs: u64,
    elapsed: Duration,
    failures: usize,
    known: usize,
}

/// A disagreement's kind: its message without digits, cut short, so that inputs failing the
/// same way (another id, another length) count as one kind.
fn class(why: &str) -> String {
    why.chars()
        .filter(|c| !c.is_ascii_digit())
        .take(72)
        .collect()
}

/// Every file of `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/`.
fn seeds(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(Path::new(FUZZ_DIR).join(dir).join(name)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

/// Runs one input; `Some(why)` on a disagreement or a panic.
fn one(run: Target, data: &[u8]) -> Option<String> {
    match catch_unwind(AssertUnwindSafe(|| run(data))) {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(why),
        Err(panic) => Some(format!(
            "panic: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        )),
    }
}

fn record(name: &str, data: &[u8], why: &str) {
    let dir = std::env::var_os("FUZZ_ARTIFACTS")
        .map_or_else(|| Path::new(FUZZ_DIR).join("artifacts"), PathBuf::from);
    let _ = std::fs::create_dir_all(&dir);
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let path = dir.join(format!("{name}-{hash:016x}"));
    let _ = std::fs::write(&path, data);
    eprintln!(
        "DISAGREEMENT {name}: {why}\n  input ({} bytes, saved as {}): \"{}\"",
        data.len(),
        path.display(),
        escape(data)
    );
}

fn fuzz(
    name: &str,
    run: Target,
    known: &[String],
    dict: &[Vec<u8>],
    time: Duration,
    max_execs: u64,
    seed: u64,
) -> Report {
    // Panics are reported as disagreements; keep the default hook's output short.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let start = Instant::now();
    let corpus = seeds(name);
    let mut report = Report {
        seeds: corpus.len(),
        execs: 0,
        elapsed: Duration::ZERO,
        failures: 0,
        known: 0,
    };
    let mut seen_kinds: Vec<String> = Vec::new();
    let mut fail = |data: &[u8], why: String, report: &mut Report| {
        // Failing like a known, still open input: counted apart, not a failure of the run.
        if known.contains(&class(&why)) {
            report.known += 1;
            return;
        }
        // One report per kind of message (its first words), so a flood stays readable.
        let kind: String = why.chars().take(48).collect();
        report.failures += 1;
        if !seen_kinds.contains(&kind) && seen_kinds.len() < MAX_REPORTS {
            seen_kinds.push(kind);
            record(name, data, &why);
        }
    };
    for (_, data) in &corpus {
        report.execs += 1;
        if let Some(why) = one(run, data) {
            fail(data, why, &mut report);
        }
    }
    let inputs: Vec<&[u8]> = if corpus.is_empty() {
        vec![b"{}"]
    } else {
        corpus.iter().map(|(_, d)| d.as_slice()).collect()
    };
    let mut rng = Rng::new(seed ^ name.bytes().fold(0, |h, b| h * 31 + u64::from(b)));
    while start.elapsed() < time && report.execs < max_execs && report.failures < 1000 {
        for _ in 0..64 {
            let base = inputs[rng.below(inputs.len())];
            let other = inputs[rng.below(inputs.len())];
            let data = mutate(base, other, dict, &mut rng);
            report.execs += 1;
            if let Some(why) = one(run, &data) {
                fail(&data, why, &mut report);
            }
        }
    }
    let _ = std::panic::take_hook();
    report.elapsed = start.elapsed();
    report
}

/// Replays `fuzz/known/<name>/`, says which still disagree, and returns their kinds.
fn known(name: &str, run: Target) -> Vec<String> {
    let mut classes = Vec::new();
    let Ok(entries) = std::fs::read_dir(Path::new(FUZZ_DIR).join("known").join(name)) else {
        return classes;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let Ok(data) = std::fs::read(&path) else {
            continue;
        };
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        match one(run, &data) {
            Some(why) => {
                classes.push(class(&why));
                let why: String = why.chars().take(160).collect();
                println!("known     {name}/{file}: still disagrees: {why}");
            }
            None => {
                println!("known     {name}/{file}: AGREES NOW, move it to fuzz/regressions/{name}/")
            }
        }
    }
    classes
}

fn replay(args: &[String]) -> i32 {
    let Some((name, files)) = args.split_first() else {
        eprintln!("usage: quick --replay <target> <file…>");
        return 2;
    };
    let Some(run) = target(name) else {
        eprintln!("unknown target {name}");
        return 2;
    };
    let mut status = 0;
    for file in files {
        let Ok(data) = std::fs::read(file) else {
            eprintln!("cannot read {file}");
            status = 2;
            continue;
        };
        match one(run, &data) {
            None => println!("ok        {file}"),
            Some(why) => {
                println!("DISAGREE  {file}: {why}\n  input: \"{}\"", escape(&data));
                status = 1;
            }
        }
    }
    status
}
