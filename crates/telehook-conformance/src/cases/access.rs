//! Cases on who may deliver: the source allowlist, and several bots in one server.

use super::*;

// --- 13. source allowlist ---------------------------------------------------------------

/// A forwarded address inside Telegram's 149.154.160.0/20.
pub(super) const TELEGRAM_ADDRESS: &str = "149.154.167.99";

/// Loopback, where the harness's requests come from.
pub(super) const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1"];

/// Whether the harness passes the peer's address to the core: a webhook admitting every
/// address answers 200 only if it does (without an address, an allowlist refuses all).
pub(super) async fn harness_passes_the_peer_address<H: Harness>(h: &H) -> Result<bool, String> {
    let everyone = SourceAllowlist::new(["0.0.0.0/0", "::/0"]).map_err(|e| e.to_string())?;
    let rec = Recorder::default();
    let webhook = builder()
        .source_allowlist(everyone)
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    let response = client.send(post(text_update(fresh_id(), 1, "probe"))).await;
    match response.status().as_u16() {
        200 => Ok(true),
        403 => Ok(false),
        other => Err(format!(
            "an allowlist of every address answered {other}, expected 200 (or 403 without a peer address)"
        )),
    }
}

pub(super) fn with_header(
    mut request: Request<Bytes>,
    name: &'static str,
    value: &str,
) -> Request<Bytes> {
    request.headers_mut().insert(
        name,
        http::HeaderValue::from_str(value).expect("header value"),
    );
    request
}

pub(super) async fn source_allowlist_refuses_strangers_with_403_before_secret_and_body<
    H: Harness,
>(
    h: &H,
) -> Result<(), String> {
    if !harness_passes_the_peer_address(h).await? {
        return skip_because("the harness does not pass the peer address (PeerAddr)");
    }
    let rec = Recorder::default();
    let webhook = builder()
        .max_body_bytes(64)
        .source_allowlist(SourceAllowlist::telegram())
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let client = h.serve(webhook).await;
    // Loopback is not Telegram: refused, whatever the secret, before the body is read.
    let good = client.send(post(text_update(fresh_id(), 1, "x"))).await;
    check_text(&good, 403, "forbidden").map_err(|e| format!("right secret: {e}"))?;
    check_plain_text_headers(&good, &[])?;
    let wrong = client
        .send(request(
            Method::POST,
            text_update(fresh_id(), 1, "x"),
            Some("wrong"),
        ))
        .await;
    check_text(&wrong, 403, "forbidden").map_err(|e| format!("wrong secret: {e}"))?;
    let huge = client.send(post(Bytes::from(vec![b'{'; 4096]))).await;
    check_text(&huge, 403, "forbidden").map_err(|e| format!("body over the limit: {e}"))?;
    // A stranger naming a Telegram address in a forwarding header is not believed: no proxy
    // is trusted.
    let claimed = client
        .send(with_header(
            post(text_update(fresh_id(), 1, "x")),
            "x-forwarded-for",
            TELEGRAM_ADDRESS,
        ))
        .await;
    check_text(&claimed, 403, "forbidden").map_err(|e| format!("X-Forwarded-For: {e}"))?;
    // GET stays 405: the method is checked first.
    let get = client
        .send(request(Method::GET, Bytes::new(), Some(SECRET)))
        .await;
    check_status(&get, 405)?;
    ensure(rec.count() == 0, || "the handler was called".into())
}

pub(super) async fn source_allowlist_admits_listed_addresses_and_forwarding_from_trusted_proxies<
    H: Harness,
