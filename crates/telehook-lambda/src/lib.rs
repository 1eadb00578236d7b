#![doc = include_str!("../README.md")]

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use lambda_http::{Body, Request, RequestExt as _, Response};
use telehook_core::{InvocationDeadline, OnTimeout, RequestHead, Webhook};

/// Default [`LambdaConfig::safety_margin`]: 500 ms.
pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_millis(500);

/// Why [`run`] refused to start, or the Lambda runtime stopped.
///
/// `Debug` prints the full explanation (the `Display` text and its causes), so
/// `fn main() -> Result<(), LambdaError>` and `Result<(), Box<dyn Error>>` show the reason,
/// not only the variant's name.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum LambdaError {
    /// `OnTimeout::Return` answers before the handler ends, and Lambda freezes the instance as
    /// soon as the response is sent: the rest of the handler would not run.
    #[error(
        "on_timeout = Return cannot work on AWS Lambda: the instance is frozen once the response is sent, \
         so the handler would stop half-way; use OnTimeout::Throw (the default) and a timeout below the function's own"
    )]
    ReturnOnTimeout,
    /// The process is not running on AWS Lambda: the variables Lambda's Runtime API sets for
    /// a function ([`RUNTIME_ENVIRONMENT`]) are missing, so there is no runtime to take
    /// invocations from.
    #[error(
        "not running on AWS Lambda: {} not set (Lambda sets them for a function). \
         To run the function on this machine, use `cargo lambda watch` (it emulates the Lambda Runtime API; \
         send it events with `cargo lambda invoke`); to test the handler without it, call telehook_lambda::handle \
         with a fixture event; to run it on AWS, `cargo lambda deploy`",
        missing.join(", ")
    )]
    NotOnLambda {
        /// The variables that are not set.
        missing: Vec<&'static str>,
    },
    /// A variable of the Lambda environment is set to a value the runtime cannot read.
    #[error("{name}={value:?} is not a valid value for a Lambda function's environment")]
    InvalidEnvironment {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The Lambda runtime failed.
    #[error("the Lambda runtime failed")]
    Runtime(#[source] lambda_http::Error),
}

impl fmt::Debug for LambdaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // What `main` returning `Err` prints after "Error: ": the reason, not a variant name.
        let variant = match self {
            Self::ReturnOnTimeout => "ReturnOnTimeout",
            Self::NotOnLambda { .. } => "NotOnLambda",
            Self::InvalidEnvironment { .. } => "InvalidEnvironment",
            Self::Runtime(_) => "Runtime",
        };
        write!(f, "{self} [LambdaError::{variant}]")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The invocation being handled, for the handler: read it with
/// `ctx.extension::<telehook_lambda::Invocation>()` to log the request id or budget the work.
/// (The runtime's full `lambda_http::Context` is there too, as `ctx.extension::<lambda_http::Context>()`.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Invocation {
    /// Lambda's request id of this invocation (`Lambda-Runtime-Aws-Request-Id`).
    pub request_id: String,
    /// When Lambda ends the invocation (`Lambda-Runtime-Deadline-Ms`).
    pub deadline: SystemTime,
    /// The same instant on the monotonic clock, if it is still ahead.
    pub deadline_instant: Option<Instant>,
    /// The function's ARN as invoked (`Lambda-Runtime-Invoked-Function-Arn`).
    pub invoked_function_arn: String,
}

/// The environment variables Lambda's Runtime API sets for a function and the Lambda runtime
/// needs: [`run`] checks them before starting it.
pub const RUNTIME_ENVIRONMENT: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// Checks the Lambda environment `var` reads, as the runtime would at start (it panics on a
/// missing or malformed one): all of [`RUNTIME_ENVIRONMENT`] set, and the memory size a number.
fn check_environment(var: impl Fn(&str) -> Option<String>) -> Result<(), LambdaError> {
    let missing: Vec<&'static str> = RUNTIME_ENVIRONMENT
        .into_iter()
        .filter(|name| var(name).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(LambdaError::NotOnLambda { missing });
    }
    let name = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
    match var(name) {
        Some(value) if value.parse::<i32>().is_err() => {
            Err(LambdaError::InvalidEnvironment { name, value })
        }
        _ => Ok(()),
    }
}

/// How [`run_with`] adapts the webhook to Lambda.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LambdaConfig {
    /// Time kept between telehook's answer and the invocation's deadline, for the response to
    /// leave: the effective handler timeout is `min(timeout, deadline − now − safety_margin)`.
    /// Default [`DEFAULT_SAFETY_MARGIN`] (500 ms).
    pub safety_margin: Duration,
}

impl Default for LambdaConfig {
    fn default() -> Self {
        Self {
            safety_margin: DEFAULT_SAFETY_MARGIN,
        }
    }
}

impl LambdaConfig {
    /// Sets [`LambdaConfig::safety_margin`].
    #[must_use]
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.safety_margin = margin;
        self
    }
}

/// Serves `webhook` as this Lambda function's handler, behind a Function URL, API Gateway
/// (REST v1 or HTTP v2) or an Application Load Balancer, with [`LambdaConfig::default`].
///
/// Refuses [`OnTimeout::Return`] before starting (the runtime is not started, so nothing
/// waits), and returns [`LambdaError::NotOnLambda`] outside Lambda (run it locally under
/// `cargo lambda watch`, which provides the Runtime API). An [`OnTimeout::Custom`] callback must not choose `Return` either (it cannot be
/// checked in advance).
pub async fn run(webhook: Webhook) -> Result<(), LambdaError> {
    run_with(webhook, LambdaConfig::default()).await
}

