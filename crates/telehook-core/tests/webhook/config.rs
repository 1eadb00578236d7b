//! Builder checks: secret tokens, zero and too-large limits, the secret kept out of `Debug`.

use std::time::Duration;

use telehook_core::{BuildError, Webhook};

use super::ok_handler;

#[test]
fn secret_tokens_outside_telegrams_rule_are_build_errors() {
    let long = "a".repeat(257);
    for bad in ["", "has space", "ünïcode", "semi;colon", long.as_str()] {
        let err = Webhook::builder()
            .secret_token(bad)
            .build(ok_handler)
            .unwrap_err();
        assert!(
            matches!(err, BuildError::InvalidSecretToken(_)),
            "{bad:?}: {err}"
        );
        // What `main` returning the error prints (`Debug`) names the set, the length and
        // the rule's source, not only "outside the allowed set".
        let debug = format!("{err:?}");
        for rule in [
            "A-Z a-z 0-9 _ -",
            "1-256",
            "core.telegram.org/bots/api#setwebhook",
        ] {
            assert!(debug.contains(rule), "{bad:?}: {debug}");
        }
        if !bad.is_empty() {
            assert!(
                !err.to_string().contains(bad),
                "the error repeats the secret: {err}"
            );
        }
    }
    for good in ["a", "A-z_0-9", &"b".repeat(256)] {
        Webhook::builder()
            .secret_token(good)
            .build(ok_handler)
            .unwrap();
    }
}

#[test]
fn zero_limits_are_build_errors() {
    let zero_timeout = Webhook::builder()
        .timeout(Duration::ZERO)
        .build(ok_handler)
        .unwrap_err();
    assert_eq!(zero_timeout, BuildError::Zero("timeout"));
    let zero_body = Webhook::builder()
        .max_body_bytes(0)
        .build(ok_handler)
        .unwrap_err();
    assert_eq!(zero_body, BuildError::Zero("max_body_bytes"));
    let zero_attempts = Webhook::builder()
        .error_policy(telehook_core::ErrorPolicy::BoundedRetry { max_attempts: 0 })
        .build(ok_handler)
        .unwrap_err();
    assert_eq!(zero_attempts, BuildError::Zero("error_policy max_attempts"));
}

#[test]
fn debug_output_never_shows_the_secret() {
    let builder = Webhook::builder().secret_token("TopSecretValue_123");
    assert!(!format!("{builder:?}").contains("TopSecretValue_123"));
    let webhook = builder.build(ok_handler).unwrap();
    let debug = format!("{webhook:?}");
    assert!(!debug.contains("TopSecretValue_123"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
}

#[test]
fn a_zero_body_read_timeout_is_a_build_error() {
    let err = Webhook::builder()
        .body_read_timeout(Duration::ZERO)
        .build(ok_handler)
        .unwrap_err();
    assert_eq!(err, BuildError::Zero("body_read_timeout"));
}

#[test]
fn max_in_flight_above_its_limit_is_a_build_error_not_a_panic() {
    for value in [
        telehook_core::MAX_IN_FLIGHT_LIMIT + 1,
        u32::MAX as usize + 1,
        usize::MAX,
    ] {
        let err = Webhook::builder()
            .max_in_flight(value)
            .build(ok_handler)
            .unwrap_err();
        assert_eq!(
            err,
            BuildError::TooLarge {
                name: "max_in_flight",
                value,
                max: telehook_core::MAX_IN_FLIGHT_LIMIT,
            }
        );
        assert!(err.to_string().contains("1..="), "{err}");
    }
    assert_eq!(
        Webhook::builder()
            .max_in_flight(0)
            .build(ok_handler)
            .unwrap_err(),
        BuildError::Zero("max_in_flight")
    );
    assert!(
        Webhook::builder()
            .max_in_flight(telehook_core::MAX_IN_FLIGHT_LIMIT)
            .build(ok_handler)
            .is_ok()
    );
}

#[test]
fn a_redelivery_guard_capacity_above_its_limit_is_a_build_error() {
    for capacity in [telehook_core::guard::MAX_CAPACITY + 1, usize::MAX] {
        let err = Webhook::builder()
            .redelivery_guard(capacity, Duration::from_secs(60))
            .build(ok_handler)
            .unwrap_err();
        assert_eq!(
            err,
            BuildError::TooLarge {
                name: "redelivery_guard capacity",
                value: capacity,
                max: telehook_core::guard::MAX_CAPACITY,
            }
        );
    }
}

#[test]
fn a_memory_store_caps_its_capacity_instead_of_panicking_on_first_use() {
    // Lowered to MAX_CAPACITY (the slot table, allocated whole on the first finished run,
    // would otherwise overflow).
    let store = telehook_core::MemoryStore::new(usize::MAX, Duration::from_secs(60));
    let shown = format!("{store:?}");
    assert!(
        shown.contains(&format!("capacity: {}", telehook_core::guard::MAX_CAPACITY)),
        "{shown}"
    );
}
