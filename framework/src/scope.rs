//! Scopes: the (account, region) partitions that every service's state is split into.
//!
//! Merge strategies, filters and summaries all work scope by scope, so a scope is the unit a
//! user reasons about ("load the pod's `us-east-1` resources, keep my `eu-west-1` ones").

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The account used when a request carries no 12-digit access key id, as LocalStack does.
pub const DEFAULT_ACCOUNT: &str = "000000000000";
/// The region used when a request carries no SigV4 credential scope.
pub const DEFAULT_REGION: &str = "us-east-1";

/// One partition of a service's state: an AWS account and a region.
///
/// A resource lives in exactly one scope. Services with global resources (S3 bucket names,
/// for example) still pick one scope per resource and document which.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// Twelve-digit AWS account id.
    pub account: String,
    /// AWS region name such as `us-east-1`.
    pub region: String,
}

impl Scope {
    /// Builds a scope; no validation, because state restored from old bundles must load as is.
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            region: region.into(),
        }
    }
}

impl Default for Scope {
    fn default() -> Self {
        Self::new(DEFAULT_ACCOUNT, DEFAULT_REGION)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// Selects scopes for capture: empty sets mean "any", so the default selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeFilter {
    /// Accounts to keep; empty keeps every account.
    #[serde(default)]
    pub accounts: BTreeSet<String>,
    /// Regions to keep; empty keeps every region.
    #[serde(default)]
    pub regions: BTreeSet<String>,
}

impl ScopeFilter {
    /// The filter that keeps every scope.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether this filter keeps everything, which lets captures skip the filtering pass.
    pub fn is_all(&self) -> bool {
        self.accounts.is_empty() && self.regions.is_empty()
    }

    /// Whether `scope` passes the filter.
    pub fn matches(&self, scope: &Scope) -> bool {
        (self.accounts.is_empty() || self.accounts.contains(&scope.account))
            && (self.regions.is_empty() || self.regions.contains(&scope.region))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filter_keeps_every_scope() {
        assert!(ScopeFilter::all().matches(&Scope::new("1", "x")));
    }

    #[test]
    fn filter_keeps_only_named_accounts_and_regions() {
        let f = ScopeFilter {
            accounts: ["111111111111".to_string()].into(),
            regions: ["eu-west-1".to_string()].into(),
        };
        assert!(f.matches(&Scope::new("111111111111", "eu-west-1")));
        assert!(!f.matches(&Scope::new("111111111111", "us-east-1")));
        assert!(!f.matches(&Scope::new("222222222222", "eu-west-1")));
    }
}
