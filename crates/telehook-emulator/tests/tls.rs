//! HTTPS webhooks (issue 15 §4): deliveries over TLS to a loopback bot that uploaded its
//! self-signed certificate with setWebhook, and TLS failures reported as Telegram reports them.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{TOKEN, WAIT, emulator, fast};
use serde_json::Value;
use telehook_emulator::{DeliveryOutcome, User};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// A self-signed certificate for `localhost` and `127.0.0.1`, for these tests only.
const CERT: &[u8] = include_bytes!("fixtures/webhook-cert.pem");
const KEY: &[u8] = include_bytes!("fixtures/webhook-key.pem");

/// A webhook served over TLS on 127.0.0.1; returns its URL and how many updates it received.
async fn tls_webhook() -> (String, Arc<AtomicUsize>) {
    let certs = CertificateDer::pem_slice_iter(CERT)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, counter) = (acceptor.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_request| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, Infallible>(hyper::Response::new(axum::body::Body::empty())) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, hits)
}

async fn set_webhook(base: &str, url: &str, certificate: Option<&[u8]>) -> Value {
    set_webhook_as(base, url, certificate, "certificate").await
}

/// setWebhook with the certificate in a part named `part`: `certificate` itself, or another
/// name that `certificate=attach://name` refers to (as aiogram and grammY send it).
async fn set_webhook_as(base: &str, url: &str, certificate: Option<&[u8]>, part: &str) -> Value {
    let mut form = reqwest::multipart::Form::new().text("url", url.to_owned());
    if part != "certificate" {
        form = form.text("certificate", format!("attach://{part}"));
    }
    if let Some(pem) = certificate {
        form = form.part(
            part.to_owned(),
            reqwest::multipart::Part::bytes(pem.to_vec()).file_name("cert.pem"),
        );
    }
    reqwest::Client::new()
        .post(format!("{base}/bot{TOKEN}/setWebhook"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_uploaded_self_signed_certificate_is_trusted_for_https_delivery() {
    let (emulator, telegram, _bot) = emulator(fast()).await;
    let (url, hits) = tls_webhook().await;
    let answer = set_webhook_as(&emulator.base_url(), &url, Some(CERT), "c7f3k1").await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(telegram.webhook_info()["has_custom_certificate"], true);
    let update = telegram.private_text(&User::new(42, "Ann"), "over TLS");
    telegram
        .wait_for_delivered(update.update_id, WAIT)
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_the_certificate_delivery_fails_with_telegrams_ssl_error() {
    let (emulator, telegram, _bot) = emulator(fast()).await;
    let (url, hits) = tls_webhook().await;
    let answer = set_webhook(&emulator.base_url(), &url, None).await;
    assert_eq!(answer["ok"], true);
    assert_eq!(telegram.webhook_info()["has_custom_certificate"], false);
    telegram.private_text(&User::new(42, "Ann"), "over TLS");
    let attempts = telegram.wait_for_deliveries(1, WAIT).await.unwrap();
    let DeliveryOutcome::Failed { error, .. } = &attempts[0].outcome else {
        panic!("{attempts:?}");
    };
    assert_eq!(
        error,
        "SSL error {error:0A000086:SSL routines::certificate verify failed}"
    );
    assert_eq!(
        telegram.webhook_info()["last_error_message"],
        error.as_str()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_https_url_to_a_plain_http_server_fails_with_an_ssl_error_and_a_bad_certificate_is_refused()
 {
    let (emulator, telegram, _bot) = emulator(fast()).await;
    let (plain, _received) = common::webhook(|_| async { common::status(200) }).await;
    let url = plain.replace("http://", "https://");
    let answer = set_webhook(&emulator.base_url(), &url, Some(CERT)).await;
    assert_eq!(answer["ok"], true);
    telegram.private_text(&User::new(42, "Ann"), "hi");
    let attempts = telegram.wait_for_deliveries(1, WAIT).await.unwrap();
    let DeliveryOutcome::Failed { error, .. } = &attempts[0].outcome else {
        panic!("{attempts:?}");
    };
    assert!(error.starts_with("SSL error {error:"), "{error}");

    let refused = set_webhook(&emulator.base_url(), &url, Some(b"not a certificate")).await;
    assert_eq!(refused["error_code"], 400);
    assert_eq!(
        refused["description"],
        "Bad Request: bad webhook: Failed to set custom certificate file"
    );
}