/// [`run`] with a configuration.
///
/// Invocations run concurrently on one instance when Lambda asks for it
/// (`AWS_LAMBDA_MAX_CONCURRENCY` > 1, Lambda Managed Instances; the dispatcher and its
/// redelivery guard are made for concurrent deliveries), one at a time otherwise.
pub async fn run_with(webhook: Webhook, config: LambdaConfig) -> Result<(), LambdaError> {
    if matches!(webhook.on_timeout(), OnTimeout::Return) {
        return Err(LambdaError::ReturnOnTimeout);
    }
    check_environment(|name| std::env::var(name).ok())?;
    lambda_http::run_concurrent(lambda_http::service_fn(move |request: Request| {
        let webhook = webhook.clone();
        let config = config.clone();
        async move {
            Ok::<_, std::convert::Infallible>(handle_with(&webhook, request, &config).await)
        }
    }))
    .await
    .map_err(LambdaError::Runtime)
}

/// Handles one Lambda HTTP request (base64 bodies are already decoded by `lambda_http`) with
/// [`LambdaConfig::default`].
pub async fn handle(webhook: &Webhook, request: Request) -> Response<Body> {
    handle_with(webhook, request, &LambdaConfig::default()).await
}

/// Handles one Lambda HTTP request. If the request carries the runtime's context (as under
/// [`run`]), the handler's timeout ends `safety_margin` before the invocation's deadline, and
/// the handler sees the [`Invocation`].
pub async fn handle_with(
    webhook: &Webhook,
    request: Request,
    config: &LambdaConfig,
) -> Response<Body> {
    let invocation = request.lambda_context_ref().map(|context| {
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(context.deadline);
        let deadline_instant = deadline
            .duration_since(SystemTime::now())
            .ok()
            .map(|left| Instant::now() + left);
        Invocation {
            request_id: context.request_id.clone(),
            deadline,
            deadline_instant,
            invoked_function_arn: context.invoked_function_arn.clone(),
        }
    });
    let peer = source_ip(&request);
    let (mut parts, body) = request.into_parts();
    if let Some(peer) = peer
        && parts.extensions.get::<telehook_core::PeerAddr>().is_none()
    {
        parts.extensions.insert(telehook_core::PeerAddr(peer));
    }
    if let Some(invocation) = invocation {
        // Already past the deadline (or within the margin): answer at once.
        let now = Instant::now();
        let until = invocation
            .deadline_instant
            .and_then(|deadline| deadline.checked_sub(config.safety_margin))
            .filter(|until| *until > now)
            .unwrap_or(now);
        parts.extensions.insert(InvocationDeadline(until));
        parts.extensions.insert(invocation);
    }
    let head = RequestHead::from_http(&parts.method, &parts.headers);
    let response = webhook
        .handle_with_extensions(head, parts.extensions, body)
        .await;
    let (status, headers, body, _error) = response.into_parts();
    let body = if body.is_empty() {
        Body::Empty
    } else {
        // The dispatcher answers JSON or plain text: both UTF-8.
        match String::from_utf8(body.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// The caller's address as API Gateway reports it (`requestContext.identity.sourceIp` for REST
/// APIs, `requestContext.http.sourceIp` for HTTP APIs and Function URLs), for a
/// `SourceAllowlist`: the gateway is the direct peer and it reports the client it saw (port 0,
/// unknown). ALB events carry no source address (only the `X-Forwarded-For` the load balancer
/// appends, with no peer to trust it by), so an allowlist refuses every ALB request.
fn source_ip(request: &Request) -> Option<std::net::SocketAddr> {
    use lambda_http::request::RequestContext;
    let ip = match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.as_deref(),
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref(),
        _ => None,
    }?;
    let ip: std::net::IpAddr = ip.trim().parse().ok()?;
    Some(std::net::SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.clone())
        }
    }

    const ON_LAMBDA: [(&str, &str); 4] = [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_FUNCTION_NAME", "bot"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ];

    #[test]
    fn the_lambda_environment_passes() {
        assert!(check_environment(environment(&ON_LAMBDA)).is_ok());
    }

    #[test]
    fn outside_lambda_the_error_names_what_is_missing_and_what_to_do() {
        let error = check_environment(environment(&[])).unwrap_err();
        let LambdaError::NotOnLambda { missing } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(missing.as_slice(), RUNTIME_ENVIRONMENT.as_slice());
        let text = error.to_string();
        assert!(text.starts_with("not running on AWS Lambda"), "{text}");
        assert!(text.contains("AWS_LAMBDA_RUNTIME_API"), "{text}");
        assert!(text.contains("cargo lambda watch"), "{text}");

        let error = check_environment(environment(&ON_LAMBDA[1..])).unwrap_err();
        assert!(
            matches!(&error, LambdaError::NotOnLambda { missing } if missing == &["AWS_LAMBDA_RUNTIME_API"]),
            "{error:?}"
        );
    }

    #[test]
    fn a_memory_size_that_is_not_a_number_is_refused() {
        let mut vars = ON_LAMBDA;
        vars[2].1 = "lots";
        let error = check_environment(environment(&vars)).unwrap_err();
        assert!(
            matches!(&error, LambdaError::InvalidEnvironment { name: "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", value } if value == "lots"),
            "{error:?}"
        );
    }
}
