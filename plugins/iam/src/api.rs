//! The IAM operations: validation with AWS's limits and error codes, then the change to one
//! account's [`IamScope`], and the XML result.

use cryopod::AwsError;
use cryopod::aws::{
    KEY_ALPHABET, KeyKind, issue_access_key_id, issue_secret_access_key, random_chars,
};
use cryopod::protocol::query::{QueryError, QueryRequest, Text, Xml};
use http::StatusCode;

use crate::state::{
    AccessKey, Group, IamScope, InstanceProfile, LoginProfile, ManagedPolicy, Policies,
    PolicyVersion, Role, Tags, User,
};
use crate::xml;

/// The XML namespace of IAM responses.
pub const XMLNS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// The operations this emulator implements (the rest of the API answers
/// `UnsupportedOperation`).
pub const OPERATIONS: &[&str] = &[
    "AddRoleToInstanceProfile",
    "AddUserToGroup",
    "AttachGroupPolicy",
    "AttachRolePolicy",
    "AttachUserPolicy",
    "ChangePassword",
    "CreateAccessKey",
    "CreateAccountAlias",
    "CreateGroup",
    "CreateInstanceProfile",
    "CreateLoginProfile",
    "CreatePolicy",
    "CreatePolicyVersion",
    "CreateRole",
    "CreateUser",
    "DeleteAccessKey",
    "DeleteAccountAlias",
    "DeleteGroup",
    "DeleteGroupPolicy",
    "DeleteInstanceProfile",
    "DeleteLoginProfile",
    "DeletePolicy",
    "DeletePolicyVersion",
    "DeleteRole",
    "DeleteRolePermissionsBoundary",
    "DeleteRolePolicy",
    "DeleteUser",
    "DeleteUserPermissionsBoundary",
    "DeleteUserPolicy",
    "DetachGroupPolicy",
    "DetachRolePolicy",
    "DetachUserPolicy",
    "GetAccessKeyLastUsed",
    "GetAccountSummary",
    "GetGroup",
    "GetGroupPolicy",
    "GetInstanceProfile",
    "GetLoginProfile",
    "GetPolicy",
    "GetPolicyVersion",
    "GetRole",
    "GetRolePolicy",
    "GetUser",
    "GetUserPolicy",
    "ListAccessKeys",
    "ListAccountAliases",
    "ListAttachedGroupPolicies",
    "ListAttachedRolePolicies",
    "ListAttachedUserPolicies",
    "ListEntitiesForPolicy",
    "ListGroupPolicies",
    "ListGroups",
    "ListGroupsForUser",
    "ListInstanceProfileTags",
    "ListInstanceProfiles",
    "ListInstanceProfilesForRole",
    "ListPolicies",
    "ListPolicyTags",
    "ListPolicyVersions",
    "ListRolePolicies",
    "ListRoleTags",
    "ListRoles",
    "ListUserPolicies",
    "ListUserTags",
    "ListUsers",
    "PutGroupPolicy",
    "PutRolePermissionsBoundary",
    "PutRolePolicy",
    "PutUserPermissionsBoundary",
    "PutUserPolicy",
    "RemoveRoleFromInstanceProfile",
    "RemoveUserFromGroup",
    "SetDefaultPolicyVersion",
    "TagInstanceProfile",
    "TagPolicy",
    "TagRole",
    "TagUser",
    "UntagInstanceProfile",
    "UntagPolicy",
    "UntagRole",
    "UntagUser",
    "UpdateAccessKey",
    "UpdateAssumeRolePolicy",
    "UpdateGroup",
    "UpdateLoginProfile",
    "UpdateRole",
    "UpdateRoleDescription",
    "UpdateUser",
];

/// Every action routed to IAM when a request is unsigned: the implemented ones; signed
/// requests (signing name `iam`) reach IAM whatever their action, so the rest of the API is
/// answered by name there.
pub const ROUTED: &[&str] = OPERATIONS;

/// IAM's errors, each with AWS's code and status.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// A parameter is missing or breaks its shape.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// `NoSuchEntity` (404).
    #[error("{0}")]
    NoSuchEntity(String),
    /// `EntityAlreadyExists` (409).
    #[error("{0}")]
    AlreadyExists(String),
    /// `DeleteConflict` (409).
    #[error("{0}")]
    DeleteConflict(String),
    /// `LimitExceeded` (409).
    #[error("{0}")]
    LimitExceeded(String),
    /// `MalformedPolicyDocument` (400).
    #[error("{0}")]
    MalformedPolicy(String),
    /// `InvalidInput` (400).
    #[error("{0}")]
    InvalidInput(String),
    /// `InvalidUserType` (400): an operation only an IAM user may call.
    #[error("{0}")]
    InvalidUserType(String),
}

impl From<IamError> for AwsError {
    fn from(e: IamError) -> Self {
        let (status, code) = match &e {
            IamError::Query(q) => return q.clone().into(),
            IamError::NoSuchEntity(_) => (StatusCode::NOT_FOUND, "NoSuchEntity"),
            IamError::AlreadyExists(_) => (StatusCode::CONFLICT, "EntityAlreadyExists"),
            IamError::DeleteConflict(_) => (StatusCode::CONFLICT, "DeleteConflict"),
            IamError::LimitExceeded(_) => (StatusCode::CONFLICT, "LimitExceeded"),
            IamError::MalformedPolicy(_) => (StatusCode::BAD_REQUEST, "MalformedPolicyDocument"),
            IamError::InvalidInput(_) => (StatusCode::BAD_REQUEST, "InvalidInput"),
            IamError::InvalidUserType(_) => (StatusCode::BAD_REQUEST, "InvalidUserType"),
        };
        AwsError::new(status, code, e.to_string())
    }
}

/// Result of an IAM operation: the result element's content, `None` for operations whose
/// output is empty.
pub type IamResult<T> = Result<T, IamError>;

/// AWS's default quotas, as IAM reports them in `GetAccountSummary`.
pub mod limits {
    /// Users per account.
    pub const USERS: usize = 5000;
    /// Groups per account.
    pub const GROUPS: usize = 300;
    /// Roles per account.
    pub const ROLES: usize = 1000;
    /// Customer managed policies per account.
    pub const POLICIES: usize = 1500;
    /// Instance profiles per account.
    pub const INSTANCE_PROFILES: usize = 1000;
    /// Access keys per user.
    pub const KEYS_PER_USER: usize = 2;
    /// Groups a user belongs to.
    pub const GROUPS_PER_USER: usize = 10;
    /// Managed policies attached to one user, group or role.
    pub const ATTACHED_PER_ENTITY: usize = 10;
    /// Versions of one managed policy.
    pub const VERSIONS_PER_POLICY: usize = 5;
    /// Roles per instance profile.
    pub const ROLES_PER_INSTANCE_PROFILE: usize = 1;
    /// Tags per resource.
    pub const TAGS: usize = 50;
    /// Characters of a managed policy document.
    pub const POLICY_SIZE: usize = 6144;
    /// Characters of a role's trust policy.
    pub const TRUST_POLICY_SIZE: usize = 2048;
    /// Characters of all inline policies of a user.
    pub const USER_INLINE_SIZE: usize = 2048;
    /// Characters of all inline policies of a group.
    pub const GROUP_INLINE_SIZE: usize = 5120;
    /// Characters of all inline policies of a role.
    pub const ROLE_INLINE_SIZE: usize = 10240;
}

