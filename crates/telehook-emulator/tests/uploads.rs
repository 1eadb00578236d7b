//! What the Bot API takes in: `multipart/form-data` uploads (recorded, downloadable), and
//! calls refused or unknown (recorded with the refusal).

mod common;

use common::{TOKEN, emulator, fast};
use serde_json::{Value, json};
use telehook_emulator::{CallOutcome, User};

#[tokio::test]
async fn unknown_methods_and_refused_calls_are_recorded_with_the_refusal() {
    let (emulator, telegram, _bot) = emulator(fast()).await;
    let api = format!("{}/bot{TOKEN}", emulator.base_url());
    let client = reqwest::Client::new();
    let unknown = client
        .post(format!("{api}/sendHologram"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "ok": false, "error_code": 404, "description": "Not Found: method not found" })
    );
    let broken = client
        .post(format!("{api}/sendMessage"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let calls = telegram.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].method, "sendHologram");
    assert!(
        matches!(&calls[0].outcome, CallOutcome::Error { error_code: 404, description } if description == "Not Found: method not found")
    );
    assert_eq!(calls[1].method, "sendMessage");
    assert!(matches!(
        &calls[1].outcome,
        CallOutcome::Error {
            error_code: 400,
            ..
        }
    ));
}

#[tokio::test]
async fn multipart_uploads_are_parsed_recorded_and_downloadable() {
    let (emulator, telegram, _bot) = emulator(fast()).await;
    telegram.private_text(&User::new(42, "Ann"), "send me a cat");
    let base = emulator.base_url();
    let client = reqwest::Client::new();
    let bytes = b"\xff\xd8\xff\xe0 a tiny jpeg".to_vec();
    let form = reqwest::multipart::Form::new()
        .text("chat_id", "42")
        .text("caption", "a cat")
        .part(
            "photo",
            reqwest::multipart::Part::bytes(bytes.clone())
                .file_name("cat.jpg")
                .mime_str("image/jpeg")
                .unwrap(),
        );
    let body: Value = client
        .post(format!("{base}/bot{TOKEN}/sendPhoto"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["result"]["caption"], "a cat");
    let file_id = body["result"]["photo"][1]["file_id"].as_str().unwrap();

    let call = &telegram.calls_to("sendPhoto")[0];
    assert_eq!(call.param_str("chat_id").as_deref(), Some("42"));
    let upload = &call.uploads[0];
    assert_eq!(
        (
            upload.field.as_str(),
            upload.file_name.as_deref(),
            upload.content_type.as_deref()
        ),
        ("photo", Some("cat.jpg"), Some("image/jpeg"))
    );
    assert_eq!(upload.size, bytes.len() as u64);
    assert_eq!(upload.sha256.len(), 64);

    let file: Value = client
        .get(format!("{base}/bot{TOKEN}/getFile?file_id={file_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = file["result"]["file_path"].as_str().unwrap();
    let downloaded = client
        .get(format!("{base}/file/bot{TOKEN}/{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.status(), 200);
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), bytes);
    assert_eq!(telegram.file_bytes(file_id), Some(bytes));

    // sendMediaGroup with attach:// parts.
    let form = reqwest::multipart::Form::new()
        .text("chat_id", "42")
        .text("media", json!([{ "type": "photo", "media": "attach://a" }, { "type": "document", "media": "attach://b" }]).to_string())
        .part("a", reqwest::multipart::Part::bytes(vec![1, 2, 3]).file_name("a.jpg"))
        .part("b", reqwest::multipart::Part::bytes(vec![4, 5]).file_name("b.txt"));
    let body: Value = client
        .post(format!("{base}/bot{TOKEN}/sendMediaGroup"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["result"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(body["result"][1]["document"]["file_name"], "b.txt");
    assert_eq!(telegram.calls_to("sendMediaGroup")[0].uploads.len(), 2);
}
