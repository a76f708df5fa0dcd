//! The STS state: the temporary credentials issued, by access key id, per scope.

use cryopod::{ResourceCounts, Resources, Scoped, ScopedState};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

/// How a session was obtained; decides the shape of its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionKind {
    /// `AssumeRole`, `AssumeRoleWithWebIdentity`, `AssumeRoleWithSAML`.
    AssumedRole,
    /// `GetFederationToken`.
    FederatedUser,
    /// `GetSessionToken`: the caller's own identity.
    SessionToken,
    /// `AssumeRoot`: the root user of the target account.
    Root,
}

/// One set of temporary credentials and the identity it carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// How it was obtained.
    pub kind: SessionKind,
    /// The identity's ARN (`arn:aws:sts::123456789012:assumed-role/Role/session`).
    pub arn: String,
    /// The identity's unique id (`AROA…:session`, `123456789012:name`, …).
    pub user_id: String,
    /// The secret access key issued with the key id.
    pub secret_access_key: String,
    /// The session token issued with the key id.
    pub session_token: String,
    /// When it was issued, seconds since the Unix epoch.
    pub issued: i64,
    /// When it expires, seconds since the Unix epoch.
    pub expiration: i64,
    /// The role assumed, for assumed-role sessions.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// `SourceIdentity`, when given.
    #[serde(default)]
    pub source_identity: Option<String>,
    /// Session tags (`Tags.member.N`), in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

/// One scope's sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StsScope {
    /// Sessions by access key id.
    pub sessions: OrdMap<String, Session>,
}

impl Resources for StsScope {
    /// Sessions merge one by one; the bundle's wins on a key id clash.
    fn merge(&mut self, incoming: Self) {
        self.sessions = incoming.sessions.union(std::mem::take(&mut self.sessions));
    }

    /// One unit per session, named by its access key id.
    fn units(&self, out: &mut cryopod::units::Units) {
        for (id, s) in &self.sessions {
            out.add("session", id.clone(), s);
        }
    }

    fn summary(&self) -> ResourceCounts {
        let mut c = ResourceCounts::new();
        c.insert("session".into(), self.sessions.len() as u64);
        c
    }
}

/// The STS state, version 1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StsState {
    /// Sessions by scope (account, `us-east-1`).
    pub scopes: Scoped<StsScope>,
}

impl ScopedState for StsState {
    type Resources = StsScope;
    fn scoped(&self) -> &Scoped<StsScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<StsScope> {
        &mut self.scopes
    }
}
