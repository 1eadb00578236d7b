//! The client webhook deliveries go through: HTTPS with rustls, trusting what Telegram trusts
//! for a loopback bot — the certificate uploaded with setWebhook's `certificate` — and words
//! for TLS failures like those in Telegram's `getWebhookInfo.last_error_message`.

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, DigitallySignedStruct, SignatureScheme};

use crate::answer::Fail;

/// A client for one webhook. It never follows redirects (Telegram does not) and, for HTTPS,
/// trusts exactly the certificate uploaded with setWebhook's `certificate` (PEM or DER):
/// Telegram accepts a bot's self-signed certificate only when it was uploaded
/// (<https://core.telegram.org/bots/self-signed>). A loopback address can have no publicly
/// trusted certificate, so without an upload every HTTPS delivery fails with "certificate
/// verify failed", as Telegram's would for a self-signed certificate it was not given.
pub(crate) fn delivery_client(certificate: Option<&[u8]>) -> Result<reqwest::Client, Fail> {
    let bad = || Fail::bad_request("bad webhook: Failed to set custom certificate file");
    let pinned = match certificate {
        Some(bytes) if bytes.starts_with(b"-----BEGIN") => Some(
            CertificateDer::from_pem_slice(bytes)
                .map_err(|_| bad())?
                .into_owned(),
        ),
        // DER: an ASN.1 SEQUENCE (0x30) of a plausible size.
        Some(bytes) if bytes.len() > 64 && bytes[0] == 0x30 => {
            Some(CertificateDer::from(bytes.to_vec()))
        }
        Some(_) => return Err(bad()),
        None => None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        certificate: pinned,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| bad())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| bad())
}

/// Accepts the one uploaded certificate (its signature over the handshake is still checked).
#[derive(Debug)]
struct Pinned {
    certificate: Option<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.certificate {
            Some(pinned) if pinned.as_ref() == end_entity.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Telegram's words for a TLS failure (its server uses OpenSSL), if `error` is one.
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut chain = String::new();
    let mut source = Some(error);
    while let Some(e) = source {
        chain.push_str(&format!("{e:?} {e} "));
        source = e.source();
    }
    if chain.contains("InvalidCertificate")
        || chain.contains("UnknownIssuer")
        || chain.contains("certificate")
    {
        Some("SSL error {error:0A000086:SSL routines::certificate verify failed}")
    } else if chain.contains("CorruptMessage")
        || chain.contains("InvalidContentType")
        || chain.contains("received corrupt message")
    {
        Some("SSL error {error:0A00010B:SSL routines::wrong version number}")
    } else if chain.contains("rustls") || chain.contains("tls") || chain.contains("TLS") {
        Some("SSL error {error:0A000410:SSL routines::sslv3 alert handshake failure}")
    } else {
        None
    }
}
