//! `impl tower::Service<http::Request<B>>` for [`Webhook`], so any tower-based server (axum,
//! hyper with `hyper-util`, `lambda_http`) can mount the dispatcher directly.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body;
use http_body_util::Full;

use crate::webhook::{RequestHead, Webhook};

impl<B> tower_service::Service<http::Request<B>> for Webhook
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: fmt::Display,
{
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let head = RequestHead::from_http(&parts.method, &parts.headers);
        let response = self.handle_with_extensions(head, parts.extensions, body);
        Box::pin(async move { Ok(response.await.into_http()) })
    }
}
