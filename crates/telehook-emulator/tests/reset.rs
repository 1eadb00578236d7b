//! Issue 11: `update_id`s reset after a quiet week, offsets "in the future", and the getUpdates
//! faults a bot must survive (502, 429 with a long `retry_after`, a hang), from Rust and HTTP.

mod common;

use std::time::Duration;

use common::{TOKEN, emulator, fast};
use serde_json::{Value, json};
use telehook_api::GetUpdates;
use telehook_emulator::{CallOutcome, EmulatorError, Fault, User};

fn ids(updates: &[Value]) -> Vec<u64> {
    updates
        .iter()
        .map(|u| u["update_id"].as_u64().unwrap())
        .collect()
}

fn from(offset: i64) -> GetUpdates {
    GetUpdates {
        offset: Some(offset),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_offset_in_the_future_is_answered_from_the_head_and_confirms_nothing() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let ann = User::new(42, "Ann");
    for text in ["a", "b", "c"] {
        telegram.private_text(&ann, text);
    }
    // The tail is 4 (the next id): up to 14 is within reach, 15 is "in the future".
    let updates = bot.get_updates(&from(15)).await.unwrap();
    assert_eq!(ids(&updates), [1, 2, 3]);
    assert_eq!(
        telegram.pending_update_count(),
        3,
        "nothing was confirmed by the future offset"
    );
    // Within reach (tail + 10), an offset confirms everything below it.
    let updates = bot.get_updates(&from(14)).await.unwrap();
    assert!(updates.is_empty());
    assert_eq!(telegram.pending_update_count(), 0);
}

#[tokio::test]
async fn after_a_quiet_week_update_ids_restart_lower_and_the_old_offset_still_gets_them() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let ann = User::new(42, "Ann");
    telegram.set_next_update_id(500_000).unwrap();
    let last = telegram.private_text(&ann, "before");
    assert_eq!(last.update_id, 500_000);
    let offset = i64::try_from(last.update_id).unwrap() + 1;
    assert!(bot.get_updates(&from(offset)).await.unwrap().is_empty());

    // A quiet week: the next id is chosen anew, far lower.
    assert_eq!(telegram.set_next_update_id(7).unwrap(), 500_001);
    let after = telegram.private_text(&ann, "after");
    assert_eq!(after.update_id, 7);
    let updates = bot.get_updates(&from(offset)).await.unwrap();
    assert_eq!(
        ids(&updates),
        [7],
        "the old offset is in the future: answered from the head"
    );
    let updates = bot.get_updates(&from(offset)).await.unwrap();
    assert_eq!(ids(&updates), [7], "and it confirmed nothing");
    assert!(bot.get_updates(&from(8)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_jump_higher_is_allowed_any_time_and_lower_only_above_pending_updates() {
    let (_emulator, telegram, _bot) = emulator(fast()).await;
    let ann = User::new(42, "Ann");
    telegram.private_text(&ann, "one");
    telegram.set_next_update_id(1_000).unwrap();
    assert_eq!(telegram.private_text(&ann, "two").update_id, 1_000);
    assert!(matches!(
        telegram.set_next_update_id(5),
        Err(EmulatorError::UpdateIdBelowPending {
            update_id: 5,
            pending: 1_000
        })
    ));
    assert!(matches!(
        telegram.set_next_update_id(0),
        Err(EmulatorError::InvalidUpdateId { .. })
    ));
    assert!(matches!(
        telegram.set_next_update_id(1 << 31),
        Err(EmulatorError::InvalidUpdateId { .. })
    ));
    assert_eq!(telegram.next_update_id(), 1_001);
}

#[tokio::test]
async fn the_update_id_jump_and_faults_over_http() {
    let (emulator, telegram, _bot) = emulator(fast()).await;
    let client = reqwest::Client::new();
    let control = format!("{}/_emulator/{TOKEN}", emulator.base_url());
    let api = format!("{}/bot{TOKEN}", emulator.base_url());

    let answer: Value = client
        .post(format!("{control}/next_update_id"))
        .json(&json!({ "update_id": 90 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"]["previous"], 1);
    let next: Value = client
        .get(format!("{control}/next_update_id"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["result"]["update_id"], 90);
    let refused = client
        .post(format!("{control}/next_update_id"))
        .json(&json!({ "update_id": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    for fault in [
        json!({ "method": "getUpdates", "fault": { "type": "bad_gateway" } }),
        json!({ "method": "getupdates", "times": 1, "fault": { "type": "too_many_requests", "retry_after": 3600 } }),
        json!({ "method": "getUpdates", "fault": { "type": "hang" } }),
    ] {
        let planned = client
            .post(format!("{control}/faults"))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert_eq!(planned.status(), 200);
    }
    let planned: Value = client
        .get(format!("{control}/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(planned["result"].as_array().unwrap().len(), 3);
    assert_eq!(
        planned["result"][1]["fault"],
        json!({ "type": "too_many_requests", "retry_after": 3600 })
    );

    // 502: nginx's HTML page, as Telegram's front-end sends it.
    let bad = client
        .get(format!("{api}/getUpdates"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 502);
    assert!(bad.text().await.unwrap().contains("502 Bad Gateway"));
    // 429 with a long retry_after.
    let limited = client
        .get(format!("{api}/getUpdates"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["parameters"]["retry_after"], 3600);
    // A hang: no answer until the client gives up.
    let hung = client
        .get(format!("{api}/getUpdates"))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());

    let outcomes: Vec<CallOutcome> = telegram.calls().into_iter().map(|c| c.outcome).collect();
    assert!(matches!(
        outcomes[0],
        CallOutcome::Error {
            error_code: 502,
            ..
        }
    ));
    assert!(matches!(
        outcomes[1],
        CallOutcome::Error {
            error_code: 429,
            ..
        }
    ));
    assert_eq!(outcomes[2], CallOutcome::Hung);

    let unknown = client
        .post(format!("{control}/faults"))
        .json(&json!({ "fault": { "type": "telepathy" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    client
        .delete(format!("{control}/faults"))
        .send()
        .await
        .unwrap();
    assert!(telegram.planned_faults().is_empty());
    telegram.inject_fault("*", 1, Fault::Hang);
    assert_eq!(telegram.planned_faults().len(), 1);
}
