//! Inputs at the edges of every range: no panic, a clear refusal.

mod common;

use std::time::Duration;

use common::{TOKEN, emulator};
use serde_json::{Value, json};
use telehook_emulator::{Emulator, EmulatorError, Timing, User};

async fn call(base: &str, method: &str, params: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/bot{TOKEN}/{method}"))
        .json(params)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_time_scale_outside_its_range_is_refused_at_start_naming_the_setting() {
    for scale in [1e300, 1e4, 0.0, -1.0, 1e-9, f64::NAN, f64::INFINITY] {
        let error = Emulator::builder()
            .bot(TOKEN)
            .timing(Timing::scaled(scale))
            .start()
            .await
            .expect_err("refused");
        assert!(
            matches!(error, EmulatorError::InvalidTimeScale { .. }),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("--time-scale") && text.contains("1000"),
            "{text}"
        );
    }
    for scale in [Timing::MIN_SCALE, 0.001, 1.0, Timing::MAX_SCALE] {
        Emulator::builder()
            .timing(Timing::scaled(scale))
            .start()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_largest_long_poll_timeout_and_wait_do_not_overflow_the_clock() {
    let (emulator, telegram, _bot) = emulator(Timing::scaled(Timing::MAX_SCALE)).await;
    telegram.private_text(&User::new(7, "Ann"), "hi");
    // Updates are pending: answered at once, whatever the timeout.
    let (status, body) = call(
        &emulator.base_url(),
        "getUpdates",
        &json!({ "timeout": i64::MAX }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"].as_array().unwrap().len(), 1);
    // A wait with the largest Duration ends when its condition holds.
    let calls = telegram
        .wait_for_calls_to("getUpdates", 1, Duration::MAX)
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
}

#[tokio::test]
async fn update_ids_stay_within_the_bound_the_control_accepts() {
    let (_emulator, telegram, _bot) = emulator(Timing::scaled(0.01)).await;
    let top = 2_147_483_647;
    telegram.set_next_update_id(top).unwrap();
    let ann = User::new(7, "Ann");
    assert_eq!(telegram.private_text(&ann, "a").update_id, top);
    assert_eq!(telegram.next_update_id(), 1);
    assert_eq!(telegram.private_text(&ann, "b").update_id, 1);
    assert!(telegram.set_next_update_id(top + 1).is_err());
}
