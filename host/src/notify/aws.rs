//! SNS topics and EventBridge buses as notification sinks, through the
//! daemon's own AWS clients: each batch is one SNS message (its JSON as
//! the body) or one EventBridge event (source `vpcrouter`, detail-type
//! `vpcrouter notices`, the JSON as the detail).

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sns::error::DisplayErrorContext;
use std::sync::Arc;
use std::time::Duration;

use super::sink::{Delivery, Sink};
use super::{Batch, SinkTarget};

/// The most a message or an event may hold (SNS and EventBridge both take
/// 256 KiB), with room for the envelope.
const MAX_MESSAGE: usize = 240 << 10;

/// Each attempt of a delivery within this (its tries are the queue's).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The AWS config the sinks of `region` use.
async fn config(region: Option<&str>, endpoint: Option<&str>) -> aws_config::SdkConfig {
    crate::aws::sdk_config(region, endpoint, ATTEMPT_TIMEOUT).await
}

/// The sink of an SNS or EventBridge target; `None` for a webhook (a
/// plugin). `region` is the daemon's, for a bus named without an ARN.
pub async fn sink(
    target: &SinkTarget,
    region: Option<&str>,
    endpoint: Option<&str>,
) -> Option<Arc<dyn Sink>> {
    match target {
        SinkTarget::Webhook(_) => None,
        SinkTarget::Sns { topic, region } => Some(Arc::new(SnsSink {
            client: aws_sdk_sns::Client::new(&config(Some(region), endpoint).await),
            topic: topic.clone(),
        })),
        SinkTarget::EventBridge { bus, region: own } => Some(Arc::new(EventBridgeSink {
            client: aws_sdk_eventbridge::Client::new(
                &config(own.as_deref().or(region), endpoint).await,
            ),
            bus: bus.clone(),
        })),
    }
}

struct SnsSink {
    client: aws_sdk_sns::Client,
    topic: String,
}

impl Sink for SnsSink {
    fn name(&self) -> String {
        format!("sns:{}", self.topic)
    }

    fn deliver(&self, batch: Arc<Batch>) -> Delivery<'_> {
        Box::pin(async move {
            let message = batch.json_within(MAX_MESSAGE);
            let subject = format!("vpcrouter: {} notices", batch.notices.len());
            self.client
                .publish()
                .topic_arn(&self.topic)
                .subject(subject)
                .message(message)
                .send()
                .await
                .map(drop)
                .map_err(|e| DisplayErrorContext(e).to_string())
        })
    }
}

struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl Sink for EventBridgeSink {
    fn name(&self) -> String {
        format!("eventbridge:{}", self.bus)
    }

    fn deliver(&self, batch: Arc<Batch>) -> Delivery<'_> {
        Box::pin(async move {
            let entry = PutEventsRequestEntry::builder()
                .event_bus_name(&self.bus)
                .source("vpcrouter")
                .detail_type("vpcrouter notices")
                .detail(batch.json_within(MAX_MESSAGE))
                .build();
            let put = self.client.put_events().entries(entry).send().await;
            let put = put.map_err(|e| DisplayErrorContext(e).to_string())?;
            match put.failed_entry_count() {
                0 => Ok(()),
                _ => {
                    let entry = put.entries().first();
                    Err(format!(
                        "EventBridge refused the event: {} {}",
                        entry.and_then(|e| e.error_code()).unwrap_or_default(),
                        entry.and_then(|e| e.error_message()).unwrap_or_default()
                    ))
                }
            }
        })
    }
}
