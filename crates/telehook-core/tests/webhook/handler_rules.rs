//! What a handler requires of the dispatcher: an error policy, acknowledging only after its run.

use std::time::Duration;

use telehook_core::{BuildError, Context, HandlerError, Update, Webhook};

use super::{ok_handler, post};

/// A handler that fails every update and only works under `Acknowledge`.
struct NeedsAcknowledge;

impl telehook_core::UpdateHandler for NeedsAcknowledge {
    async fn handle(&self, _: Update, _: Context) -> Result<(), HandlerError> {
        Err("always fails".into())
    }

    fn required_error_policy(&self) -> Option<telehook_core::ErrorPolicy> {
        Some(telehook_core::ErrorPolicy::Acknowledge)
    }
}

#[tokio::test]
async fn a_handlers_required_error_policy_applies_when_none_is_set() {
    let webhook = Webhook::builder().build(NeedsAcknowledge).unwrap();
    // Under the default (bounded retry) the first failure would be a 500.
    let response = post(&webhook, r#"{"update_id":1,"message":{"chat":{"id":1}}}"#).await;
    assert_eq!(response.status(), 200, "acknowledged on the first failure");
    // Setting the same policy explicitly is fine.
    let same = Webhook::builder()
        .error_policy(telehook_core::ErrorPolicy::Acknowledge)
        .build(NeedsAcknowledge);
    assert!(same.is_ok());
    // The erased handler (as polling and the relay hold it) says the same.
    let erased = telehook_core::ErasedHandler::new(NeedsAcknowledge);
    assert_eq!(
        erased.required_error_policy(),
        Some(telehook_core::ErrorPolicy::Acknowledge)
    );
    assert_eq!(
        telehook_core::ErasedHandler::new(ok_handler).required_error_policy(),
        None
    );
}

#[test]
fn another_error_policy_than_the_handler_requires_is_a_build_error() {
    use telehook_core::ErrorPolicy;
    let err = Webhook::builder()
        .error_policy(ErrorPolicy::Retry)
        .build(NeedsAcknowledge)
        .unwrap_err();
    assert_eq!(
        err,
        BuildError::ErrorPolicyConflict {
            configured: ErrorPolicy::Retry,
            required: ErrorPolicy::Acknowledge,
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("Retry") && text.contains("Acknowledge"),
        "{text}"
    );
    // Through an ErasedHandler too.
    let err = Webhook::builder()
        .error_policy(ErrorPolicy::default())
        .build(telehook_core::ErasedHandler::new(NeedsAcknowledge))
        .unwrap_err();
    assert!(matches!(err, BuildError::ErrorPolicyConflict { .. }));
}

/// A handler like telehook-queue's `EnqueueHandler`: its update must not be acknowledged
/// before its run ends. It waits `run_for` (paused time in the tests), then succeeds.
struct AckAfterRun {
    run_for: Duration,
}

impl telehook_core::UpdateHandler for AckAfterRun {
    async fn handle(&self, _: Update, _: Context) -> Result<(), HandlerError> {
        tokio::time::sleep(self.run_for).await;
        Ok(())
    }

    fn acknowledge_only_after_run(&self) -> bool {
        true
    }
}

#[test]
fn on_timeout_return_is_a_build_error_for_a_handler_acknowledged_only_after_its_run() {
    let handler = || AckAfterRun {
        run_for: Duration::ZERO,
    };
    let err = Webhook::builder()
        .on_timeout(telehook_core::OnTimeout::Return)
        .build(handler())
        .unwrap_err();
    assert_eq!(err, BuildError::AcknowledgeBeforeRunEnds);
    assert!(err.to_string().contains("OnTimeout::Throw"), "{err}");
    // Forwarded through the erased form too.
    let erased = telehook_core::ErasedHandler::new(handler());
    assert!(erased.acknowledge_only_after_run());
    assert_eq!(
        Webhook::builder()
            .on_timeout(telehook_core::OnTimeout::Return)
            .build(erased)
            .unwrap_err(),
        BuildError::AcknowledgeBeforeRunEnds
    );
    // Throw (the default) and a custom callback build.
    assert!(Webhook::builder().build(handler()).is_ok());
    assert!(
        Webhook::builder()
            .on_timeout(telehook_core::OnTimeout::custom(|_| {
                telehook_core::TimeoutAction::Return
            }))
            .build(handler())
            .is_ok()
    );
    // Other handlers may still return early.
    assert!(
        Webhook::builder()
            .on_timeout(telehook_core::OnTimeout::Return)
            .build(ok_handler)
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn a_custom_return_counts_as_throw_for_a_handler_acknowledged_only_after_its_run() {
    let webhook = Webhook::builder()
        .timeout(Duration::from_secs(1))
        .on_timeout(telehook_core::OnTimeout::custom(|_| {
            telehook_core::TimeoutAction::Return
        }))
        .build(AckAfterRun {
            run_for: Duration::from_secs(5),
        })
        .unwrap();
    let response = post(&webhook, r#"{"update_id":1}"#).await;
    assert_eq!(response.status(), 503);
    assert!(matches!(
        response.error(),
        Some(telehook_core::WebhookError::Timeout { update_id: 1, .. })
    ));
    // The redelivery waiting for the same run is not acknowledged early either.
    let response = post(&webhook, r#"{"update_id":1}"#).await;
    assert_eq!(response.status(), 503);
    assert!(webhook.drain(Duration::from_secs(10)).await);
}