const USER_NAME: Text = Text::name(1, 64);
const ROLE_NAME: Text = Text::name(1, 64);
const GROUP_NAME: Text = Text::name(1, 128);
const POLICY_NAME: Text = Text::name(1, 128);
const PROFILE_NAME: Text = Text::name(1, 128);
const ARN: Text = Text::len(20, 2048);
const DOCUMENT: Text = Text::len(1, 131_072);
const DESCRIPTION: Text = Text::len(0, 1000);
const ACCESS_KEY_ID: Text = Text::len(16, 128);
const PASSWORD: Text = Text::len(1, 128);
const VERSION_ID: Text = Text::len(2, 20);

/// Who asks and when.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The account (IAM's scope is (account, `us-east-1`)).
    pub account: String,
    /// The access key id the request was signed with.
    pub key: Option<String>,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// Whether `action` only reads (so runs without a state write).
pub fn is_read(action: &str) -> bool {
    action.starts_with("Get") || action.starts_with("List")
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", random_chars(17, KEY_ALPHABET))
}

fn path(q: &QueryRequest, name: &str) -> IamResult<String> {
    let Some(p) = q.get(name) else {
        return Ok("/".into());
    };
    let ok = p.len() <= 512
        && p.starts_with('/')
        && p.ends_with('/')
        && p.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !ok {
        return Err(QueryError::Constraint {
            name: name.into(),
            value: p.chars().take(256).collect(),
            constraint: "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)".into(),
        }
        .into());
    }
    Ok(p.to_string())
}

/// A policy document: stored as sent, checked to be a JSON object with a `Statement`.
fn policy_document(q: &QueryRequest, name: &str, max: usize) -> IamResult<String> {
    let doc = q.required_text(name, &DOCUMENT)?;
    let size = doc.chars().filter(|c| !c.is_whitespace()).count();
    if size > max {
        return Err(IamError::LimitExceeded(format!(
            "Cannot exceed quota for PolicySize: {max}"
        )));
    }
    let v: serde_json::Value = serde_json::from_str(doc)
        .map_err(|_| IamError::MalformedPolicy("Syntax errors in policy.".into()))?;
    match v.get("Statement") {
        Some(serde_json::Value::Array(_) | serde_json::Value::Object(_)) => Ok(doc.to_string()),
        _ => Err(IamError::MalformedPolicy(
            "Missing required field Statement".into(),
        )),
    }
}

fn tags_param(q: &QueryRequest) -> IamResult<Tags> {
    let tags = q.tags("Tags")?;
    for (k, v) in &tags {
        Text::len(1, 128).check("Tags.member.Key", k)?;
        Text::len(0, 256).check("Tags.member.Value", v)?;
    }
    Ok(tags)
}

fn add_tags(existing: &mut Tags, new: Tags) -> IamResult<()> {
    for (k, v) in new {
        match existing.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => existing.push((k, v)),
        }
    }
    if existing.len() > limits::TAGS {
        return Err(IamError::LimitExceeded(format!(
            "The number of tags has reached the maximum limit of {}.",
            limits::TAGS
        )));
    }
    Ok(())
}

fn no_such(kind: &str, name: &str) -> IamError {
    IamError::NoSuchEntity(format!("The {kind} with name {name} cannot be found."))
}

fn exists(kind: &str, name: &str) -> IamError {
    IamError::AlreadyExists(format!("{kind} with name {name} already exists."))
}

fn quota(what: &str, max: usize) -> IamError {
    IamError::LimitExceeded(format!("Cannot exceed quota for {what}: {max}"))
}

/// A page of `items` (`Marker` is the offset of the first item, opaque to clients) and
/// the marker of the next page, if any.
fn page<T>(q: &QueryRequest, items: Vec<T>) -> IamResult<(Vec<T>, Option<String>)> {
    let max = q.int("MaxItems", 1, 1000)?.unwrap_or(100) as usize;
    let start = match q.text("Marker", &Text::len(1, 320))? {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| IamError::InvalidInput(format!("Invalid Marker {m}")))?,
        None => 0,
    };
    let total = items.len();
    let out: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + out.len() < total).then(|| (start + out.len()).to_string());
    Ok((out, next))
}

fn truncation(x: &mut Xml, next: Option<String>) {
    x.leaf("IsTruncated", if next.is_some() { "true" } else { "false" });
    x.opt("Marker", next.as_deref());
}

fn prefixed<'a, V: 'a>(
    q: &QueryRequest,
    items: impl Iterator<Item = (&'a String, &'a V)>,
    path_of: impl Fn(&V) -> &str,
) -> IamResult<Vec<(&'a String, &'a V)>> {
    let prefix = q.text("PathPrefix", &Text::len(1, 512))?.unwrap_or("/");
    Ok(items
        .filter(|(_, v)| path_of(v).starts_with(prefix))
        .collect())
}

/// The three kinds of principals that hold policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    User,
    Group,
    Role,
}

impl Holder {
    fn param(self) -> &'static str {
        match self {
            Holder::User => "UserName",
            Holder::Group => "GroupName",
            Holder::Role => "RoleName",
        }
    }
    fn word(self) -> &'static str {
        match self {
            Holder::User => "user",
            Holder::Group => "group",
            Holder::Role => "role",
        }
    }
    fn shape(self) -> &'static Text {
        match self {
            Holder::User => &USER_NAME,
            Holder::Group => &GROUP_NAME,
            Holder::Role => &ROLE_NAME,
        }
    }
    fn inline_max(self) -> usize {
        match self {
            Holder::User => limits::USER_INLINE_SIZE,
            Holder::Group => limits::GROUP_INLINE_SIZE,
            Holder::Role => limits::ROLE_INLINE_SIZE,
        }
    }
    fn of(action: &str) -> Option<Holder> {
        if action.contains("User") {
            Some(Holder::User)
        } else if action.contains("Group") {
            Some(Holder::Group)
        } else if action.contains("Role") {
            Some(Holder::Role)
        } else {
            None
        }
    }
    fn name(self, q: &QueryRequest) -> IamResult<&str> {
        Ok(q.required_text(self.param(), self.shape())?)
    }
    fn policies<'s>(self, s: &'s mut IamScope, name: &str) -> IamResult<&'s mut Policies> {
        let found = match self {
            Holder::User => s.users.get_mut(name).map(|u| &mut u.policies),
            Holder::Group => s.groups.get_mut(name).map(|g| &mut g.policies),
            Holder::Role => s.roles.get_mut(name).map(|r| &mut r.policies),
        };
        found.ok_or_else(|| no_such(self.word(), name))
    }
}

