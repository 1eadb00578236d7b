//! Several bots in one server: a request reaches exactly the bot its path or secret token
//! names, and is refused (404 / 401) otherwise; one bot's update never reaches another's
//! handler.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use telehook_core::{
    Bots, BotsError, Context, HandlerError, RequestHead, SECRET_TOKEN_HEADER, Update, Webhook,
};

type Seen = Arc<Mutex<Vec<(&'static str, u64)>>>;

fn bot(name: &'static str, secret: &str, seen: &Seen) -> Webhook {
    let seen = Arc::clone(seen);
    Webhook::builder()
        .secret_token(secret)
        .build(move |update: Update, _: Context| {
            seen.lock().unwrap().push((name, update.update_id()));
            async { Ok::<_, HandlerError>(()) }
        })
        .unwrap()
}

fn update(id: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"update_id":{id},"message":{{"message_id":1,"date":0,"chat":{{"id":1,"type":"private"}},"text":"x"}}}}"#
    ))
}

fn head(secret: Option<&str>) -> RequestHead<'_> {
    RequestHead::new("POST", move |name| {
        (name == SECRET_TOKEN_HEADER)
            .then_some(secret.map(str::as_bytes))
            .flatten()
    })
}

fn two_bots(seen: &Seen) -> Bots {
    Bots::new()
        .bot("alpha", bot("alpha", "alpha_Secret-1", seen))
        .unwrap()
        .bot("beta", bot("beta", "beta_Secret-2", seen))
        .unwrap()
}

#[tokio::test]
async fn by_name_each_bot_gets_only_its_own_updates() {
    let seen = Seen::default();
    let bots = two_bots(&seen);
    let ok = bots
        .handle_bytes_by_name("alpha", head(Some("alpha_Secret-1")), update(1))
        .await;
    assert_eq!(ok.status(), 200);
    let ok = bots
        .handle_bytes_by_name("beta", head(Some("beta_Secret-2")), update(2))
        .await;
    assert_eq!(ok.status(), 200);
    // Beta's secret on alpha's path: alpha's own secret check refuses it.
    let crossed = bots
        .handle_bytes_by_name("alpha", head(Some("beta_Secret-2")), update(3))
        .await;
    assert_eq!(crossed.status(), 401);
    let unknown = bots
        .handle_bytes_by_name("gamma", head(Some("alpha_Secret-1")), update(4))
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.rejection().map(|r| r.reason()), Some("unknown_bot"));
    assert_eq!(*seen.lock().unwrap(), [("alpha", 1), ("beta", 2)]);
}

#[tokio::test]
async fn by_secret_token_the_header_picks_the_bot() {
    let seen = Seen::default();
    let bots = two_bots(&seen);
    let send = |secret: Option<&'static str>, id| {
        bots.handle_by_secret_token(
            head(secret),
            http::Extensions::new(),
            http_body_util::Full::new(update(id)),
        )
    };
    assert_eq!(send(Some("beta_Secret-2"), 10).await.status(), 200);
    assert_eq!(send(Some("alpha_Secret-1"), 11).await.status(), 200);
    assert_eq!(send(Some("alpha_Secret-"), 12).await.status(), 401);
    assert_eq!(send(Some("nobody"), 13).await.status(), 401);
    assert_eq!(send(None, 14).await.status(), 401);
    assert_eq!(*seen.lock().unwrap(), [("beta", 10), ("alpha", 11)]);
}

#[test]
fn names_and_secrets_must_be_unique_and_names_path_safe() {
    let seen = Seen::default();
    let bots = two_bots(&seen);
    assert_eq!(
        bots.clone()
            .bot("alpha", bot("x", "other_Secret", &seen))
            .unwrap_err(),
        BotsError::DuplicateName("alpha".into())
    );
    let err = bots
        .clone()
        .bot("gamma", bot("x", "beta_Secret-2", &seen))
        .unwrap_err();
    assert_eq!(err, BotsError::DuplicateSecretToken("gamma".into()));
    assert!(
        !err.to_string().contains("beta_Secret-2"),
        "the secret leaks"
    );
    for bad in ["", "a/b", "dot.ted", &"n".repeat(65)] {
        assert!(
            matches!(
                Bots::new().bot(bad, bot("x", "s", &seen)),
                Err(BotsError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(bots.names().collect::<Vec<_>>(), ["alpha", "beta"]);
}