>(
    h: &H,
) -> Result<(), String> {
    if !harness_passes_the_peer_address(h).await? {
        return skip_because("the harness does not pass the peer address (PeerAddr)");
    }
    let rec = Recorder::default();
    let listed = builder()
        .source_allowlist(SourceAllowlist::new(LOOPBACK).map_err(|e| e.to_string())?)
        .build(recording(&rec))
        .map_err(|e| e.to_string())?;
    let response = h
        .serve(listed)
        .await
        .send(post(text_update(fresh_id(), 1, "x")))
        .await;
    check_empty_ok(&response).map_err(|e| format!("loopback listed: {e}"))?;

    let behind_proxy = |header| {
        SourceAllowlist::telegram()
            .trusted_proxies(LOOPBACK, header)
            .map_err(|e| e.to_string())
    };
    let xff = h
        .serve(
            builder()
                .source_allowlist(behind_proxy(ForwardedHeader::XForwardedFor)?)
                .build(recording(&rec))
                .map_err(|e| e.to_string())?,
        )
        .await;
    let spoofed_then_telegram = format!("1.2.3.4, {TELEGRAM_ADDRESS}");
    let telegram_then_stranger = format!("{TELEGRAM_ADDRESS}, 1.2.3.4");
    for (value, status) in [
        (Some(TELEGRAM_ADDRESS), 200),
        (Some(spoofed_then_telegram.as_str()), 200),
        (Some(telegram_then_stranger.as_str()), 403),
        (Some("1.2.3.4"), 403),
        (Some("not an address"), 403),
        (None, 403),
    ] {
        let mut request = post(text_update(fresh_id(), 1, "x"));
        if let Some(value) = value {
            request = with_header(request, "x-forwarded-for", value);
        }
        let response = xff.send(request).await;
        check_status(&response, status).map_err(|e| format!("X-Forwarded-For {value:?}: {e}"))?;
    }
    let rfc = h
        .serve(
            builder()
                .source_allowlist(behind_proxy(ForwardedHeader::Forwarded)?)
                .build(recording(&rec))
                .map_err(|e| e.to_string())?,
        )
        .await;
    for (value, status) in [
        (format!("for={TELEGRAM_ADDRESS};proto=https"), 200),
        (format!("for=\"{TELEGRAM_ADDRESS}:443\""), 200),
        ("for=1.2.3.4".to_owned(), 403),
        ("for=unknown".to_owned(), 403),
    ] {
        let request = with_header(post(text_update(fresh_id(), 1, "x")), "forwarded", &value);
        let response = rfc.send(request).await;
        check_status(&response, status).map_err(|e| format!("Forwarded {value:?}: {e}"))?;
    }
    // The X-Forwarded-For header does not count where the proxies write Forwarded.
    let other_header = with_header(
        post(text_update(fresh_id(), 1, "x")),
        "x-forwarded-for",
        TELEGRAM_ADDRESS,
    );
    check_status(&rfc.send(other_header).await, 403)
        .map_err(|e| format!("X-Forwarded-For where Forwarded is trusted: {e}"))?;
    ensure(rec.count() == 5, || {
        format!(
            "expected 5 handler calls (the admitted requests), got {}",
            rec.count()
        )
    })
}

// --- several bots in one server ----------------------------------------------------------

/// The second bot's secret (the first one's is [`SECRET`]).
pub(super) const OTHER_SECRET: &str = "an0ther-s3cret_for-the-second-bot";

