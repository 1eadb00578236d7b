//! Every duration and size flag is range-checked at start: a clear error naming the flag, exit
//! status 1, no panic and no silently wrapped value.

mod common;

use std::process::Command;

use common::TempDir;

#[test]
fn out_of_range_flags_are_refused_at_start_naming_the_flag() {
    let dir = TempDir::new("flags");
    for (flag, value) in [
        ("--retain-secs", "18446744073709551615"),
        ("--retain-secs", "9223372036854776"),
        ("--retain-secs", "0"),
        ("--header-read-timeout-secs", "18446744073709551615"),
        ("--body-read-timeout-secs", "18446744073709551615"),
        ("--prune-interval-secs", "0"),
        ("--max-sleep-secs", "18446744073709551615"),
        ("--max-body-bytes", "0"),
        ("--max-connections", "0"),
        ("--max-db-bytes", "18446744073709551615"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_telehook-relay"))
            .args(["--listen", "127.0.0.1:0", "--log", "error", flag, value])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .expect("relay binary runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {text}");
        assert!(text.contains(flag), "{flag} {value}: {text}");
        assert!(!text.contains("panicked"), "{flag} {value}: {text}");
    }
}
