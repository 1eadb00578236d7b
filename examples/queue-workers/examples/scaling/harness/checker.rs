//! The workers' run logs, read back, and the checker: acknowledged updates that never ran, runs
//! out of their chat's order, repeated runs, and how long the updates a kill held up waited.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::Acked;

/// One handler run, as a worker logged it.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// The update's `update_id`.
    pub update_id: u64,
    /// The chat id.
    pub chat: i64,
    /// The chat's sequence number (`message_id`).
    pub seq: u64,
    /// When it ran (ns since the epoch).
    pub at: u128,
}

/// Every run in the `runs-*.log` files of `dir` (a line cut short by a kill is skipped).
pub fn read_runs(dir: &Path) -> Vec<Run> {
    let mut runs = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return runs;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("runs-") && name.ends_with(".log")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 4 {
                continue;
            }
            if let (Ok(update_id), Ok(chat), Ok(seq), Ok(at)) =
                (f[0].parse(), f[1].parse(), f[2].parse(), f[3].parse())
            {
                runs.push(Run {
                    update_id,
                    chat,
                    seq,
                    at,
                });
            }
        }
    }
    runs.sort_by_key(|r| r.at);
    runs
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Check {
    /// Updates acknowledged to the load generator.
    pub acked: usize,
    /// Handler runs in all.
    pub runs: usize,
    /// Acknowledged updates that never ran.
    pub lost: Vec<u64>,
    /// Runs out of their chat's order: a chat's update running before an earlier one of the
    /// chat ran, or an earlier one running again after a later one ran.
    pub order_violations: Vec<String>,
    /// Runs of an update that had run before.
    pub duplicates: usize,
}

/// Checks the runs against what was acknowledged.
pub fn check(acked: &[Acked], runs: &[Run]) -> Check {
    let ran: HashSet<u64> = runs.iter().map(|r| r.update_id).collect();
    let mut lost: Vec<u64> = acked
        .iter()
        .map(|a| a.update_id)
        .filter(|id| !ran.contains(id))
        .collect();
    lost.sort_unstable();
    let mut seen: HashMap<i64, (u64, u64, HashSet<u64>)> = HashMap::new(); // contiguous, max, set
    let mut order_violations = Vec::new();
    let mut duplicates = 0;
    for run in runs {
        let (contiguous, max, set) = seen.entry(run.chat).or_default();
        if !set.insert(run.seq) {
            duplicates += 1;
            if run.seq < *max {
                order_violations.push(format!(
                    "chat {}: update {} (#{}) ran again after #{max}",
                    run.chat, run.update_id, run.seq
                ));
            }
            continue;
        }
        if run.seq != *contiguous + 1 {
            order_violations.push(format!(
                "chat {}: #{} ran before #{}",
                run.chat,
                run.seq,
                *contiguous + 1
            ));
        }
        *max = (*max).max(run.seq);
        while set.contains(&(*contiguous + 1)) {
            *contiguous += 1;
        }
    }
    Check {
        acked: acked.len(),
        runs: runs.len(),
        lost,
        order_violations,
        duplicates,
    }
}

/// Waits (up to `limit`) until every acknowledged update ran; returns the runs.
pub async fn drained(dir: &Path, acked: &[Acked], limit: Duration) -> Vec<Run> {
    let want: HashSet<u64> = acked.iter().map(|a| a.update_id).collect();
    let deadline = Instant::now() + limit;
    loop {
        let runs = read_runs(dir);
        let ran: HashSet<u64> = runs.iter().map(|r| r.update_id).collect();
        if want.is_subset(&ran) || Instant::now() >= deadline {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// For a kill at `kill` (ns): how long the updates it held up waited after it — the
/// acknowledged-but-not-yet-run updates (their first run after the kill), and the updates
/// being posted (their acknowledgement after the kill). The longest of each, in ms.
pub fn resume_after(kill: u128, acked: &[Acked], first_run: &HashMap<u64, u128>) -> (f64, f64) {
    let mut run_wait: u128 = 0;
    let mut ack_wait: u128 = 0;
    for a in acked {
        if a.acked_at <= kill {
            if let Some(&at) = first_run.get(&a.update_id)
                && at > kill
            {
                run_wait = run_wait.max(at - kill);
            }
        } else if a.first_sent <= kill {
            ack_wait = ack_wait.max(a.acked_at - kill);
        }
    }
    (run_wait as f64 / 1e6, ack_wait as f64 / 1e6)
}

/// For a kill at `kill` (ns): how long after it the first handler run (of any update) and the
/// first acknowledgement (of any update) came, in ms; `None` if none came.
pub fn first_after(kill: u128, acked: &[Acked], runs: &[Run]) -> (Option<f64>, Option<f64>) {
    let run = runs.iter().map(|r| r.at).filter(|&at| at > kill).min();
    let ack = acked
        .iter()
        .map(|a| a.acked_at)
        .filter(|&at| at > kill)
        .min();
    let ms = |t: Option<u128>| t.map(|t| (t - kill) as f64 / 1e6);
    (ms(run), ms(ack))
}

/// The first run of each update.
pub fn first_runs(runs: &[Run]) -> HashMap<u64, u128> {
    let mut first = HashMap::new();
    for r in runs {
        first.entry(r.update_id).or_insert(r.at);
    }
    first
}

/// Runs per update, for the duplicate count's explanation: how many updates ran `n` times.
pub fn runs_histogram(runs: &[Run]) -> BTreeMap<usize, usize> {
    let mut per: HashMap<u64, usize> = HashMap::new();
    for r in runs {
        *per.entry(r.update_id).or_default() += 1;
    }
    let mut hist = BTreeMap::new();
    for n in per.into_values() {
        *hist.entry(n).or_default() += 1;
    }
    hist
}

/// The latest modification time (ns since the epoch) of the `runs-*.log` files in `dir`:
/// when a handler last ran, without reading the logs.
pub fn last_run_write(dir: &Path) -> u128 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("runs-") && name.ends_with(".log")
        })
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .filter_map(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .max()
        .unwrap_or(0)
}
