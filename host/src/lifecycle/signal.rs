//! The messages of the events queue, read as what they say about an
//! instance: EventBridge's EC2 events (Spot interruption warning, rebalance
//! recommendation, state change) and Auto Scaling's terminate lifecycle
//! action, as EventBridge delivers it or as a lifecycle hook's own
//! notification. Everything in a message is checked before it is used: a
//! message that is too big, not JSON, of another kind or with a field that
//! is not what AWS sends is [`Unusable`], never half-read.

use serde_json::Value;
use std::time::SystemTime;

/// Largest message body read (SQS allows 1 MiB; AWS's events are < 2 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// What a message says is about to happen to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// EC2 will stop, hibernate or terminate a Spot instance at `at`
    /// (about two minutes after the warning).
    SpotInterruption {
        instance: String,
        action: String,
        at: Option<SystemTime>,
    },
    /// A Spot instance is at elevated risk of interruption.
    RebalanceRecommendation { instance: String },
    /// The instance entered `state` (`stopping`, `running`, ...).
    StateChange { instance: String, state: String },
    /// Auto Scaling waits on a lifecycle hook before terminating it.
    Terminating(LifecycleAction),
}

/// An Auto Scaling lifecycle action to complete once no route needs the
/// instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAction {
    pub instance: String,
    pub group: String,
    pub hook: String,
    pub token: String,
}

impl Signal {
    pub fn instance(&self) -> &str {
        match self {
            Self::SpotInterruption { instance, .. }
            | Self::RebalanceRecommendation { instance }
            | Self::StateChange { instance, .. } => instance,
            Self::Terminating(action) => &action.instance,
        }
    }
}

/// Why a message was not used (it is deleted: it would never read better).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

fn unusable(why: impl Into<String>) -> Unusable {
    Unusable(why.into())
}

/// What `body` says, or why it cannot be used.
pub fn read(body: &str) -> Result<Signal, Unusable> {
    if body.len() > MAX_BODY {
        return Err(unusable(format!(
            "{} bytes, more than {MAX_BODY}",
            body.len()
        )));
    }
    let message: Value =
        serde_json::from_str(body).map_err(|e| unusable(format!("not JSON: {e}")))?;
    if message.get("detail-type").is_some() {
        return eventbridge(&message);
    }
    if message.get("LifecycleTransition").is_some() || message.get("Event").is_some() {
        return hook_notification(&message);
    }
    Err(unusable(
        "neither an EventBridge event nor an Auto Scaling notification",
    ))
}

/// An EventBridge event: `detail-type`, `source` and `detail`.
fn eventbridge(event: &Value) -> Result<Signal, Unusable> {
    let kind = text(event, "detail-type", 128)?;
    let source = text(event, "source", 64)?;
    let detail = event
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| unusable("no detail object"))?;
    match (source, kind) {
        ("aws.ec2", "EC2 Spot Instance Interruption Warning") => Ok(Signal::SpotInterruption {
            instance: instance_id(text(detail, "instance-id", 32)?)?,
            action: word(text(detail, "instance-action", 32)?)?,
            // The action comes two minutes after the event's time.
            at: (event.get("time").and_then(Value::as_str))
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .map(|t| t + std::time::Duration::from_secs(120)),
        }),
        ("aws.ec2", "EC2 Instance Rebalance Recommendation") => {
            Ok(Signal::RebalanceRecommendation {
                instance: instance_id(text(detail, "instance-id", 32)?)?,
            })
        }
        ("aws.ec2", "EC2 Instance State-change Notification") => Ok(Signal::StateChange {
            instance: instance_id(text(detail, "instance-id", 32)?)?,
            state: state(text(detail, "state", 32)?)?,
        }),
        ("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action") => {
            lifecycle_action(detail, "EC2InstanceId")
        }
        (source, kind) => Err(unusable(format!(
            "an event vpcrouter does not act on: {:?} from {:?}",
            crate::text::clip(kind, 64),
            crate::text::clip(source, 32)
        ))),
    }
}

/// A lifecycle hook's own notification (hook -> SQS, no EventBridge).
fn hook_notification(message: &Value) -> Result<Signal, Unusable> {
    if message.get("Event").and_then(Value::as_str) == Some("autoscaling:TEST_NOTIFICATION") {
        return Err(unusable("Auto Scaling's test notification"));
    }
    lifecycle_action(message, "EC2InstanceId")
}

fn lifecycle_action(fields: &Value, instance_key: &str) -> Result<Signal, Unusable> {
    let transition = text(fields, "LifecycleTransition", 64)?;
    if transition != "autoscaling:EC2_INSTANCE_TERMINATING" {
        return Err(unusable(format!(
            "a lifecycle transition vpcrouter does not act on: {transition}"
        )));
    }
    Ok(Signal::Terminating(LifecycleAction {
        instance: instance_id(text(fields, instance_key, 32)?)?,
        group: name(text(fields, "AutoScalingGroupName", 255)?)?,
        hook: name(text(fields, "LifecycleHookName", 255)?)?,
        token: token(text(fields, "LifecycleActionToken", 64)?)?,
    }))
}

/// The string field `key`, at most `max` bytes.
fn text<'v>(object: &'v Value, key: &str, max: usize) -> Result<&'v str, Unusable> {
    let value = object
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| unusable(format!("no {key}")))?;
    match value.len() <= max {
        true => Ok(value),
        false => Err(unusable(format!("{key}: longer than {max} bytes"))),
    }
}

/// `i-` and 8 or 17 hexadecimal digits.
fn instance_id(id: &str) -> Result<String, Unusable> {
    let digits = id.strip_prefix("i-").unwrap_or_default();
    let valid = matches!(digits.len(), 8 | 17) && digits.bytes().all(|b| b.is_ascii_hexdigit());
    match valid {
        true => Ok(id.to_string()),
        false => Err(unusable(format!(
            "{:?} is not an instance id",
            crate::text::clip(id, 32)
        ))),
    }
}