/// How many users, groups and roles have `arn` attached.
fn attachments(s: &IamScope, arn: &str) -> usize {
    let has = |p: &Policies| p.attached.iter().any(|a| a == arn);
    s.users.values().filter(|u| has(&u.policies)).count()
        + s.groups.values().filter(|g| has(&g.policies)).count()
        + s.roles.values().filter(|r| has(&r.policies)).count()
}

fn policy_name_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Runs one operation on one account's resources. Reads get a copy (O(1)) and their
/// changes are discarded.
pub fn run(s: &mut IamScope, ctx: &Ctx, q: &QueryRequest) -> IamResult<Option<Xml>> {
    let mut x = Xml::new();
    let account = ctx.account.as_str();
    let action = q.action.as_str();
    match action {
        // ----- users
        "CreateUser" => {
            let name = q.required_text("UserName", &USER_NAME)?;
            if s.users.contains_key(name) {
                return Err(exists("User", name));
            }
            if s.users.len() >= limits::USERS {
                return Err(quota("Users", limits::USERS));
            }
            let mut tags = Tags::new();
            add_tags(&mut tags, tags_param(q)?)?;
            let u = User {
                path: path(q, "Path")?,
                id: new_id("AIDA"),
                created: ctx.now,
                tags,
                boundary: q.text("PermissionsBoundary", &ARN)?.map(str::to_string),
                policies: Policies::default(),
                groups: Default::default(),
                login_profile: None,
            };
            x.elem("User", |x| xml::user(x, account, name, &u));
            s.users.insert(name.to_string(), u);
        }
        "GetUser" => {
            let name = match q.text("UserName", &USER_NAME)? {
                Some(n) => n.to_string(),
                None => caller_user(s, ctx)?,
            };
            let u = s.users.get(&name).ok_or_else(|| no_such("user", &name))?;
            x.elem("User", |x| xml::user(x, account, &name, u));
        }
        "ListUsers" => {
            let all = prefixed(q, s.users.iter(), |u| &u.path)?;
            let (items, next) = page(q, all)?;
            x.members("Users", items, |x, (n, u)| xml::user(x, account, n, u));
            truncation(&mut x, next);
        }
        "UpdateUser" => {
            let name = q.required_text("UserName", &USER_NAME)?;
            let mut u = s
                .users
                .get(name)
                .cloned()
                .ok_or_else(|| no_such("user", name))?;
            if q.get("NewPath").is_some() {
                u.path = path(q, "NewPath")?;
            }
            let new = q
                .text("NewUserName", &USER_NAME)?
                .unwrap_or(name)
                .to_string();
            if new != name {
                if s.users.contains_key(&new) {
                    return Err(exists("User", &new));
                }
                s.users.remove(name);
                let ids: Vec<String> = s
                    .access_keys
                    .iter()
                    .filter(|(_, k)| k.user == name)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ids {
                    if let Some(k) = s.access_keys.get_mut(&id) {
                        k.user = new.clone();
                    }
                }
            }
            s.users.insert(new, u);
            return Ok(None);
        }
        "DeleteUser" => {
            let name = q.required_text("UserName", &USER_NAME)?;
            let u = s.users.get(name).ok_or_else(|| no_such("user", name))?;
            let conflict = |what: &str| {
                Err(IamError::DeleteConflict(format!(
                    "Cannot delete entity, must {what} first."
                )))
            };
            if u.login_profile.is_some() {
                return conflict("delete login profile");
            }
            if s.access_keys.values().any(|k| k.user == name) {
                return conflict("delete access keys");
            }
            if !u.policies.inline.is_empty() || !u.policies.attached.is_empty() {
                return conflict("delete policies");
            }
            if !u.groups.is_empty() {
                return conflict("remove users from group");
            }
            s.users.remove(name);
            return Ok(None);
        }
        // ----- groups
        "CreateGroup" => {
            let name = q.required_text("GroupName", &GROUP_NAME)?;
            if s.groups.contains_key(name) {
                return Err(exists("Group", name));
            }
            if s.groups.len() >= limits::GROUPS {
                return Err(quota("Groups", limits::GROUPS));
            }
            let g = Group {
                path: path(q, "Path")?,
                id: new_id("AGPA"),
                created: ctx.now,
                policies: Policies::default(),
            };
            x.elem("Group", |x| xml::group(x, account, name, &g));
            s.groups.insert(name.to_string(), g);
        }
        "GetGroup" => {
            let name = q.required_text("GroupName", &GROUP_NAME)?;
            let g = s.groups.get(name).ok_or_else(|| no_such("group", name))?;
            let members: Vec<_> = s
                .users
                .iter()
                .filter(|(_, u)| u.groups.contains(name))
                .collect();
            let (items, next) = page(q, members)?;
            x.elem("Group", |x| xml::group(x, account, name, g));
            x.members("Users", items, |x, (n, u)| xml::user(x, account, n, u));
            truncation(&mut x, next);
        }
        "ListGroups" => {
            let all = prefixed(q, s.groups.iter(), |g| &g.path)?;
            let (items, next) = page(q, all)?;
            x.members("Groups", items, |x, (n, g)| xml::group(x, account, n, g));
            truncation(&mut x, next);
        }
        "ListGroupsForUser" => {
            let name = q.required_text("UserName", &USER_NAME)?;
            let u = s.users.get(name).ok_or_else(|| no_such("user", name))?;
            let all: Vec<_> = s
                .groups
                .iter()
                .filter(|(n, _)| u.groups.contains(*n))
                .collect();
            let (items, next) = page(q, all)?;
            x.members("Groups", items, |x, (n, g)| xml::group(x, account, n, g));
            truncation(&mut x, next);
        }
        "UpdateGroup" => {
            let name = q.required_text("GroupName", &GROUP_NAME)?;
            let mut g = s
                .groups
                .get(name)
                .cloned()
                .ok_or_else(|| no_such("group", name))?;
            if q.get("NewPath").is_some() {
                g.path = path(q, "NewPath")?;
            }
            let new = q
                .text("NewGroupName", &GROUP_NAME)?
                .unwrap_or(name)
                .to_string();
            if new != name {
                if s.groups.contains_key(&new) {
                    return Err(exists("Group", &new));
                }
                s.groups.remove(name);
                let members: Vec<String> = s
                    .users
                    .iter()
                    .filter(|(_, u)| u.groups.contains(name))
                    .map(|(n, _)| n.clone())
                    .collect();
                for m in members {
                    if let Some(u) = s.users.get_mut(&m) {
                        u.groups.remove(name);
                        u.groups.insert(new.clone());
                    }
                }
            }
            s.groups.insert(new, g);
            return Ok(None);
        }
        "DeleteGroup" => {
            let name = q.required_text("GroupName", &GROUP_NAME)?;
            let g = s.groups.get(name).ok_or_else(|| no_such("group", name))?;
            if s.users.values().any(|u| u.groups.contains(name)) {
                return Err(IamError::DeleteConflict(
                    "Cannot delete entity, must remove users from group first.".into(),
                ));
            }
            if !g.policies.inline.is_empty() || !g.policies.attached.is_empty() {
                return Err(IamError::DeleteConflict(
                    "Cannot delete entity, must delete policies first.".into(),
                ));
            }
            s.groups.remove(name);
            return Ok(None);
        }
        "AddUserToGroup" | "RemoveUserFromGroup" => {
            let group = q.required_text("GroupName", &GROUP_NAME)?;
            let user = q.required_text("UserName", &USER_NAME)?;
            if !s.groups.contains_key(group) {
                return Err(no_such("group", group));
            }
            let u = s.users.get_mut(user).ok_or_else(|| no_such("user", user))?;
            if action == "AddUserToGroup" {
                if !u.groups.contains(group) && u.groups.len() >= limits::GROUPS_PER_USER {
                    return Err(quota("GroupsPerUser", limits::GROUPS_PER_USER));
                }
                u.groups.insert(group.to_string());
            } else if !u.groups.remove(group) {
                return Err(IamError::NoSuchEntity(format!(
                    "The user with name {user} is not in group {group}."
                )));
            }
            return Ok(None);
        }
        // ----- roles
        "CreateRole" => {
            let name = q.required_text("RoleName", &ROLE_NAME)?;
            let trust = policy_document(q, "AssumeRolePolicyDocument", limits::TRUST_POLICY_SIZE)?;
            if s.roles.contains_key(name) {
                return Err(exists("Role", name));
            }
            if s.roles.len() >= limits::ROLES {
                return Err(quota("Roles", limits::ROLES));
            }
            let mut tags = Tags::new();
            add_tags(&mut tags, tags_param(q)?)?;
            let r = Role {
                path: path(q, "Path")?,
                id: new_id("AROA"),
                created: ctx.now,
                trust_policy: trust,
                description: q.text("Description", &DESCRIPTION)?.map(str::to_string),
                max_session_duration: q.int("MaxSessionDuration", 3600, 43_200)?.unwrap_or(3600),
                tags,
                boundary: q.text("PermissionsBoundary", &ARN)?.map(str::to_string),
                policies: Policies::default(),
            };
            x.elem("Role", |x| xml::role(x, account, name, &r, false));
            s.roles.insert(name.to_string(), r);
        }
        "GetRole" => {
            let name = q.required_text("RoleName", &ROLE_NAME)?;
            let r = s.roles.get(name).ok_or_else(|| no_such("role", name))?;
            x.elem("Role", |x| xml::role(x, account, name, r, true));
        }
        "ListRoles" => {
            let all = prefixed(q, s.roles.iter(), |r| &r.path)?;
            let (items, next) = page(q, all)?;
            x.members("Roles", items, |x, (n, r)| {
                xml::role(x, account, n, r, false)
            });
            truncation(&mut x, next);
        }
        "UpdateRole" | "UpdateRoleDescription" | "UpdateAssumeRolePolicy" => {
            let name = q.required_text("RoleName", &ROLE_NAME)?;
            let trust = if action == "UpdateAssumeRolePolicy" {
                Some(policy_document(
                    q,
                    "PolicyDocument",
                    limits::TRUST_POLICY_SIZE,
                )?)
            } else {
                None
            };
            let description = if action == "UpdateRoleDescription" {
                Some(q.required_text("Description", &DESCRIPTION)?)
            } else {
                q.text("Description", &DESCRIPTION)?
            };
            let duration = q.int("MaxSessionDuration", 3600, 43_200)?;
            let r = s.roles.get_mut(name).ok_or_else(|| no_such("role", name))?;
            if let Some(t) = trust {
                r.trust_policy = t;
            }
            if let Some(d) = description {
                r.description = Some(d.to_string());
            }
            if let Some(d) = duration {
                r.max_session_duration = d;
            }
            if action == "UpdateRoleDescription" {
                let r = r.clone();
                x.elem("Role", |x| xml::role(x, account, name, &r, false));
                return Ok(Some(x));
            }
            return Ok(None);
        }
        "DeleteRole" => {
            let name = q.required_text("RoleName", &ROLE_NAME)?;
            let r = s.roles.get(name).ok_or_else(|| no_such("role", name))?;
            if !r.policies.inline.is_empty() || !r.policies.attached.is_empty() {
                return Err(IamError::DeleteConflict(
                    "Cannot delete entity, must delete policies first.".into(),
                ));
            }
            if s.instance_profiles
                .values()
                .any(|p| p.roles.iter().any(|n| n == name))
            {
                return Err(IamError::DeleteConflict(
                    "Cannot delete entity, must remove roles from instance profile first.".into(),
                ));
            }
            s.roles.remove(name);
            return Ok(None);
        }
        "PutUserPermissionsBoundary"
        | "PutRolePermissionsBoundary"
        | "DeleteUserPermissionsBoundary"
        | "DeleteRolePermissionsBoundary" => {
            let arn = if action.starts_with("Put") {
                Some(q.required_text("PermissionsBoundary", &ARN)?.to_string())
            } else {
                None
            };
            if action.contains("User") {
                let name = q.required_text("UserName", &USER_NAME)?;
                s.users
                    .get_mut(name)
                    .ok_or_else(|| no_such("user", name))?
                    .boundary = arn;
            } else {
                let name = q.required_text("RoleName", &ROLE_NAME)?;
                s.roles
                    .get_mut(name)
                    .ok_or_else(|| no_such("role", name))?
                    .boundary = arn;
            }
            return Ok(None);
        }
        // ----- tags of users, roles, policies, instance profiles
        "TagUser"
        | "UntagUser"
        | "ListUserTags"
        | "TagRole"
        | "UntagRole"
        | "ListRoleTags"
        | "TagPolicy"
        | "UntagPolicy"
        | "ListPolicyTags"
        | "TagInstanceProfile"
        | "UntagInstanceProfile"
        | "ListInstanceProfileTags" => {
            let tags = tags_of(s, q)?;
            if action.starts_with("Tag") {
                add_tags(tags, tags_param(q)?)?;
            } else if action.starts_with("Untag") {
                let keys = q.list("TagKeys")?;
                tags.retain(|(k, _)| !keys.contains(k));
            } else {
                let (items, next) = page(q, tags.clone())?;
                xml::tags(&mut x, &items);
                if items.is_empty() {
                    x.elem("Tags", |_| {});
                }
                truncation(&mut x, next);
                return Ok(Some(x));
            }
            return Ok(None);
        }
        // ----- managed policies
        "CreatePolicy" => {
            let name = q.required_text("PolicyName", &POLICY_NAME)?;
            let doc = policy_document(q, "PolicyDocument", limits::POLICY_SIZE)?;
            let path = path(q, "Path")?;
            let arn = xml::arn(account, "policy", &path, name);
            if s.policies.contains_key(&arn) {
                return Err(IamError::AlreadyExists(format!(
                    "A policy called {name} already exists. Duplicate names are not allowed."
                )));
            }
            if s.policies.len() >= limits::POLICIES {
                return Err(quota("Policies", limits::POLICIES));
            }
            let mut tags = Tags::new();
            add_tags(&mut tags, tags_param(q)?)?;
            let p = ManagedPolicy {
                name: name.to_string(),
                path,
                id: new_id("ANPA"),
                created: ctx.now,
                updated: ctx.now,
                description: q.text("Description", &DESCRIPTION)?.map(str::to_string),
                default_version: "v1".into(),
                tags,
                versions: [(
                    "v1".to_string(),
                    PolicyVersion {
                        document: doc,
                        created: ctx.now,
                    },
                )]
                .into_iter()
                .collect(),
                next_version: 2,
            };
            x.elem("Policy", |x| xml::policy(x, &arn, &p, 0));
            s.policies.insert(arn, p);
        }
        "GetPolicy" => {
            let arn = q.required_text("PolicyArn", &ARN)?;
            let p = find_policy(s, arn)?;
            x.elem("Policy", |x| xml::policy(x, arn, p, attachments(s, arn)));
        }
        "ListPolicies" => {
            let scope = q.get("Scope").unwrap_or("All");
            if !matches!(scope, "All" | "AWS" | "Local") {
                return Err(QueryError::Constraint {
                    name: "Scope".into(),
                    value: scope.into(),
                    constraint: "Member must satisfy enum value set: [All, AWS, Local]".into(),
                }
                .into());
            }
            let only_attached = q.bool("OnlyAttached")?.unwrap_or(false);
            let all: Vec<_> = prefixed(q, s.policies.iter(), |p| &p.path)?
                .into_iter()
                .filter(|_| scope != "AWS")
                .map(|(arn, p)| (arn, p, attachments(s, arn)))
                .filter(|(_, _, n)| !only_attached || *n > 0)
                .collect();
            let (items, next) = page(q, all)?;
            x.members("Policies", items, |x, (arn, p, n)| {
                xml::policy(x, arn, p, n)
            });
            truncation(&mut x, next);
        }
        "DeletePolicy" => {
            let arn = q.required_text("PolicyArn", &ARN)?;
            let p = find_policy(s, arn)?;
            if attachments(s, arn) > 0 {
                return Err(IamError::DeleteConflict(
                    "Cannot delete a policy attached to entities.".into(),
                ));
            }
            if p.versions.len() > 1 {
                return Err(IamError::DeleteConflict(
                    "This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.".into(),
                ));
            }
            s.policies.remove(arn);
            return Ok(None);
        }
        "CreatePolicyVersion" => {
            let arn = q.required_text("PolicyArn", &ARN)?;
            let doc = policy_document(q, "PolicyDocument", limits::POLICY_SIZE)?;
            let default = q.bool("SetAsDefault")?.unwrap_or(false);
            let p = find_policy_mut(s, arn)?;
            if p.versions.len() >= limits::VERSIONS_PER_POLICY {
                return Err(IamError::LimitExceeded(format!(
                    "A managed policy can have up to {} versions. Before you create a new version, you must delete an existing version.",
                    limits::VERSIONS_PER_POLICY
                )));
            }
            let v = format!("v{}", p.next_version);
            p.next_version += 1;
            p.versions.insert(
                v.clone(),
                PolicyVersion {
                    document: doc,
                    created: ctx.now,
                },
            );
            if default {
                p.default_version = v.clone();
                p.updated = ctx.now;
            }
            x.elem("PolicyVersion", |x| {
                x.leaf("VersionId", &v)
                    .leaf("IsDefaultVersion", if default { "true" } else { "false" })
                    .leaf("CreateDate", &cryopod::protocol::query::timestamp(ctx.now));
            });
        }
        "GetPolicyVersion" => {
            let arn = q.required_text("PolicyArn", &ARN)?;
            let v = q.required_text("VersionId", &VERSION_ID)?;
            let p = find_policy(s, arn)?;
            let version = p.versions.get(v).ok_or_else(|| {
                IamError::NoSuchEntity(format!(
                    "Policy {arn} version {v} does not exist or is not attachable."
                ))
            })?;
            x.elem("PolicyVersion", |x| version_xml(x, v, version, p));
        }
        "ListPolicyVersions" => {
            let arn = q.required_text("PolicyArn", &ARN)?;
            let p = find_policy(s, arn)?;
            let mut all: Vec<_> = p.versions.iter().collect();
            all.sort_by_key(|(v, _)| std::cmp::Reverse(v[1..].parse::<u32>().unwrap_or(0)));
            let (items, next) = page(q, all)?;
            x.members("Versions", items, |x, (v, version)| {
                version_xml(x, v, version, p)
            });
            truncation(&mut x, next);
        }
        "DeletePolicyVersion" | "SetDefaultPolicyVersion" => {
            let arn = q.required_text("PolicyArn", &ARN)?;
            let v = q.required_text("VersionId", &VERSION_ID)?;
            let p = find_policy_mut(s, arn)?;
            if !p.versions.contains_key(v) {
                return Err(IamError::NoSuchEntity(format!(
                    "Policy {arn} version {v} does not exist or is not attachable."
                )));
            }
            if action == "SetDefaultPolicyVersion" {
                p.default_version = v.to_string();
                p.updated = ctx.now;
            } else if p.default_version == v {
                return Err(IamError::DeleteConflict(
                    "Cannot delete the default version of a policy.".into(),
                ));
            } else {
                p.versions.remove(v);
            }
            return Ok(None);
        }
        "ListEntitiesForPolicy" => {
            let arn = q.required_text("PolicyArn", &ARN)?;
            if !arn.contains(":aws:policy/") {
                find_policy(s, arn)?;
            }
            let filter = q.get("EntityFilter");
            let want = |k: &str| filter.is_none_or(|f| f == k);
            let has = |p: &Policies| p.attached.iter().any(|a| a == arn);
            let users: Vec<_> = s
                .users
                .iter()
                .filter(|(_, u)| want("User") && has(&u.policies))
                .collect();
            let groups: Vec<_> = s
                .groups
                .iter()
                .filter(|(_, g)| want("Group") && has(&g.policies))
                .collect();
            let roles: Vec<_> = s
                .roles
                .iter()
                .filter(|(_, r)| want("Role") && has(&r.policies))
                .collect();
            x.members("PolicyGroups", groups, |x, (n, g)| {
                x.leaf("GroupName", n).leaf("GroupId", &g.id);
            });
            x.members("PolicyUsers", users, |x, (n, u)| {
                x.leaf("UserName", n).leaf("UserId", &u.id);
            });
            x.members("PolicyRoles", roles, |x, (n, r)| {
                x.leaf("RoleName", n).leaf("RoleId", &r.id);
            });
            truncation(&mut x, None);
        }
        // ----- attached policies
        "AttachUserPolicy" | "AttachGroupPolicy" | "AttachRolePolicy" | "DetachUserPolicy"
        | "DetachGroupPolicy" | "DetachRolePolicy" => {
            let holder = Holder::of(action).ok_or_else(|| IamError::InvalidInput(action.into()))?;
            let name = holder.name(q)?;
            let arn = q.required_text("PolicyArn", &ARN)?;
            // AWS managed policies are not modelled; attaching one is taken on trust.
            if !arn.contains(":aws:policy/") && !s.policies.contains_key(arn) {
                return Err(IamError::NoSuchEntity(format!(
                    "Policy {arn} does not exist or is not attachable."
                )));
            }
            let p = holder.policies(s, name)?;
            let present = p.attached.iter().any(|a| a == arn);
            if action.starts_with("Attach") {
                if !present {
                    if p.attached.len() >= limits::ATTACHED_PER_ENTITY {
                        return Err(quota("PoliciesPerUser", limits::ATTACHED_PER_ENTITY));
                    }
                    p.attached.push(arn.to_string());
                }
            } else if present {
                p.attached.retain(|a| a != arn);
            } else {
                return Err(IamError::NoSuchEntity(format!(
                    "Policy {arn} was not found."
                )));
            }
            return Ok(None);
        }
        "ListAttachedUserPolicies" | "ListAttachedGroupPolicies" | "ListAttachedRolePolicies" => {
            let holder = Holder::of(action).ok_or_else(|| IamError::InvalidInput(action.into()))?;
            let name = holder.name(q)?;
            let attached = holder.policies(s, name)?.attached.clone();
            let (items, next) = page(q, attached)?;
            x.members("AttachedPolicies", items, |x, arn| {
                x.leaf("PolicyName", policy_name_of(&arn))
                    .leaf("PolicyArn", &arn);
            });
            truncation(&mut x, next);
        }
        // ----- inline policies
        "PutUserPolicy" | "PutGroupPolicy" | "PutRolePolicy" => {
            let holder = Holder::of(action).ok_or_else(|| IamError::InvalidInput(action.into()))?;
            let name = holder.name(q)?;
            let policy = q.required_text("PolicyName", &POLICY_NAME)?;
            let doc = policy_document(q, "PolicyDocument", holder.inline_max())?;
            let p = holder.policies(s, name)?;
            let others: usize = p
                .inline
                .iter()
                .filter(|(n, _)| n.as_str() != policy)
                .map(|(_, d)| d.chars().filter(|c| !c.is_whitespace()).count())
                .sum();
            if others + doc.chars().filter(|c| !c.is_whitespace()).count() > holder.inline_max() {
                return Err(IamError::LimitExceeded(format!(
                    "Maximum policy size of {} bytes exceeded for {} {name}",
                    holder.inline_max(),
                    holder.word()
                )));
            }
            p.inline.insert(policy.to_string(), doc);
            return Ok(None);
        }
        "GetUserPolicy" | "GetGroupPolicy" | "GetRolePolicy" => {
            let holder = Holder::of(action).ok_or_else(|| IamError::InvalidInput(action.into()))?;
            let name = holder.name(q)?;
            let policy = q.required_text("PolicyName", &POLICY_NAME)?;
            let doc = holder
                .policies(s, name)?
                .inline
                .get(policy)
                .cloned()
                .ok_or_else(|| {
                    IamError::NoSuchEntity(format!(
                        "The {} policy with name {policy} cannot be found.",
                        holder.word()
                    ))
                })?;
            x.leaf(holder.param(), name)
                .leaf("PolicyName", policy)
                .leaf("PolicyDocument", &xml::document(&doc));
        }
        "DeleteUserPolicy" | "DeleteGroupPolicy" | "DeleteRolePolicy" => {
            let holder = Holder::of(action).ok_or_else(|| IamError::InvalidInput(action.into()))?;
            let name = holder.name(q)?;
            let policy = q.required_text("PolicyName", &POLICY_NAME)?;
            if holder.policies(s, name)?.inline.remove(policy).is_none() {
                return Err(IamError::NoSuchEntity(format!(
                    "The {} policy with name {policy} cannot be found.",
                    holder.word()
                )));
            }
            return Ok(None);
        }
        "ListUserPolicies" | "ListGroupPolicies" | "ListRolePolicies" => {
            let holder = Holder::of(action).ok_or_else(|| IamError::InvalidInput(action.into()))?;
            let name = holder.name(q)?;
            let names: Vec<String> = holder.policies(s, name)?.inline.keys().cloned().collect();
            let (items, next) = page(q, names)?;
            x.string_members("PolicyNames", items);
            truncation(&mut x, next);
        }
        // ----- access keys
        "CreateAccessKey" => {
            let user = match q.text("UserName", &USER_NAME)? {
                Some(n) => n.to_string(),
                None => caller_user(s, ctx)?,
            };
            if !s.users.contains_key(&user) {
                return Err(no_such("user", &user));
            }
            if s.access_keys.values().filter(|k| k.user == user).count() >= limits::KEYS_PER_USER {
                return Err(quota("AccessKeysPerUser", limits::KEYS_PER_USER));
            }
            let id = issue_access_key_id(KeyKind::LongTerm, account);
            let key = AccessKey {
                user: user.clone(),
                secret: issue_secret_access_key(),
                status: "Active".into(),
                created: ctx.now,
            };
            x.elem("AccessKey", |x| {
                x.leaf("UserName", &user)
                    .leaf("AccessKeyId", &id)
                    .leaf("Status", &key.status)
                    .leaf("SecretAccessKey", &key.secret)
                    .leaf(
                        "CreateDate",
                        &cryopod::protocol::query::timestamp(key.created),
                    );
            });
            s.access_keys.insert(id, key);
        }
        "ListAccessKeys" => {
            let user = match q.text("UserName", &USER_NAME)? {
                Some(n) => n.to_string(),
                None => caller_user(s, ctx)?,
            };
            if !s.users.contains_key(&user) {
                return Err(no_such("user", &user));
            }
            let all: Vec<_> = s
                .access_keys
                .iter()
                .filter(|(_, k)| k.user == user)
                .collect();
            let (items, next) = page(q, all)?;
            x.members("AccessKeyMetadata", items, |x, (id, k)| {
                x.leaf("UserName", &k.user)
                    .leaf("AccessKeyId", id)
                    .leaf("Status", &k.status)
                    .leaf(
                        "CreateDate",
                        &cryopod::protocol::query::timestamp(k.created),
                    );
            });
            truncation(&mut x, next);
        }
        "UpdateAccessKey" | "DeleteAccessKey" => {
            let id = q.required_text("AccessKeyId", &ACCESS_KEY_ID)?;
            let status = if action == "UpdateAccessKey" {
                let st = q.required("Status")?;
                if !matches!(st, "Active" | "Inactive") {
                    return Err(QueryError::Constraint {
                        name: "Status".into(),
                        value: st.into(),
                        constraint: "Member must satisfy enum value set: [Active, Inactive]".into(),
                    }
                    .into());
                }
                Some(st.to_string())
            } else {
                None
            };
            let user = q.text("UserName", &USER_NAME)?;
            let key = s
                .access_keys
                .get_mut(id)
                .filter(|k| user.is_none_or(|u| k.user == u))
                .ok_or_else(|| {
                    IamError::NoSuchEntity(format!("The Access Key with id {id} cannot be found."))
                })?;
            match status {
                Some(st) => key.status = st,
                None => {
                    s.access_keys.remove(id);
                }
            }
            return Ok(None);
        }
        "GetAccessKeyLastUsed" => {
            let id = q.required_text("AccessKeyId", &ACCESS_KEY_ID)?;
            let key = s.access_keys.get(id).ok_or_else(|| {
                IamError::NoSuchEntity(format!("The Access Key with id {id} cannot be found."))
            })?;
            x.leaf("UserName", &key.user)
                .elem("AccessKeyLastUsed", |x| {
                    x.leaf("ServiceName", "N/A").leaf("Region", "N/A");
                });
        }
        // ----- instance profiles
        "CreateInstanceProfile" => {
            let name = q.required_text("InstanceProfileName", &PROFILE_NAME)?;
            if s.instance_profiles.contains_key(name) {
                return Err(exists("Instance Profile", name));
            }
            if s.instance_profiles.len() >= limits::INSTANCE_PROFILES {
                return Err(quota("InstanceProfiles", limits::INSTANCE_PROFILES));
            }
            let mut tags = Tags::new();
            add_tags(&mut tags, tags_param(q)?)?;
            let p = InstanceProfile {
                path: path(q, "Path")?,
                id: new_id("AIPA"),
                created: ctx.now,
                roles: Vec::new(),
                tags,
            };
            x.elem("InstanceProfile", |x| {
                xml::instance_profile(x, account, s, name, &p)
            });
            s.instance_profiles.insert(name.to_string(), p);
        }
        "GetInstanceProfile" => {
            let name = q.required_text("InstanceProfileName", &PROFILE_NAME)?;
            let p = s
                .instance_profiles
                .get(name)
                .ok_or_else(|| no_such("instance profile", name))?;
            x.elem("InstanceProfile", |x| {
                xml::instance_profile(x, account, s, name, p)
            });
        }
        "ListInstanceProfiles" | "ListInstanceProfilesForRole" => {
            let role = if action == "ListInstanceProfilesForRole" {
                let r = q.required_text("RoleName", &ROLE_NAME)?;
                if !s.roles.contains_key(r) {
                    return Err(no_such("role", r));
                }
                Some(r)
            } else {
                None
            };
            let all: Vec<_> = prefixed(q, s.instance_profiles.iter(), |p| &p.path)?
                .into_iter()
                .filter(|(_, p)| role.is_none_or(|r| p.roles.iter().any(|n| n == r)))
                .collect();
            let (items, next) = page(q, all)?;
            x.members("InstanceProfiles", items, |x, (n, p)| {
                xml::instance_profile(x, account, s, n, p)
            });
            truncation(&mut x, next);
        }
        "DeleteInstanceProfile" => {
            let name = q.required_text("InstanceProfileName", &PROFILE_NAME)?;
            let p = s
                .instance_profiles
                .get(name)
                .ok_or_else(|| no_such("instance profile", name))?;
            if !p.roles.is_empty() {
                return Err(IamError::DeleteConflict(
                    "Cannot delete entity, must remove roles from instance profile first.".into(),
                ));
            }
            s.instance_profiles.remove(name);
            return Ok(None);
        }
        "AddRoleToInstanceProfile" | "RemoveRoleFromInstanceProfile" => {
            let name = q.required_text("InstanceProfileName", &PROFILE_NAME)?;
            let role = q.required_text("RoleName", &ROLE_NAME)?;
            if !s.roles.contains_key(role) {
                return Err(no_such("role", role));
            }
            let p = s
                .instance_profiles
                .get_mut(name)
                .ok_or_else(|| no_such("instance profile", name))?;
            let present = p.roles.iter().any(|r| r == role);
            if action.starts_with("Add") {
                if present || p.roles.len() >= limits::ROLES_PER_INSTANCE_PROFILE {
                    return Err(quota(
                        "InstanceSessionsPerInstanceProfile",
                        limits::ROLES_PER_INSTANCE_PROFILE,
                    ));
                }
                p.roles.push(role.to_string());
            } else if present {
                p.roles.retain(|r| r != role);
            } else {
                return Err(IamError::NoSuchEntity(format!(
                    "The role with name {role} is not in instance profile {name}."
                )));
            }
            return Ok(None);
        }
        // ----- login profiles
        "CreateLoginProfile" | "UpdateLoginProfile" | "GetLoginProfile" | "DeleteLoginProfile" => {
            let user = match q.text("UserName", &USER_NAME)? {
                Some(n) => n.to_string(),
                None => caller_user(s, ctx)?,
            };
            let reset = q.bool("PasswordResetRequired")?;
            if action == "CreateLoginProfile" {
                q.required_text("Password", &PASSWORD)?;
            } else {
                q.text("Password", &PASSWORD)?;
            }
            let u = s
                .users
                .get_mut(&user)
                .ok_or_else(|| no_such("user", &user))?;
            let missing = || {
                IamError::NoSuchEntity(format!("Login Profile for User {user} cannot be found."))
            };
            match action {
                "CreateLoginProfile" => {
                    if u.login_profile.is_some() {
                        return Err(IamError::AlreadyExists(format!(
                            "Login Profile for user {user} already exists."
                        )));
                    }
                    let lp = LoginProfile {
                        created: ctx.now,
                        password_reset_required: reset.unwrap_or(false),
                    };
                    login_xml(&mut x, &user, &lp);
                    u.login_profile = Some(lp);
                }
                "GetLoginProfile" => {
                    let lp = u.login_profile.as_ref().ok_or_else(missing)?;
                    login_xml(&mut x, &user, lp);
                }
                "UpdateLoginProfile" => {
                    let lp = u.login_profile.as_mut().ok_or_else(missing)?;
                    if let Some(r) = reset {
                        lp.password_reset_required = r;
                    }
                    return Ok(None);
                }
                _ => {
                    u.login_profile.take().ok_or_else(missing)?;
                    return Ok(None);
                }
            }
        }
        "ChangePassword" => {
            q.required_text("OldPassword", &PASSWORD)?;
            q.required_text("NewPassword", &PASSWORD)?;
            let user = caller_user(s, ctx)?;
            let u = s
                .users
                .get_mut(&user)
                .ok_or_else(|| no_such("user", &user))?;
            let lp = u.login_profile.as_mut().ok_or_else(|| {
                IamError::NoSuchEntity(format!("Login Profile for User {user} cannot be found."))
            })?;
            lp.password_reset_required = false;
            return Ok(None);
        }
        // ----- account
        "CreateAccountAlias" => {
            let alias = q.required_text("AccountAlias", &Text::len(3, 63))?;
            let ok = alias
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !alias.starts_with('-')
                && !alias.ends_with('-')
                && !alias.contains("--");
            if !ok {
                return Err(QueryError::Constraint {
                    name: "AccountAlias".into(),
                    value: alias.into(),
                    constraint: "Member must satisfy regular expression pattern: ^[a-z0-9]([a-z0-9]|-(?!-)){1,61}[a-z0-9]$".into(),
                }
                .into());
            }
            if s.account_aliases.contains(alias) {
                return Err(IamError::AlreadyExists(format!(
                    "The account alias {alias} already exists."
                )));
            }
            if !s.account_aliases.is_empty() {
                return Err(quota("AccountAliases", 1));
            }
            s.account_aliases.insert(alias.to_string());
            return Ok(None);
        }
        "DeleteAccountAlias" => {
            let alias = q.required_text("AccountAlias", &Text::len(3, 63))?;
            if !s.account_aliases.remove(alias) {
                return Err(IamError::NoSuchEntity(format!(
                    "The account alias {alias} cannot be found."
                )));
            }
            return Ok(None);
        }
        "ListAccountAliases" => {
            let (items, next) = page(q, s.account_aliases.iter().cloned().collect())?;
            x.string_members("AccountAliases", items);
            truncation(&mut x, next);
        }
        "GetAccountSummary" => {
            let n = |v: usize| v.to_string();
            let versions: usize = s.policies.values().map(|p| p.versions.len()).sum();
            let entries = [
                ("Users", n(s.users.len())),
                ("UsersQuota", n(limits::USERS)),
                ("Groups", n(s.groups.len())),
                ("GroupsQuota", n(limits::GROUPS)),
                ("Roles", n(s.roles.len())),
                ("RolesQuota", n(limits::ROLES)),
                ("Policies", n(s.policies.len())),
                ("PoliciesQuota", n(limits::POLICIES)),
                ("PolicyVersionsInUse", n(versions)),
                ("InstanceProfiles", n(s.instance_profiles.len())),
                ("InstanceProfilesQuota", n(limits::INSTANCE_PROFILES)),
                ("AccessKeysPerUserQuota", n(limits::KEYS_PER_USER)),
                ("GroupsPerUserQuota", n(limits::GROUPS_PER_USER)),
                (
                    "AttachedPoliciesPerUserQuota",
                    n(limits::ATTACHED_PER_ENTITY),
                ),
                (
                    "AttachedPoliciesPerGroupQuota",
                    n(limits::ATTACHED_PER_ENTITY),
                ),
                (
                    "AttachedPoliciesPerRoleQuota",
                    n(limits::ATTACHED_PER_ENTITY),
                ),
                ("VersionsPerPolicyQuota", n(limits::VERSIONS_PER_POLICY)),
                ("PolicySizeQuota", n(limits::POLICY_SIZE)),
                ("UserPolicySizeQuota", n(limits::USER_INLINE_SIZE)),
                ("GroupPolicySizeQuota", n(limits::GROUP_INLINE_SIZE)),
                ("AssumeRolePolicySizeQuota", n(limits::TRUST_POLICY_SIZE)),
                ("AccountAccessKeysPresent", "0".into()),
                ("AccountMFAEnabled", "0".into()),
                ("MFADevices", "0".into()),
                ("MFADevicesInUse", "0".into()),
                ("ServerCertificates", "0".into()),
                ("Providers", "0".into()),
            ];
            x.entries("SummaryMap", entries);
        }
        _ => {
            return Err(IamError::InvalidInput(format!(
                "{action} is not an IAM operation"
            )));
        }
    }
    Ok(Some(x))
}