/// Two bots, `alpha` (secret [`SECRET`]) and `beta` ([`OTHER_SECRET`]), each recording into its
/// own recorder, mounted by the harness; `None` when the harness cannot mount [`Bots`].
pub(super) async fn serve_two_bots<H: Harness>(
    h: &H,
) -> Result<Option<(H::Client, Recorder, Recorder)>, String> {
    let (alpha, beta) = (Recorder::default(), Recorder::default());
    let bots = Bots::new()
        .bot(
            "alpha",
            builder()
                .build(recording(&alpha))
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?
        .bot(
            "beta",
            Webhook::builder()
                .secret_token(OTHER_SECRET)
                .build(recording(&beta))
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
    Ok(h.serve_bots(bots).await.map(|client| (client, alpha, beta)))
}

pub(super) fn post_to(path: &str, body: Bytes, secret: Option<&str>) -> Request<Bytes> {
    let mut request = request(Method::POST, body, secret);
    *request.uri_mut() = path.parse().expect("uri");
    request
}

pub(super) fn check_calls(rec: &Recorder, bot: &str, expected: &[u64]) -> Result<(), String> {
    let got: Vec<u64> = rec.calls().iter().map(|(id, _)| *id).collect();
    ensure(got == expected, || {
        format!("bot {bot}'s handler got update_ids {got:?}, expected {expected:?}")
    })
}

pub(super) async fn bots_by_path_each_update_reaches_only_its_bot_and_unknown_names_get_404<
    H: Harness,
>(
    h: &H,
) -> Result<(), String> {
    let Some((client, alpha, beta)) = serve_two_bots(h).await? else {
        return skip_because("the harness does not mount Bots (Harness::serve_bots)");
    };
    let (to_alpha, to_beta, shared) = (fresh_id(), fresh_id(), fresh_id());
    let alpha_path = format!("{BOTS_PATH}/alpha");
    let beta_path = format!("{BOTS_PATH}/beta");
    for (path, id, secret) in [
        (&alpha_path, to_alpha, SECRET),
        (&beta_path, to_beta, OTHER_SECRET),
        // The same update_id for both: each bot has its own redelivery guard.
        (&alpha_path, shared, SECRET),
        (&beta_path, shared, OTHER_SECRET),
    ] {
        let response = client
            .send(post_to(path, text_update(id, 1, "x"), Some(secret)))
            .await;
        check_empty_ok(&response).map_err(|e| format!("{path}: {e}"))?;
    }
    // A known bot with the other bot's secret, or none: 401 from that bot.
    for secret in [Some(OTHER_SECRET), None] {
        let response = client
            .send(post_to(
                &alpha_path,
                text_update(fresh_id(), 1, "x"),
                secret,
            ))
            .await;
        check_status(&response, 401).map_err(|e| format!("{alpha_path} with {secret:?}: {e}"))?;
    }
    // An unknown bot: 404, whatever the secret.
    for secret in [SECRET, OTHER_SECRET] {
        let path = format!("{BOTS_PATH}/gamma");
        let response = client
            .send(post_to(
                &path,
                text_update(fresh_id(), 1, "x"),
                Some(secret),
            ))
            .await;
        check_status(&response, 404).map_err(|e| format!("{path}: {e}"))?;
    }
    check_calls(&alpha, "alpha", &[to_alpha, shared])?;
    check_calls(&beta, "beta", &[to_beta, shared])
}

pub(super) async fn bots_by_secret_token_each_update_reaches_only_its_bot_and_unknown_secrets_get_401<
    H: Harness,
>(
    h: &H,
) -> Result<(), String> {
    let Some((client, alpha, beta)) = serve_two_bots(h).await? else {
        return skip_because("the harness does not mount Bots (Harness::serve_bots)");
    };
    let (to_alpha, to_beta, shared) = (fresh_id(), fresh_id(), fresh_id());
    for (id, secret) in [
        (to_alpha, SECRET),
        (to_beta, OTHER_SECRET),
        (shared, OTHER_SECRET),
        (shared, SECRET),
    ] {
        let response = client
            .send(post_to(
                BOTS_BY_SECRET_PATH,
                text_update(id, 1, "x"),
                Some(secret),
            ))
            .await;
        check_empty_ok(&response).map_err(|e| format!("secret of {id}: {e}"))?;
    }
    for secret in [Some("wrong"), Some(""), None] {
        let response = client
            .send(post_to(
                BOTS_BY_SECRET_PATH,
                text_update(fresh_id(), 1, "x"),
                secret,
            ))
            .await;
        check_status(&response, 401).map_err(|e| format!("secret {secret:?}: {e}"))?;
    }
    check_calls(&alpha, "alpha", &[to_alpha, shared])?;
    check_calls(&beta, "beta", &[to_beta, shared])
}
