//! Drains: routers taken out of service on purpose (maintenance, a Spot
//! interruption, a scale-in). A drained host is no route's target while a
//! host a probe has confirmed can take its routes; with none, its routes
//! stay (make-before-break: a drain never leaves a CIDR without a router).
//! Undraining moves nothing back (the spread is sticky).

use std::time::SystemTime;

/// Longest reason kept: it is shown in views, logs and events.
pub const MAX_REASON: usize = 256;
/// Hosts drained at once: each is a line in views and events, and in the
/// kept record of drains.
pub const MAX_DRAINS: usize = 1024;

/// Why and until when a host is drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    pub reason: String,
    pub since: SystemTime,
    /// It ends by itself then (a maintenance window); none: until undrained.
    pub until: Option<SystemTime>,
}

impl Drain {
    /// A drain asked for now, its reason checked: printable, bounded.
    pub fn new(reason: &str, until: Option<SystemTime>) -> Result<Self, String> {
        Self::made(reason, SystemTime::now(), until)
    }

    /// A drain made at `since`, as a store kept it, checked like a new one:
    /// one whose time has passed is refused.
    pub fn made(
        reason: &str,
        since: SystemTime,
        until: Option<SystemTime>,
    ) -> Result<Self, String> {
        let reason = reason.trim();
        if reason.len() > MAX_REASON {
            return Err(format!("reason: at most {MAX_REASON} bytes"));
        }
        if reason.chars().any(char::is_control) {
            return Err("reason: no control characters".into());
        }
        if until.is_some_and(|until| until <= SystemTime::now()) {
            return Err("until: that time has passed".into());
        }
        // Whole seconds, as they are shown and kept: a drain read back from
        // the store is the same drain.
        let seconds = |at: SystemTime| {
            let since_epoch = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(since_epoch.as_secs())
        };
        Ok(Self {
            reason: match reason {
                "" => "drained by the operator".into(),
                given => given.into(),
            },
            since: seconds(since),
            until: until.map(seconds),
        })
    }

    /// Whether it still holds at `now`.
    pub fn holds_at(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reasons_are_bounded_and_printable_and_times_in_the_future() {
        assert!(Drain::new(&"x".repeat(MAX_REASON + 1), None).is_err());
        assert!(Drain::new("patch\nnight", None).is_err());
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(Drain::new("", Some(past)).is_err());
        let drain = Drain::new("  ", None).unwrap();
        assert_eq!(drain.reason, "drained by the operator");
        let soon = SystemTime::now() + Duration::from_secs(60);
        let drain = Drain::new("kernel update", Some(soon)).unwrap();
        assert!(drain.holds_at(SystemTime::now()));
        assert!(!drain.holds_at(soon));
    }
}