fn version_xml(x: &mut Xml, v: &str, version: &PolicyVersion, p: &ManagedPolicy) {
    x.leaf("Document", &xml::document(&version.document))
        .leaf("VersionId", v)
        .leaf(
            "IsDefaultVersion",
            if p.default_version == v {
                "true"
            } else {
                "false"
            },
        )
        .leaf(
            "CreateDate",
            &cryopod::protocol::query::timestamp(version.created),
        );
}

fn login_xml(x: &mut Xml, user: &str, lp: &LoginProfile) {
    x.elem("LoginProfile", |x| {
        x.leaf("UserName", user)
            .leaf(
                "CreateDate",
                &cryopod::protocol::query::timestamp(lp.created),
            )
            .leaf(
                "PasswordResetRequired",
                if lp.password_reset_required {
                    "true"
                } else {
                    "false"
                },
            );
    });
}

fn find_policy<'s>(s: &'s IamScope, arn: &str) -> IamResult<&'s ManagedPolicy> {
    s.policies.get(arn).ok_or_else(|| {
        IamError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable."))
    })
}

fn find_policy_mut<'s>(s: &'s mut IamScope, arn: &str) -> IamResult<&'s mut ManagedPolicy> {
    s.policies.get_mut(arn).ok_or_else(|| {
        IamError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable."))
    })
}

