//! Which routes of a table a daemon owns, kept in the table's own tags so
//! that ownership survives a restart and a change of HA leader:
//! `vpcrouter:routes:OWNER` holds the owned CIDRs, space-separated, and
//! goes on in `vpcrouter:routes:OWNER:2`, `:3`, ... past the 256
//! characters of one tag value. Only tables chosen with the table flags
//! carry claims; `--owner-id` names the owner (`default`).

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};

/// The tag keys of claims start so.
pub const PREFIX: &str = "vpcrouter:routes:";
/// Longest tag value EC2 takes.
const MAX_VALUE: usize = 256;
/// Tags one owner may use on a table (EC2 allows 50 per resource; the
/// operator's own need room): about 600 IPv4 CIDRs.
pub const MAX_TAGS: usize = 40;
/// The owner when `--owner-id` is not given.
pub const DEFAULT_OWNER: &str = "default";

/// An owner's claim to routes of a table: the CIDRs it owns there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub table: String,
    pub owner: String,
    pub cidrs: BTreeSet<IpNet>,
}

impl Claim {
    /// The CIDRs `owner` holds in `tags`.
    pub fn held(tags: &BTreeMap<String, String>, owner: &str) -> BTreeSet<IpNet> {
        owners(tags).remove(owner).unwrap_or_default()
    }

    /// The tag change that makes `tags` say this claim (what fits in
    /// [`MAX_TAGS`] tags); `None` when they already do.
    pub fn change(&self, tags: &BTreeMap<String, String>) -> Option<TagChange> {
        let set = encode(&self.owner, &self.cidrs);
        let remove: Vec<String> = (tags.keys())
            .filter(|key| owner_of(key) == Some(self.owner.as_str()) && !set.contains_key(*key))
            .cloned()
            .collect();
        let set: BTreeMap<String, String> = (set.into_iter())
            .filter(|(key, value)| tags.get(key) != Some(value))
            .collect();
        (!set.is_empty() || !remove.is_empty()).then(|| TagChange {
            table: self.table.clone(),
            set,
            remove,
        })
    }

    /// What to claim before the routes are written: this claim together
    /// with what the owner holds now, so that a route is claimed before it
    /// is made and stays claimed until it is gone.
    pub fn widened(&self, tags: &BTreeMap<String, String>) -> Claim {
        Claim {
            cidrs: &self.cidrs | &Self::held(tags, &self.owner),
            ..self.clone()
        }
    }
}

/// Tags to set and tag keys to remove on a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagChange {
    pub table: String,
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl TagChange {
    pub fn apply_to(&self, tags: &mut BTreeMap<String, String>) {
        for key in &self.remove {
            tags.remove(key);
        }
        tags.extend(self.set.clone());
    }
}

/// Whose claim a tag key is, if it is one.
fn owner_of(key: &str) -> Option<&str> {
    key.strip_prefix(PREFIX)?.split(':').next()
}

/// Every owner's CIDRs in a table's tags. What does not parse is no claim.
pub fn owners(tags: &BTreeMap<String, String>) -> BTreeMap<&str, BTreeSet<IpNet>> {
    let mut owners: BTreeMap<&str, BTreeSet<IpNet>> = BTreeMap::new();
    for (key, value) in tags {
        if let Some(owner) = owner_of(key) {
            let cidrs = value.split(' ').filter_map(|c| c.parse::<IpNet>().ok());
            owners.entry(owner).or_default().extend(cidrs);
        }
    }
    owners
}

/// The tags that hold `owner`'s claim to `cidrs` (none for no CIDR); at
/// most [`MAX_TAGS`]: what does not fit is not claimed.
fn encode(owner: &str, cidrs: &BTreeSet<IpNet>) -> BTreeMap<String, String> {
    let mut values: Vec<String> = Vec::new();
    for cidr in cidrs.iter().map(ToString::to_string) {
        let fits = values
            .last()
            .is_some_and(|v| v.len() + 1 + cidr.len() <= MAX_VALUE);
        if fits {
            let value = values.last_mut().expect("a last value");
            value.push(' ');
            value.push_str(&cidr);
        } else if values.len() == MAX_TAGS {
            break;
        } else {
            values.push(cidr);
        }
    }
    (values.into_iter().enumerate())
        .map(|(i, value)| match i {
            0 => (format!("{PREFIX}{owner}"), value),
            i => (format!("{PREFIX}{owner}:{}", i + 1), value),
        })
        .collect()
}

/// An owner id: letters, digits, '.', '_' or '-', at most 64; it ends up
/// in a tag key.
pub fn parse_owner(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    match valid {
        true => Ok(text.to_string()),
        false => Err(format!(
            "{:?}: an owner id is letters, digits, '.', '_' or '-' (at most 64)",
            crate::text::clip(text, 64)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(n: u32) -> BTreeSet<IpNet> {
        (0..n)
            .map(|c| format!("10.{}.{}.0/24", c / 256, c % 256).parse().unwrap())
            .collect()
    }

    fn claim(owner: &str, n: u32) -> Claim {
        Claim {
            table: "rtb-1".into(),
            owner: owner.into(),
            cidrs: cidrs(n),
        }
    }

    #[test]
    fn claims_round_trip_through_tags_of_bounded_size() {
        let mut tags = BTreeMap::from([("vpcrouter".to_string(), "egress".to_string())]);
        for n in [1, 20, 300, 0] {
            let change = claim("a", n).change(&tags).unwrap();
            change.apply_to(&mut tags);
            assert!(tags.values().all(|v| v.len() <= MAX_VALUE));
            assert_eq!(Claim::held(&tags, "a"), cidrs(n));
            assert_eq!(tags["vpcrouter"], "egress");
            assert_eq!(claim("a", n).change(&tags), None, "written once");
        }
        assert_eq!(tags.len(), 1, "{tags:?}");
        // Another owner's claim is its own.
        claim("a", 1).change(&tags).unwrap().apply_to(&mut tags);
        claim("b", 2).change(&tags).unwrap().apply_to(&mut tags);
        assert_eq!(Claim::held(&tags, "a"), cidrs(1));
        assert_eq!(Claim::held(&tags, "b"), cidrs(2));
        // Widened: what is held stays claimed until it is let go.
        assert_eq!(claim("b", 1).widened(&tags).cidrs, cidrs(2));
        // Too many for the tags: what fits is claimed.
        let change = claim("a", 5000).change(&BTreeMap::new()).unwrap();
        assert_eq!(change.set.len(), MAX_TAGS);
    }

    #[test]
    fn owner_ids_fit_a_tag_key() {
        assert!(parse_owner("blue-1.egress_a").is_ok());
        for bad in ["", "a:b", "a b", &"x".repeat(65)] {
            assert!(parse_owner(bad).is_err(), "{bad}");
        }
    }
}
