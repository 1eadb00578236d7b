//! Range checks of every setting.

use super::*;

#[test]
fn defaults_are_valid() {
    RelayConfig::default().validate().unwrap();
    StoreLimits::default().validate().unwrap();
}

#[test]
fn every_duration_and_size_out_of_range_is_refused_naming_its_flag() {
    let huge = Duration::from_secs(u64::MAX);
    type Set<T> = Box<dyn Fn(&mut T)>;
    let store: Vec<(&str, Set<StoreLimits>)> = vec![
        (
            "--retain-secs",
            Box::new(|l| l.retention.max_age = Duration::from_secs(u64::MAX)),
        ),
        (
            "--retain-secs",
            Box::new(|l| l.retention.max_age = Duration::from_secs(9_223_372_036_854_776)),
        ),
        (
            "--retain-secs",
            Box::new(|l| l.retention.max_age = Duration::ZERO),
        ),
        (
            "--retain-updates",
            Box::new(|l| l.retention.max_updates = 0),
        ),
        (
            "--retain-updates",
            Box::new(|l| l.retention.max_updates = u64::MAX),
        ),
        ("--max-channels", Box::new(|l| l.max_channels = 0)),
        ("--ingest-queue", Box::new(|l| l.ingest_queue = 0)),
        ("--max-batch", Box::new(|l| l.max_batch = 0)),
        (
            "--prune-interval-secs",
            Box::new(|l| l.prune_interval = Duration::ZERO),
        ),
        (
            "--prune-interval-secs",
            Box::new(move |l| l.prune_interval = huge),
        ),
        (
            "--max-db-bytes",
            Box::new(|l| l.max_db_bytes = Some(u64::MAX)),
        ),
    ];
    for (flag, set) in store {
        let mut limits = StoreLimits::default();
        set(&mut limits);
        let err = limits.validate().unwrap_err().to_string();
        assert!(err.contains(flag), "{flag}: {err}");
    }
    let relay: Vec<(&str, Set<RelayConfig>)> = vec![
        (
            "--header-read-timeout-secs",
            Box::new(move |c| c.header_read_timeout = huge),
        ),
        (
            "--header-read-timeout-secs",
            Box::new(|c| c.header_read_timeout = Duration::ZERO),
        ),
        (
            "--body-read-timeout-secs",
            Box::new(move |c| c.body_read_timeout = huge),
        ),
        ("--max-sleep-secs", Box::new(move |c| c.max_sleep = huge)),
        (
            "--max-body-bytes",
            Box::new(|c| c.max_body_bytes = usize::MAX),
        ),
        ("--max-body-bytes", Box::new(|c| c.max_body_bytes = 0)),
        (
            "--max-updates-per-response",
            Box::new(|c| c.max_updates_per_response = 0),
        ),
        (
            "--max-waiters-per-channel",
            Box::new(|c| c.max_waiters_per_channel = 0),
        ),
        (
            "--max-response-bytes",
            Box::new(|c| c.max_response_bytes = 1024),
        ),
        ("--ws-send-buffer", Box::new(|c| c.ws_send_buffer = 0)),
        (
            "--ws-max-subscriptions",
            Box::new(|c| c.ws_max_subscriptions = 0),
        ),
        (
            "--ws-max-message-bytes",
            Box::new(|c| c.ws_max_message_bytes = usize::MAX),
        ),
        ("--max-connections", Box::new(|c| c.max_connections = 0)),
        (
            "--rate-limit",
            Box::new(|c| {
                c.rate_limit = Some(RateLimit {
                    per_second: f64::INFINITY,
                    ..RateLimit::default()
                });
            }),
        ),
        (
            "--rate-limit",
            Box::new(|c| {
                c.rate_limit = Some(RateLimit {
                    per_second: -1.0,
                    ..RateLimit::default()
                });
            }),
        ),
        (
            "--rate-limit-burst",
            Box::new(|c| {
                c.rate_limit = Some(RateLimit {
                    burst: 0,
                    ..RateLimit::default()
                });
            }),
        ),
    ];
    for (flag, set) in relay {
        let mut config = RelayConfig::default();
        set(&mut config);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(flag), "{flag}: {err}");
    }
}
