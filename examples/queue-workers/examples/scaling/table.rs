//! The table of figures: its rows and columns, the cells' number formats, and writing it (or
//! one row of it) between the `figures` markers of docs/scaling.md.

use std::collections::BTreeMap;
use std::path::Path;

/// Column names.
pub(crate) const EMBEDDED: &str = "embedded (SQLite)";
pub(crate) const NATS: &str = "NATS JetStream (3 nodes, R3)";

/// The table: row → column → cell.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) rows: Vec<String>,
    cells: BTreeMap<(String, &'static str), String>,
}

impl Table {
    pub(crate) fn set(&mut self, row: &str, column: &'static str, cell: String) {
        if !self.rows.iter().any(|r| r == row) {
            self.rows.push(row.into());
        }
        println!("{row} [{column}]: {cell}");
        self.cells.insert((row.into(), column), cell);
    }

    pub(crate) fn markdown(&self) -> String {
        let mut s = format!("| | {EMBEDDED} | {NATS} |\n| --- | --- | --- |\n");
        for row in &self.rows {
            let cell = |c: &'static str| {
                self.cells
                    .get(&(row.clone(), c))
                    .cloned()
                    .unwrap_or_else(|| "not run".into())
            };
            s.push_str(&format!(
                "| {row} | {} | {} |\n",
                cell(EMBEDDED),
                cell(NATS)
            ));
        }
        s
    }
}

pub(crate) fn throughput_row(partitions: u32, n: u64) -> String {
    format!(
        "enqueue → handled, {} worker{}, {} updates, 3 runs (updates/s)",
        partitions,
        if partitions == 1 { "" } else { "s" },
        thousands(n as f64)
    )
}

/// `min – max` of `values`, with thousands separators.
pub(crate) fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    format!("{} – {}", thousands(min), thousands(max))
}

/// `12345.6` → `12,346`.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) const OVERLOAD_ROW: &str = "RSS under sustained overload (queue capacity 20,000, a slow worker, posts as fast as acknowledged): webhook / worker";

pub(crate) fn ack_row(n: u64) -> String {
    format!(
        "acknowledge latency over HTTP, {} updates, 1,000 chats, 64 connections: p50 / p99 (acks/s)",
        thousands(n as f64)
    )
}

pub(crate) fn fault_row(what: &str, cycles: u32) -> String {
    format!(
        "`kill -9` {what} × {cycles}, 1,000 chats: acknowledged / lost / order violations / duplicate runs / resume after a kill, median / max over the kills (ms)"
    )
}

/// The NATS node row: kills one at a time, each once the cluster is healthy again (default),
/// or every 4 s, overlapping (`--overlap`).
pub(crate) fn nats_node_row(overlap: bool, cycles: u32) -> String {
    if overlap {
        fault_row(
            "a NATS node (of 3), a kill every 4 s whether or not the cluster recovered (`--overlap`: kills overlap)",
            cycles,
        )
    } else {
        format!(
            "`kill -9` a NATS node (of 3) × {cycles}, the next kill once the cluster is healthy again, 1,000 chats: acknowledged / lost / order violations / duplicate runs / resume after a kill, median / p90 / max over the kills (ms)"
        )
    }
}

/// Rewrites one row of the table between the `figures` markers of `path` — the row labelled
/// `row`, else a new one after the last row of the same fault (`| \`kill -9\` a NATS node`…),
/// else at the table's end — keeping the other rows and the row's cells not measured now;
/// and under the table a note `Row “…”: note` (replaced if there).
pub(crate) fn write_row(path: &Path, table: &Table, row: &str, note: &str) {
    const BEGIN: &str = "<!-- figures:begin -->";
    const END: &str = "<!-- figures:end -->";
    let text = std::fs::read_to_string(path).expect("the figures file");
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("{} has no {BEGIN} … {END} markers", path.display());
    };
    let mut lines: Vec<String> = text[b + BEGIN.len()..e]
        .lines()
        .map(str::to_owned)
        .collect();
    let label = format!("| {row} | ");
    let old: Option<Vec<String>> = lines.iter().find(|l| l.starts_with(&label)).map(|l| {
        l[label.len()..]
            .trim_end_matches(" |")
            .split(" | ")
            .map(str::to_owned)
            .collect()
    });
    let cell = |column: &'static str, i: usize| {
        table
            .cells
            .get(&(row.to_owned(), column))
            .cloned()
            .or_else(|| old.as_ref().and_then(|o| o.get(i).cloned()))
            .unwrap_or_else(|| "not run".into())
    };
    let line = format!("{label}{} | {} |", cell(EMBEDDED, 0), cell(NATS, 1));
    if let Some(at) = lines.iter().position(|l| l.starts_with(&label)) {
        lines[at] = line;
    } else {
        let fault = row.split(" × ").next().unwrap_or(row);
        let fault = fault.split(", ").next().unwrap_or(fault);
        let same = lines
            .iter()
            .rposition(|l| l.starts_with(&format!("| {fault}")));
        let last = lines.iter().rposition(|l| l.starts_with("| "));
        match same.or(last) {
            Some(at) => lines.insert(at + 1, line),
            None => lines.push(line),
        }
    }
    // The notes: a list after the table, separated from it by a blank line.
    let short = row.split(", 1,000 chats").next().unwrap_or(row);
    let prefix = format!("- Row “{short}”:");
    let note = format!("{prefix} {note}.");
    if let Some(at) = lines.iter().position(|l| l.starts_with(&prefix)) {
        lines[at] = note;
    } else {
        let last_row = lines.iter().rposition(|l| l.starts_with("| ")).unwrap_or(0);
        if lines.get(last_row + 1).is_none_or(|l| !l.is_empty()) {
            lines.insert(last_row + 1, String::new());
        }
        let notes_end = lines[last_row + 2..]
            .iter()
            .position(|l| !l.starts_with("- Row “"))
            .map_or(lines.len(), |p| last_row + 2 + p);
        lines.insert(notes_end, note);
    }
    let mut inner = lines.join("\n");
    inner.push('\n');
    let updated = format!("{}{BEGIN}{inner}{}", &text[..b], &text[e..]);
    std::fs::write(path, updated).expect("write the figures");
}

/// Replaces what is between `<!-- figures:begin -->` and `<!-- figures:end -->` in `path`.
pub(crate) fn write_between_markers(path: &Path, markdown: &str) {
    const BEGIN: &str = "<!-- figures:begin -->";
    const END: &str = "<!-- figures:end -->";
    let text = std::fs::read_to_string(path).expect("the figures file");
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("{} has no {BEGIN} … {END} markers", path.display());
    };
    let updated = format!("{}{BEGIN}\n{markdown}{}", &text[..b], &text[e..]);
    std::fs::write(path, updated).expect("write the figures");
}
