//! IAM resources as the query protocol renders them.

use cryopod::protocol::query::{Xml, timestamp};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::state::{Group, IamScope, InstanceProfile, ManagedPolicy, Role, Tags, User};

/// What IAM leaves unencoded in the policy documents it returns (RFC 3986 unreserved).
const DOCUMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A policy document as IAM returns it: URL-encoded.
pub fn document(doc: &str) -> String {
    utf8_percent_encode(doc, DOCUMENT).to_string()
}

/// `arn:aws:iam::{account}:{kind}{path}{name}`.
pub fn arn(account: &str, kind: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:{kind}{path}{name}")
}

/// `<Tags>` when there are any (IAM omits an empty list).
pub fn tags(x: &mut Xml, tags: &Tags) {
    if !tags.is_empty() {
        x.members("Tags", tags, |x, (k, v)| {
            x.leaf("Key", k).leaf("Value", v);
        });
    }
}

fn boundary(x: &mut Xml, arn: Option<&String>) {
    if let Some(a) = arn {
        x.elem("PermissionsBoundary", |x| {
            x.leaf("PermissionsBoundaryType", "PermissionsPolicy")
                .leaf("PermissionsBoundaryArn", a);
        });
    }
}

/// A `User` element's content.
pub fn user(x: &mut Xml, account: &str, name: &str, u: &User) {
    x.leaf("Path", &u.path)
        .leaf("UserName", name)
        .leaf("UserId", &u.id)
        .leaf("Arn", &arn(account, "user", &u.path, name))
        .leaf("CreateDate", &timestamp(u.created));
    boundary(x, u.boundary.as_ref());
    tags(x, &u.tags);
}

/// A `Group` element's content.
pub fn group(x: &mut Xml, account: &str, name: &str, g: &Group) {
    x.leaf("Path", &g.path)
        .leaf("GroupName", name)
        .leaf("GroupId", &g.id)
        .leaf("Arn", &arn(account, "group", &g.path, name))
        .leaf("CreateDate", &timestamp(g.created));
}

/// A `Role` element's content; `full` adds what only `GetRole` returns.
pub fn role(x: &mut Xml, account: &str, name: &str, r: &Role, full: bool) {
    x.leaf("Path", &r.path)
        .leaf("RoleName", name)
        .leaf("RoleId", &r.id)
        .leaf("Arn", &arn(account, "role", &r.path, name))
        .leaf("CreateDate", &timestamp(r.created))
        .leaf("AssumeRolePolicyDocument", &document(&r.trust_policy))
        .opt("Description", r.description.as_deref())
        .leaf("MaxSessionDuration", &r.max_session_duration.to_string());
    boundary(x, r.boundary.as_ref());
    tags(x, &r.tags);
    if full {
        x.elem("RoleLastUsed", |_| {});
    }
}

/// A `Policy` element's content.
pub fn policy(x: &mut Xml, arn: &str, p: &ManagedPolicy, attachments: usize) {
    x.leaf("PolicyName", &p.name)
        .leaf("PolicyId", &p.id)
        .leaf("Arn", arn)
        .leaf("Path", &p.path)
        .leaf("DefaultVersionId", &p.default_version)
        .leaf("AttachmentCount", &attachments.to_string())
        .leaf("PermissionsBoundaryUsageCount", "0")
        .leaf("IsAttachable", "true")
        .opt("Description", p.description.as_deref())
        .leaf("CreateDate", &timestamp(p.created))
        .leaf("UpdateDate", &timestamp(p.updated));
    tags(x, &p.tags);
}

/// An `InstanceProfile` element's content, its roles rendered from `scope`.
pub fn instance_profile(
    x: &mut Xml,
    account: &str,
    scope: &IamScope,
    name: &str,
    p: &InstanceProfile,
) {
    x.leaf("Path", &p.path)
        .leaf("InstanceProfileName", name)
        .leaf("InstanceProfileId", &p.id)
        .leaf("Arn", &arn(account, "instance-profile", &p.path, name))
        .leaf("CreateDate", &timestamp(p.created))
        .members(
            "Roles",
            p.roles
                .iter()
                .filter_map(|r| scope.roles.get(r).map(|role| (r, role))),
            |x, (n, r)| role(x, account, n, r, false),
        );
    tags(x, &p.tags);
}
