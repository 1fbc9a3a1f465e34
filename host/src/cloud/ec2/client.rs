//! Calls to EC2: each paced by the process-wide budget, timed, counted and
//! retried (throttling, 5xx, timeouts) with full-jitter exponential
//! backoff; EC2's errors sorted into what is retried, what is a refusal the
//! model knows, and what says nothing is known.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Ec2Vpc;
use crate::cloud::CloudError;
use crate::cloud::budget::TokenBucket;
use crate::cloud::model::RouteError;
use crate::cloud::operation::Operation;

/// Attempts per call, the first included.
const ATTEMPTS: u32 = 5;
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(2);

/// How a call ended, for the call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    /// `RequestLimitExceeded`: EC2's budget was shorter than ours.
    Throttled,
    /// 5xx, timeout, connection failure: retried.
    Failed,
    /// EC2 answered no (bad id, route exists, limit...): not retried.
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Throttled => "throttled",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }
}

/// Since when EC2 has answered every call of a class as throttled: the
/// start of the run of throttled answers no proper answer has broken. EC2
/// throttles mutating and describe calls in buckets of their own, so a
/// describe answered does not end the throttling of route changes.
#[derive(Default)]
pub(super) struct Throttling(Mutex<[Option<Instant>; 2]>);

impl Throttling {
    fn see(&self, mutating: bool, outcome: Outcome) {
        let mut runs = self.0.lock().expect("throttling lock");
        let since = &mut runs[usize::from(mutating)];
        match outcome {
            Outcome::Throttled => {
                since.get_or_insert_with(Instant::now);
            }
            // EC2 answered: its budget has room again.
            Outcome::Ok | Outcome::Refused => *since = None,
            // Nothing is known either way.
            Outcome::Failed => {}
        }
    }

    /// The older of the two classes' runs.
    pub(super) fn since(&self) -> Option<Instant> {
        let runs = self.0.lock().expect("throttling lock");
        runs.iter().flatten().min().copied()
    }
}

impl Ec2Vpc {
    /// One EC2 call, paced by `bucket`; throttling, 5xx and timeouts are
    /// retried with full-jitter exponential backoff.
    pub(super) async fn call<T, E, F, Fut>(
        &self,
        bucket: &TokenBucket,
        action: &'static str,
        send: F,
    ) -> Result<T, SdkError<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut delay = RETRY_BASE;
        let mut attempt = 1;
        loop {
            bucket.take().await;
            let sent = std::time::Instant::now();
            let result = send().await;
            let outcome = match &result {
                Ok(_) => Outcome::Ok,
                Err(e) => classify(e),
            };
            crate::metrics::global().ec2_call(action, outcome.as_str(), sent.elapsed());
            let mutating = std::ptr::eq(bucket, &self.budget.mutating);
            self.throttling.see(mutating, outcome);
            *self
                .calls
                .lock()
                .expect("calls lock")
                .entry((action, outcome))
                .or_default() += 1;
            match result {
                Err(e) if matches!(outcome, Outcome::Throttled | Outcome::Failed) => {
                    if attempt == ATTEMPTS {
                        return Err(e);
                    }
                    let pause = delay.mul_f64(fastrand::f64());
                    tracing::debug!(action, attempt, ?pause, "EC2 call retried: {}", causes(&e));
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(RETRY_CAP);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

fn classify<E: ProvideErrorMetadata>(error: &SdkError<E>) -> Outcome {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Outcome::Failed
        }
        SdkError::ServiceError(service) => {
            let code = error.code().unwrap_or_default();
            if matches!(
                code,
                "RequestLimitExceeded" | "Throttling" | "ThrottlingException"
            ) {
                Outcome::Throttled
            } else if service.raw().status().is_server_error()
                || matches!(code, "InternalError" | "ServiceUnavailable" | "Unavailable")
            {
                Outcome::Failed
            } else {
                Outcome::Refused
            }
        }
        _ => Outcome::Refused,
    }
}

/// `Action: code: message`, or the transport failure, in one line.
pub(super) fn describe_error<
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
>(
    action: &str,
    error: &SdkError<E>,
) -> String {
    match (error.code(), error.message()) {
        (Some(code), message) => format!("{action}: {code}: {}", message.unwrap_or("")),
        (None, _) => format!("{action}: {}", causes(error)),
    }
}

/// An error and its causes in one line, `a: b: c` (the SDK's errors nest
/// deep, and their outer layers say little).
pub(super) fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line: Vec<String> = Vec::new();
    for cause in std::iter::successors(Some(error), |e| e.source()) {
        let text = cause.to_string();
        if !line.iter().any(|seen| seen.contains(&text)) {
            line.push(text);
        }
    }
    line.join(": ")
}

pub(super) fn unavailable<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    action: &str,
    error: &SdkError<E>,
) -> CloudError {
    CloudError::Unavailable(describe_error(action, error))
}

/// EC2's answer to a route operation as the model's error, if it is one
/// the model knows; otherwise the API failed.
pub(super) fn route_error<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    op: &Operation,
    error: &SdkError<E>,
) -> CloudError {
    let table = op.table.clone();
    let refused = match (classify(error), error.code()) {
        (Outcome::Refused, Some("RouteAlreadyExists")) => {
            RouteError::AlreadyExists(op.destination, table)
        }
        (Outcome::Refused, Some("InvalidRoute.NotFound")) => {
            RouteError::NoSuchRoute(op.destination, table)
        }
        (Outcome::Refused, Some("InvalidRouteTableID.NotFound")) => RouteError::NoSuchTable(table),
        (Outcome::Refused, Some("InvalidNetworkInterfaceID.NotFound")) => {
            let eni = op.target.as_ref().and_then(|t| t.eni());
            RouteError::NoSuchInterface(eni.unwrap_or_default().to_string())
        }
        (Outcome::Refused, Some("RouteLimitExceeded")) => RouteError::LimitExceeded(table),
        (Outcome::Refused, Some(code)) => RouteError::Other {
            code: code.to_string(),
            message: error.message().unwrap_or_default().to_string(),
        },
        _ => return unavailable(op.action.api_call(), error),
    };
    CloudError::Refused(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_throttling_is_ended_by_an_answer_of_its_own_class() {
        let throttling = Throttling::default();
        throttling.see(true, Outcome::Throttled);
        let since = throttling.since().expect("throttled");
        throttling.see(true, Outcome::Failed);
        throttling.see(true, Outcome::Throttled);
        assert_eq!(throttling.since(), Some(since), "the run goes on");
        throttling.see(false, Outcome::Ok);
        assert_eq!(throttling.since(), Some(since), "describes answered");
        throttling.see(true, Outcome::Refused);
        assert_eq!(throttling.since(), None);
    }
}
