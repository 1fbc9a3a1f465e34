//! Which route tables the daemon manages: chosen by id, by tag, or the
//! VPC's main table (`--route-table`, `--route-table-tag`,
//! `--main-route-table`). With none chosen, the old rule: the tables of the
//! subnets where the spec's routers live.

use std::fmt;

use crate::cloud::model::RouteTable;

/// Longest table id or tag key/value accepted (EC2's tag values are at
/// most 256 characters).
const MAX_TEXT: usize = 256;

/// One way of choosing route tables.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableSelector {
    /// `rtb-...`: this table.
    Id(String),
    /// `tag:KEY=VALUE`: every table of the VPC carrying the tag.
    Tag { key: String, value: String },
    /// `main`: the VPC's main table.
    Main,
}

impl TableSelector {
    /// `rtb-0abc`, `tag:KEY=VALUE` or `main`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "main" {
            return Ok(TableSelector::Main);
        }
        if let Some(tag) = text.strip_prefix("tag:") {
            return Self::tag(tag);
        }
        Self::id(text).map_err(|e| format!("{e}, tag:KEY=VALUE or main"))
    }

    /// A route table id: `rtb-` and hex digits, as EC2 makes them.
    pub fn id(text: &str) -> Result<Self, String> {
        let valid = text.strip_prefix("rtb-").is_some_and(|hex| {
            !hex.is_empty() && hex.len() <= 32 && hex.chars().all(|c| c.is_ascii_alphanumeric())
        });
        match valid {
            true => Ok(TableSelector::Id(text.to_string())),
            false => Err(format!(
                "{:?} is not a route table id (rtb-...)",
                crate::text::clip(text, 64)
            )),
        }
    }

    /// `KEY=VALUE`; the value may be empty, the key may not.
    pub fn tag(text: &str) -> Result<Self, String> {
        let (key, value) = text
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| format!("{:?}: a tag is KEY=VALUE", crate::text::clip(text, 64)))?;
        if key.len() > MAX_TEXT || value.len() > MAX_TEXT {
            return Err(format!(
                "tag {key:.64}: keys and values are at most {MAX_TEXT} bytes"
            ));
        }
        Ok(TableSelector::Tag {
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    pub fn matches(&self, table: &RouteTable) -> bool {
        match self {
            TableSelector::Id(id) => table.id == *id,
            TableSelector::Tag { key, value } => table.tags.get(key) == Some(value),
            TableSelector::Main => table.main,
        }
    }
}

impl fmt::Display for TableSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableSelector::Id(id) => write!(f, "{id}"),
            TableSelector::Tag { key, value } => write!(f, "tag:{key}={value}"),
            TableSelector::Main => write!(f, "main"),
        }
    }
}

/// Why a table is managed, as the views say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// The old rule: a spec router lives in a subnet the table serves.
    RouterSubnet,
    By(TableSelector),
}

impl fmt::Display for Selected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selected::RouterSubnet => write!(f, "a router's subnet"),
            Selected::By(TableSelector::Id(_)) => write!(f, "selected by id"),
            Selected::By(TableSelector::Main) => write!(f, "the main table"),
            Selected::By(tag) => write!(f, "selected by {tag}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_parsed_strictly() {
        assert_eq!(
            TableSelector::parse("rtb-0a1b").unwrap(),
            TableSelector::Id("rtb-0a1b".into())
        );
        assert_eq!(TableSelector::parse("main").unwrap(), TableSelector::Main);
        assert_eq!(
            TableSelector::parse("tag:vpcrouter=egress").unwrap(),
            TableSelector::Tag {
                key: "vpcrouter".into(),
                value: "egress".into()
            }
        );
        assert_eq!(
            TableSelector::parse("tag:role=").unwrap().to_string(),
            "tag:role="
        );
        for bad in [
            "",
            "rtb-",
            "igw-1",
            "rtb-a b",
            "tag:",
            "tag:=x",
            "tag:novalue",
            "Main",
        ] {
            assert!(TableSelector::parse(bad).is_err(), "{bad}");
        }
        let long = format!("tag:k={}", "v".repeat(300));
        assert!(TableSelector::parse(&long).is_err());
    }
}
