//! The SDK configuration every AWS client of the daemon starts from (EC2,
//! SQS and Auto Scaling, SNS and EventBridge, CloudWatch): the standard
//! credential chain (environment, profile, web identity, container or
//! instance role), bounded so that a slow AWS holds nothing up.

use std::time::Duration;

/// A connection takes at most this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// In `region` (else the chain's), through `endpoint` when given (moto, a
/// VPC endpoint; `AWS_ENDPOINT_URL` works too), each attempt within
/// `attempt`.
pub async fn sdk_config(
    region: Option<&str>,
    endpoint: Option<&str>,
    attempt: Duration,
) -> aws_config::SdkConfig {
    use aws_config::timeout::TimeoutConfig;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(attempt)
            .build(),
    );
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}
