//! The IAM state: one account's users, groups, roles, managed policies, access keys and
//! instance profiles, kept in the scope (account, `us-east-1`).

use std::collections::{BTreeMap, BTreeSet};

use cryopod::{ResourceCounts, Resources, Scoped, ScopedState};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

/// Tags in the order they were added (AWS lists them so).
pub type Tags = Vec<(String, String)>;

/// The policies of a user, group or role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    /// Inline policies: name → document, as sent.
    pub inline: BTreeMap<String, String>,
    /// Attached managed policies, by ARN, in attachment order.
    pub attached: Vec<String>,
}

/// An IAM user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// `/` or `/a/b/`.
    pub path: String,
    /// Unique id (`AIDA…`).
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
    /// Tags.
    pub tags: Tags,
    /// Permissions boundary policy ARN.
    pub boundary: Option<String>,
    /// Inline and attached policies.
    pub policies: Policies,
    /// Groups the user belongs to.
    pub groups: BTreeSet<String>,
    /// The console login profile; passwords themselves are not kept.
    pub login_profile: Option<LoginProfile>,
}

/// A user's console login profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginProfile {
    /// Seconds since the Unix epoch.
    pub created: i64,
    /// Whether the user must set a new password at next sign-in.
    pub password_reset_required: bool,
}

/// An IAM group; its members are recorded on the users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Path.
    pub path: String,
    /// Unique id (`AGPA…`).
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
    /// Inline and attached policies.
    pub policies: Policies,
}

/// An IAM role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Path.
    pub path: String,
    /// Unique id (`AROA…`).
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
    /// The trust policy, as sent.
    pub trust_policy: String,
    /// Description.
    pub description: Option<String>,
    /// Longest session of an assumed role, seconds.
    pub max_session_duration: i64,
    /// Tags.
    pub tags: Tags,
    /// Permissions boundary policy ARN.
    pub boundary: Option<String>,
    /// Inline and attached policies.
    pub policies: Policies,
}

/// One version of a managed policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// The document, as sent.
    pub document: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

/// A customer managed policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedPolicy {
    /// Name.
    pub name: String,
    /// Path.
    pub path: String,
    /// Unique id (`ANPA…`).
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
    /// Last change of the default version.
    pub updated: i64,
    /// Description.
    pub description: Option<String>,
    /// The default version's id (`v1`).
    pub default_version: String,
    /// Tags.
    pub tags: Tags,
    /// Versions by id (`v1`, `v2`, …).
    pub versions: BTreeMap<String, PolicyVersion>,
    /// The number of the next version; a counter, never a unit's content.
    pub next_version: u32,
}

impl ManagedPolicy {
    /// The policy's own configuration, without versions or counter: its unit's content.
    fn config(&self) -> impl Serialize + '_ {
        (
            &self.name,
            &self.path,
            &self.id,
            self.created,
            &self.description,
            &self.default_version,
            &self.tags,
        )
    }
}

/// An access key of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// The owning user.
    pub user: String,
    /// The secret (kept for a future signature check; never returned after creation).
    pub secret: String,
    /// `Active` or `Inactive`.
    pub status: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

/// An instance profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceProfile {
    /// Path.
    pub path: String,
    /// Unique id (`AIPA…`).
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
    /// Role names (AWS allows one).
    pub roles: Vec<String>,
    /// Tags.
    pub tags: Tags,
}

/// One account's IAM resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamScope {
    /// Users by name.
    pub users: OrdMap<String, User>,
    /// Groups by name.
    pub groups: OrdMap<String, Group>,
    /// Roles by name.
    pub roles: OrdMap<String, Role>,
    /// Customer managed policies by ARN.
    pub policies: OrdMap<String, ManagedPolicy>,
    /// Access keys by id.
    pub access_keys: OrdMap<String, AccessKey>,
    /// Instance profiles by name.
    pub instance_profiles: OrdMap<String, InstanceProfile>,
    /// Account aliases (AWS allows one).
    pub account_aliases: BTreeSet<String>,
}

impl Resources for IamScope {
    /// Users, groups, roles, access keys and instance profiles merge one by one (the
    /// bundle's on a clash); a policy on both sides takes its configuration from the bundle
    /// and keeps both sides' versions, its counter the larger.
    fn merge(&mut self, incoming: Self) {
        self.users = incoming.users.union(std::mem::take(&mut self.users));
        self.groups = incoming.groups.union(std::mem::take(&mut self.groups));
        self.roles = incoming.roles.union(std::mem::take(&mut self.roles));
        self.access_keys = incoming
            .access_keys
            .union(std::mem::take(&mut self.access_keys));
        self.instance_profiles = incoming
            .instance_profiles
            .union(std::mem::take(&mut self.instance_profiles));
        for (arn, mut p) in incoming.policies {
            if let Some(old) = self.policies.remove(&arn) {
                p.next_version = p.next_version.max(old.next_version);
                for (v, version) in old.versions {
                    p.versions.entry(v).or_insert(version);
                }
            }
            self.policies.insert(arn, p);
        }
        self.account_aliases.extend(incoming.account_aliases);
    }

    /// Users, groups, roles, policies, policy versions (`arn:vN`), access keys, instance
    /// profiles and account aliases.
    fn units(&self, out: &mut cryopod::units::Units) {
        for (n, u) in &self.users {
            out.add("user", n.clone(), u);
        }
        for (n, g) in &self.groups {
            out.add("group", n.clone(), g);
        }
        for (n, r) in &self.roles {
            out.add("role", n.clone(), r);
        }
        for (arn, p) in &self.policies {
            out.add("policy", arn.clone(), &p.config());
            for (v, version) in &p.versions {
                out.add("policy-version", format!("{arn}:{v}"), version);
            }
        }
        for (id, k) in &self.access_keys {
            out.add("access-key", id.clone(), k);
        }
        for (n, p) in &self.instance_profiles {
            out.add("instance-profile", n.clone(), p);
        }
        for a in &self.account_aliases {
            out.add("account-alias", a.clone(), &());
        }
    }

    fn summary(&self) -> ResourceCounts {
        let mut c = ResourceCounts::new();
        c.insert("user".into(), self.users.len() as u64);
        c.insert("group".into(), self.groups.len() as u64);
        c.insert("role".into(), self.roles.len() as u64);
        c.insert("policy".into(), self.policies.len() as u64);
        c.insert(
            "policy-version".into(),
            self.policies
                .values()
                .map(|p| p.versions.len() as u64)
                .sum(),
        );
        c.insert("access-key".into(), self.access_keys.len() as u64);
        c.insert(
            "instance-profile".into(),
            self.instance_profiles.len() as u64,
        );
        c.insert("account-alias".into(), self.account_aliases.len() as u64);
        c
    }
}

/// The IAM state, version 1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IamState {
    /// Resources by scope (account, `us-east-1`).
    pub scopes: Scoped<IamScope>,
}

impl ScopedState for IamState {
    type Resources = IamScope;
    fn scoped(&self) -> &Scoped<IamScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<IamScope> {
        &mut self.scopes
    }
}
