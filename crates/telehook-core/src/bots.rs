//! [`Bots`]: several bots behind one server, each with its own [`Webhook`] (handler, secret,
//! settings), chosen per request by a path segment or by the secret token header.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body::Body;
use subtle::ConstantTimeEq as _;

use crate::webhook::{Rejection, RequestHead, Webhook, WebhookResponse};

/// A bot [`Bots`] refused to add.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BotsError {
    /// The name is empty, longer than 64 bytes, or has a character other than
    /// `A-Z a-z 0-9 _ -` (it is a path segment).
    #[error("invalid bot name {0:?}: 1-64 characters of A-Z, a-z, 0-9, `_` and `-`")]
    InvalidName(String),
    /// Another bot already has this name.
    #[error("a bot named {0:?} already exists")]
    DuplicateName(String),
    /// Another bot already has this `secret_token`: routing by the header could not tell them
    /// apart (the secret is not repeated here).
    #[error("bot {0:?} has the same secret_token as another bot; give each bot its own")]
    DuplicateSecretToken(String),
}

/// Several bots in one server. Each bot is a [`Webhook`] with its own handler, secret and
/// settings; a request goes to exactly one of them, or is refused:
///
/// - by path ([`Bots::handle_by_name`], the name from a route such as `/bot/{name}`): an
///   unknown name gets `404`; a known one then checks its own secret (`401`);
/// - by the `X-Telegram-Bot-Api-Secret-Token` header ([`Bots::handle_by_secret_token`], one URL
///   for all): the bot whose `secret_token` equals the header gets the request, and no match
///   gets `401`. The header is compared with every bot's secret in constant time.
///
/// Either way one bot's update never reaches another bot's handler. Cheap to clone.
#[derive(Clone, Default)]
pub struct Bots {
    bots: Arc<Vec<(String, Webhook)>>,
}

impl fmt::Debug for Bots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.bots.iter().map(|(name, webhook)| (name, webhook)))
            .finish()
    }
}

impl Bots {
    /// No bots yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a bot under `name` (a path segment: 1–64 characters of `A-Z a-z 0-9 _ -`). Names
    /// and secret tokens must be unique.
    pub fn bot(mut self, name: impl Into<String>, webhook: Webhook) -> Result<Self, BotsError> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(BotsError::InvalidName(name));
        }
        if self.get(&name).is_some() {
            return Err(BotsError::DuplicateName(name));
        }
        if let Some(secret) = webhook.secret_token_bytes()
            && self
                .bots
                .iter()
                .any(|(_, other)| other.secret_token_bytes() == Some(secret))
        {
            return Err(BotsError::DuplicateSecretToken(name));
        }
        Arc::make_mut(&mut self.bots).push((name, webhook));
        Ok(self)
    }

    /// The bot named `name`.
    pub fn get(&self, name: &str) -> Option<&Webhook> {
        self.bots
            .iter()
            .find(|(bot, _)| bot == name)
            .map(|(_, webhook)| webhook)
    }

    /// The bots' names, in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.bots.iter().map(|(name, _)| name.as_str())
    }

    /// The bot whose `secret_token` equals `given`, comparing with every bot's secret in
    /// constant time (bots without a secret never match).
    pub fn by_secret_token(&self, given: Option<&[u8]>) -> Option<&Webhook> {
        let given = given?;
        let mut found = None;
        for (_, webhook) in self.bots.iter() {
            if let Some(secret) = webhook.secret_token_bytes()
                && bool::from(given.ct_eq(secret))
            {
                found = Some(webhook);
            }
        }
        found
    }

    /// Handles a request for the bot named `name` (taken from the path): `404` if there is no
    /// such bot, else exactly what that bot's [`Webhook::handle_with_extensions`] answers.
    pub fn handle_by_name<B>(
        &self,
        name: &str,
        head: RequestHead<'_>,
        extensions: http::Extensions,
        body: B,
    ) -> impl Future<Output = WebhookResponse> + use<B>
    where
        B: Body + 'static,
        B::Error: fmt::Display,
    {
        let routed = match self.get(name) {
            Some(webhook) => Ok(webhook.handle_with_extensions(head, extensions, body)),
            None => {
                tracing::warn!(bot = %name.escape_debug(), "webhook request refused: no bot of that name");
                Err(Webhook::refusal(Rejection::UnknownBot))
            }
        };
        async move {
            match routed {
                Ok(response) => response.await,
                Err(refusal) => refusal,
            }
        }
    }

    /// Handles a request for the bot whose `secret_token` equals the request's
    /// `X-Telegram-Bot-Api-Secret-Token` header: `401` if none does (or the header is
    /// missing), else exactly what that bot's [`Webhook::handle_with_extensions`] answers.
    pub fn handle_by_secret_token<B>(
        &self,
        head: RequestHead<'_>,
        extensions: http::Extensions,
        body: B,
    ) -> impl Future<Output = WebhookResponse> + use<B>
    where
        B: Body + 'static,
        B::Error: fmt::Display,
    {
        let routed = match self.by_secret_token(head.secret_token()) {
            Some(webhook) => Ok(webhook.handle_with_extensions(head, extensions, body)),
            None => {
                tracing::warn!(
                    header_present = head.secret_token().is_some(),
                    "webhook request refused: its secret token matches no bot"
                );
                Err(Webhook::refusal(Rejection::WrongSecretToken))
            }
        };
        async move {
            match routed {
                Ok(response) => response.await,
                Err(refusal) => refusal,
            }
        }
    }

    /// [`Bots::handle_by_name`] for a body already in memory.
    pub fn handle_bytes_by_name(
        &self,
        name: &str,
        head: RequestHead<'_>,
        body: Bytes,
    ) -> impl Future<Output = WebhookResponse> + use<> {
        self.handle_by_name(
            name,
            head,
            http::Extensions::new(),
            http_body_util::Full::new(body),
        )
    }
}
