//! What a CIDR may say beyond its hosts and tables: where its routes go
//! when none of its routers is eligible (`fallback`), and each router's
//! priority tier and weight.

use std::fmt;

/// Tiers run from 1 (first choice) to this.
pub const MAX_TIER: u32 = 9;
/// Weights run from 1 (the default) to this.
pub const MAX_WEIGHT: u32 = 100;

/// The gateways a route may fall back to, by id prefix.
const GATEWAY_KINDS: [(&str, &str); 4] = [
    ("nat-", "NAT gateway"),
    ("tgw-", "transit gateway"),
    ("igw-", "internet gateway"),
    ("pcx-", "peering connection"),
];

/// Where a CIDR's routes go while none of its routers is eligible.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fallback {
    /// A NAT gateway, transit gateway, internet gateway or peering
    /// connection, by id.
    Gateway(String),
    /// No route at all: a wider route of the same table takes the traffic.
    Withdraw,
}

impl Fallback {
    /// `withdraw`, or a gateway id (`nat-0123abcd`, `tgw-...`, `igw-...`,
    /// `pcx-...`; 8 or 17 hex digits after the prefix).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "withdraw" {
            return Ok(Fallback::Withdraw);
        }
        let shown = crate::text::clip(text, 64);
        let Some((prefix, _)) = GATEWAY_KINDS.iter().find(|(p, _)| text.starts_with(p)) else {
            return Err(format!(
                "fallback {shown:?} is not a NAT gateway (nat-...), transit gateway (tgw-...), internet gateway (igw-...), peering connection (pcx-...) or \"withdraw\""
            ));
        };
        let digits = &text[prefix.len()..];
        let hex = digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex || !(digits.len() == 8 || digits.len() == 17) {
            return Err(format!(
                "fallback {shown:?}: expected {prefix} followed by 8 or 17 hex digits"
            ));
        }
        Ok(Fallback::Gateway(text.to_string()))
    }

    /// The gateway routes point at, unless withdrawn.
    pub fn gateway(&self) -> Option<&str> {
        match self {
            Fallback::Gateway(id) => Some(id),
            Fallback::Withdraw => None,
        }
    }

    /// What the gateway is, for messages: `NAT gateway`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fallback::Withdraw => "withdrawal",
            Fallback::Gateway(id) => GATEWAY_KINDS
                .iter()
                .find(|(p, _)| id.starts_with(p))
                .map_or("gateway", |(_, kind)| kind),
        }
    }
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::Gateway(id) => f.write_str(id),
            Fallback::Withdraw => f.write_str("withdraw"),
        }
    }
}

/// A router's standing for one CIDR: the planner uses the first tier
/// with an eligible router, and spreads CIDRs within it by weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Preference {
    /// 1 is the first choice.
    pub tier: u32,
    /// A router of weight 4 carries about four times the CIDRs of one of
    /// weight 1.
    pub weight: u32,
}

impl Default for Preference {
    fn default() -> Self {
        Self { tier: 1, weight: 1 }
    }
}

impl Preference {
    pub fn new(tier: u32, weight: u32) -> Result<Self, String> {
        if !(1..=MAX_TIER).contains(&tier) {
            return Err(format!("tier {tier} is out of range (1 to {MAX_TIER})"));
        }
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(format!(
                "weight {weight} is out of range (1 to {MAX_WEIGHT})"
            ));
        }
        Ok(Self { tier, weight })
    }
}

/// One CIDR's options as a source gave them, checked with the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteOptions {
    pub cidr: String,
    pub fallback: Option<String>,
    /// (host, tier, weight) for hosts of the CIDR that are not tier 1,
    /// weight 1.
    pub hosts: Vec<(String, u32, u32)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks_are_gateways_or_withdraw() {
        for good in [
            "withdraw",
            "nat-0123abcd",
            "nat-0123456789abcdef0",
            "tgw-0123abcd",
            "igw-0123abcd",
            "pcx-0123abcd",
        ] {
            assert_eq!(Fallback::parse(good).unwrap().to_string(), good);
        }
        for (bad, says) in [
            ("eni-0123abcd", "is not a NAT gateway"),
            ("nat-", "8 or 17 hex digits"),
            ("nat-0123ABCD", "8 or 17 hex digits"),
            ("nat-0123abcdx", "8 or 17 hex digits"),
            ("Withdraw", "is not a NAT gateway"),
            ("", "is not a NAT gateway"),
        ] {
            let err = Fallback::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(Fallback::parse(&"nat-".repeat(10_000)).unwrap_err().len() < 300);
        assert_eq!(
            Fallback::parse("tgw-0123abcd").unwrap().kind(),
            "transit gateway"
        );
    }

    #[test]
    fn tiers_and_weights_are_bounded() {
        assert_eq!(Preference::new(1, 1).unwrap(), Preference::default());
        assert!(Preference::new(0, 1).unwrap_err().contains("tier 0"));
        assert!(Preference::new(10, 1).unwrap_err().contains("tier 10"));
        assert!(Preference::new(1, 0).unwrap_err().contains("weight 0"));
        assert!(Preference::new(1, 101).unwrap_err().contains("weight 101"));
    }
}
