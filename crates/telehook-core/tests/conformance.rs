//! The bare tower `Service` obeys the whole webhook contract.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use telehook_conformance::{Client, Harness, StreamingBody};
use telehook_core::Webhook;
use tower_service::Service as _;

struct TowerHarness;

struct TowerClient(Webhook);

impl Harness for TowerHarness {
    type Client = TowerClient;

    async fn serve(&self, webhook: Webhook) -> TowerClient {
        TowerClient(webhook)
    }
}

impl Client for TowerClient {
    async fn send(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        let mut service = self.0.clone();
        let response = match service.call(request.map(Full::new)).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        http::Response::from_parts(parts, body)
    }

    async fn send_streaming(
        &self,
        request: http::Request<StreamingBody>,
    ) -> Option<http::Response<Bytes>> {
        let mut service = self.0.clone();
        let response = match service.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        Some(http::Response::from_parts(parts, body))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_service_obeys_the_webhook_contract() {
    telehook_conformance::run(&TowerHarness).await;
}
