//! The AFL++ entry point: `afl <target>` (see `fuzz/run.sh`). A disagreement is a panic, which
//! AFL++ records as a crash.

fn main() {
    let name = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FUZZ_TARGET").ok())
        .unwrap_or_default();
    let Some(target) = telehook_fuzz::target(&name) else {
        let names: Vec<&str> = telehook_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: afl <target>; targets: {}", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| {
        if let Err(e) = target(data) {
            panic!("{name}: disagreement: {e}");
        }
    });
}