/// The tags a `Tag*`/`Untag*`/`List*Tags` action names.
fn tags_of<'s>(s: &'s mut IamScope, q: &QueryRequest) -> IamResult<&'s mut Tags> {
    let a = q.action.as_str();
    if a.ends_with("InstanceProfile") || a.ends_with("InstanceProfileTags") {
        let n = q.required_text("InstanceProfileName", &PROFILE_NAME)?;
        return Ok(&mut s
            .instance_profiles
            .get_mut(n)
            .ok_or_else(|| no_such("instance profile", n))?
            .tags);
    }
    if a.ends_with("Policy") || a.ends_with("PolicyTags") {
        let arn = q.required_text("PolicyArn", &ARN)?;
        return Ok(&mut find_policy_mut(s, arn)?.tags);
    }
    if a.ends_with("Role") || a.ends_with("RoleTags") {
        let n = q.required_text("RoleName", &ROLE_NAME)?;
        return Ok(&mut s.roles.get_mut(n).ok_or_else(|| no_such("role", n))?.tags);
    }
    let n = q.required_text("UserName", &USER_NAME)?;
    Ok(&mut s.users.get_mut(n).ok_or_else(|| no_such("user", n))?.tags)
}

/// The IAM user whose access key signed the request, for operations that default to the
/// caller (`GetUser`, `CreateAccessKey`, `ChangePassword`).
fn caller_user(s: &IamScope, ctx: &Ctx) -> IamResult<String> {
    ctx.key
        .as_deref()
        .and_then(|k| s.access_keys.get(k))
        .map(|k| k.user.clone())
        .ok_or_else(|| {
            IamError::InvalidUserType(
                "Must specify a user name: the caller is not an IAM user of this emulator (root or unknown access key)".into(),
            )
        })
}
