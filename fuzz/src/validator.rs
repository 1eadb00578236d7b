//! `validator`: `Update::from_bytes` (and `Update`'s `Deserialize`, and `serde_json::Value` as an
//! `UpdateType`) against the reference in [`crate::model`].

use bytes::Bytes;
use serde_json::Value;
use telehook_core::{InvalidUpdate, Update, UpdateType};

use crate::model::{self, Verdict};
use crate::{Outcome, check};

/// Runs the target on one input.
pub fn run(data: &[u8]) -> Outcome {
    let verdict = model::reference(data);
    let got = Update::from_bytes(Bytes::copy_from_slice(data));
    compare("Update::from_bytes", &verdict, &got, Some(data))?;

    // The same body read as one value of a larger document (a getUpdates answer, a relay batch).
    let nested = serde_json::from_slice::<Update>(data);
    match (&verdict, nested) {
        (Verdict::Update(_), Ok(u)) => compare("Update as Deserialize", &verdict, &Ok(u), None)?,
        (Verdict::Update(_), Err(e)) => {
            return Err(format!("Update as Deserialize refused an update: {e}"));
        }
        (_, Ok(u)) => {
            return Err(format!(
                "Update as Deserialize accepted a non-update ({verdict:?}): {u:?}"
            ));
        }
        (_, Err(_)) => {}
    }

    // serde_json::Value as the handler's update type: same id and queue.
    if let (Verdict::Update(expected), Ok(update)) = (&verdict, got) {
        let value = <Value as UpdateType>::from_update(update)
            .map_err(|e| format!("Value::from_update refused an update: {e}"))?;
        check!(
            UpdateType::update_id(&value) == expected.update_id,
            "Value update_id"
        );
        check!(
            UpdateType::sequence_key(&value) == expected.sequence_key,
            "Value sequence_key {:?} != {:?}",
            UpdateType::sequence_key(&value),
            expected.sequence_key
        );
    }
    Ok(())
}

/// Compares a parsed update with the verdict; `raw` is checked when given.
fn compare(
    what: &str,
    verdict: &Verdict,
    got: &Result<Update, InvalidUpdate>,
    raw: Option<&[u8]>,
) -> Outcome {
    match (verdict, got) {
        // Refused by both: which reason telehook gives first (a duplicate key before trailing
        // garbage, say) only changes the 400's text.
        (Verdict::NotJson, Err(_)) => Ok(()),
        (Verdict::NotAnUpdate(_), Err(InvalidUpdate::NotJson(e))) => Err(format!(
            "{what}: serde_json parses it, telehook says not JSON: {e}"
        )),
        (Verdict::NotAnUpdate(_), Err(_)) => Ok(()),
        (Verdict::Update(_), Err(e)) => Err(format!("{what}: refused an update: {e:?}")),
        (Verdict::NotJson | Verdict::NotAnUpdate(_), Ok(u)) => {
            Err(format!("{what}: accepted ({u:?}), reference: {verdict:?}"))
        }
        (Verdict::Update(e), Ok(u)) => {
            let kind = u.kind().map(str::to_owned);
            let seen = (
                u.update_id(),
                kind,
                u.chat_id(),
                u.sender_id(),
                u.sequence_key().cloned(),
            );
            let want = (
                e.update_id,
                e.kind.clone(),
                e.chat_id,
                e.sender_id,
                e.sequence_key.clone(),
            );
            check!(
                seen == want,
                "{what}: telehook {seen:?} != reference {want:?}"
            );
            if let Some(raw) = raw {
                check!(u.raw().as_ref() == raw, "{what}: raw bytes changed");
                check!(u.raw_str().as_bytes() == raw, "{what}: raw_str differs");
            }
            Ok(())
        }
    }
}