fn word(value: &str) -> Result<String, Unusable> {
    match !value.is_empty() && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
        true => Ok(value.to_string()),
        false => Err(unusable(format!(
            "{:?} is not an action",
            crate::text::clip(value, 32)
        ))),
    }
}

fn state(value: &str) -> Result<String, Unusable> {
    const STATES: [&str; 6] = [
        "pending",
        "running",
        "stopping",
        "stopped",
        "shutting-down",
        "terminated",
    ];
    match STATES.contains(&value) {
        true => Ok(value.to_string()),
        false => Err(unusable(format!(
            "{:?} is not an instance state",
            crate::text::clip(value, 32)
        ))),
    }
}

/// An Auto Scaling group or hook name: printable, no control characters.
fn name(value: &str) -> Result<String, Unusable> {
    match !value.is_empty() && !value.chars().any(char::is_control) {
        true => Ok(value.to_string()),
        false => Err(unusable("a group or hook name that is not one")),
    }
}

/// A lifecycle action token: a UUID.
fn token(value: &str) -> Result<String, Unusable> {
    match !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        true => Ok(value.to_string()),
        false => Err(unusable("a lifecycle action token that is not one")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const I: &str = "i-0123456789abcdef0";

    fn event(source: &str, kind: &str, detail: Value) -> String {
        json!({
            "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": kind, "source": source, "account": "123456789012",
            "time": "2026-12-03T10:00:00Z", "region": "us-east-1",
            "resources": [format!("arn:aws:ec2:us-east-1:123456789012:instance/{I}")],
            "detail": detail,
        })
        .to_string()
    }

    fn terminating() -> Value {
        json!({
            "LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
            "AutoScalingGroupName": "nat-routers", "LifecycleHookName": "drain-first",
            "EC2InstanceId": I, "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        })
    }

    #[test]
    fn aws_events_read_as_signals() {
        let spot = event(
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            json!({"instance-id": I, "instance-action": "terminate"}),
        );
        let Ok(Signal::SpotInterruption {
            instance,
            action,
            at,
        }) = read(&spot)
        else {
            panic!("{:?}", read(&spot));
        };
        assert_eq!((instance.as_str(), action.as_str()), (I, "terminate"));
        assert_eq!(at, humantime::parse_rfc3339("2026-12-03T10:02:00Z").ok());
        let kind = "EC2 Instance Rebalance Recommendation";
        let rebalance = event("aws.ec2", kind, json!({"instance-id": I}));
        assert_eq!(
            read(&rebalance),
            Ok(Signal::RebalanceRecommendation { instance: I.into() })
        );
        let kind = "EC2 Instance State-change Notification";
        let stopping = event(
            "aws.ec2",
            kind,
            json!({"instance-id": I, "state": "stopping"}),
        );
        let expected = Signal::StateChange {
            instance: I.into(),
            state: "stopping".into(),
        };
        assert_eq!(read(&stopping), Ok(expected));
        let kind = "EC2 Instance-terminate Lifecycle Action";
        let asg = event("aws.autoscaling", kind, terminating());
        let Ok(Signal::Terminating(action)) = read(&asg) else {
            panic!("{:?}", read(&asg))
        };
        assert_eq!(
            (action.group.as_str(), action.hook.as_str()),
            ("nat-routers", "drain-first")
        );
        // The hook's own notification carries the same fields at the top.
        assert_eq!(
            read(&terminating().to_string()),
            Ok(Signal::Terminating(action))
        );
    }

    #[test]
    fn hostile_and_foreign_messages_are_unusable() {
        let kind = "EC2 Instance State-change Notification";
        let long_group = json!({"AutoScalingGroupName": "g".repeat(300)});
        let mut bad_group = terminating();
        bad_group
            .as_object_mut()
            .unwrap()
            .extend(long_group.as_object().unwrap().clone());
        let mut launching = terminating();
        launching["LifecycleTransition"] = json!("autoscaling:EC2_INSTANCE_LAUNCHING");
        let mut bad_token = terminating();
        bad_token["LifecycleActionToken"] = json!("a b");
        for (message, says) in [
            ("x".repeat(MAX_BODY + 1), "more than"),
            ("{".to_string(), "not JSON"),
            ("[1, 2]".to_string(), "neither"),
            (json!({"hello": "world"}).to_string(), "neither"),
            (
                event("aws.ec2", "EC2 AMI State Change", json!({})),
                "does not act on",
            ),
            (
                event(
                    "my.app",
                    "EC2 Spot Instance Interruption Warning",
                    json!({}),
                ),
                "does not act on",
            ),
            (
                event(
                    "aws.ec2",
                    kind,
                    json!({"instance-id": "i-zz", "state": "stopping"}),
                ),
                "not an instance id",
            ),
            (
                event(
                    "aws.ec2",
                    kind,
                    json!({"instance-id": I, "state": "exploded"}),
                ),
                "not an instance state",
            ),
            (
                event(
                    "aws.ec2",
                    kind,
                    json!({"instance-id": 7, "state": "stopping"}),
                ),
                "no instance-id",
            ),
            (event("aws.ec2", kind, json!("detail")), "no detail"),
            (bad_group.to_string(), "longer than 255"),
            (launching.to_string(), "does not act on"),
            (bad_token.to_string(), "token"),
            (
                json!({"Event": "autoscaling:TEST_NOTIFICATION"}).to_string(),
                "test notification",
            ),
        ] {
            let why = read(&message).expect_err(&message);
            assert!(why.0.contains(says), "{message:.80}: {why}");
        }
    }
}
