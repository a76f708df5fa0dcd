//! ARNs and the many ways a request may name a function (name, partial ARN, full ARN, each
//! with an optional `:qualifier`), resolved against the request's scope.

use cryopod::{AwsError, Scope};

use crate::error::invalid;
use crate::validate;

/// `arn:aws:lambda:REGION:ACCOUNT:function:NAME`.
pub fn function_arn(scope: &Scope, name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{}:function:{name}",
        scope.region, scope.account
    )
}

/// The function ARN with `:qualifier` when there is one.
pub fn qualified_arn(scope: &Scope, name: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("{}:{q}", function_arn(scope, name)),
        None => function_arn(scope, name),
    }
}

/// `arn:aws:lambda:REGION:ACCOUNT:layer:NAME`.
pub fn layer_arn(scope: &Scope, name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{}:layer:{name}",
        scope.region, scope.account
    )
}

/// `arn:aws:lambda:REGION:ACCOUNT:event-source-mapping:UUID`.
pub fn esm_arn(scope: &Scope, uuid: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{}:event-source-mapping:{uuid}",
        scope.region, scope.account
    )
}

/// A function reference from a request: bare name plus the qualifier it carried, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionRef {
    /// The bare name.
    pub name: String,
    /// `$LATEST`, a version or an alias, when the reference had one.
    pub qualifier: Option<String>,
}

/// Parses `name`, `name:q`, `ACCOUNT:function:name[:q]` or
/// `arn:PARTITION:lambda:REGION:ACCOUNT:function:name[:q]`. An ARN naming another account or
/// region than the request's is refused: a resource lives in exactly one scope.
pub fn parse_function_ref(scope: &Scope, raw: &str) -> Result<FunctionRef, AwsError> {
    validate::check_len("FunctionName", raw, 1, 256)?;
    let parts: Vec<&str> = raw.split(':').collect();
    let (account, region, rest): (Option<&str>, Option<&str>, &[&str]) = match parts.as_slice() {
        [
            "arn",
            _partition,
            "lambda",
            region,
            account,
            "function",
            rest @ ..,
        ] => (Some(*account), Some(*region), rest),
        [account, "function", rest @ ..] => (Some(*account), None, rest),
        rest => (None, None, rest),
    };
    let (name, qualifier) = match rest {
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        _ => {
            return Err(validate::constraint_function_name(raw));
        }
    };
    validate::function_name(name).map_err(|_| validate::constraint_function_name(raw))?;
    if let Some(q) = qualifier {
        validate::qualifier(q)?;
    }
    if let Some(a) = account
        && a != scope.account
    {
        return Err(invalid(format!(
            "The function ARN {raw} names account {a}, but the request was signed for account {}.",
            scope.account
        )));
    }
    if let Some(r) = region
        && r != scope.region
    {
        return Err(invalid(format!(
            "The function ARN {raw} names region {r}, but the request was sent to region {}.",
            scope.region
        )));
    }
    Ok(FunctionRef {
        name: name.to_string(),
        qualifier: qualifier.map(str::to_string),
    })
}

/// Combines the qualifier carried by the name with a `Qualifier` parameter; AWS refuses two
/// different ones.
pub fn merge_qualifier(
    from_name: Option<String>,
    param: Option<String>,
) -> Result<Option<String>, AwsError> {
    if let Some(p) = &param {
        validate::qualifier(p)?;
    }
    match (from_name, param) {
        (Some(a), Some(b)) if a != b => Err(invalid(
            "The derived qualifier from the function name does not match the specified qualifier.",
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// A layer name from a path: a bare name or a layer ARN in the request's scope.
pub fn parse_layer_name(scope: &Scope, raw: &str) -> Result<String, AwsError> {
    let name = match raw.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "lambda", region, account, "layer", name] => {
            if *region != scope.region || *account != scope.account {
                return Err(invalid(format!(
                    "The layer ARN {raw} is not in this request's account and region."
                )));
            }
            (*name).to_string()
        }
        _ => raw.to_string(),
    };
    validate::layer_name(&name)?;
    Ok(name)
}

/// A layer version ARN split into its scope, layer name and version number.
pub fn parse_layer_version_arn(arn: &str) -> Option<(Scope, String, u64)> {
    match arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "lambda", region, account, "layer", name, version] => Some((
            Scope::new(*account, *region),
            (*name).to_string(),
            version.parse().ok()?,
        )),
        _ => None,
    }
}

/// What a taggable ARN names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taggable {
    /// A function (unqualified).
    Function(String),
    /// An event source mapping by UUID.
    EventSourceMapping(String),
}

/// Parses the ARN of a taggable resource in the request's scope.
pub fn parse_taggable(scope: &Scope, arn: &str) -> Result<Taggable, AwsError> {
    let parts: Vec<&str> = arn.split(':').collect();
    let bad = || {
        crate::error::constraint(
            "resource",
            arn,
            "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:(function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?|event-source-mapping:[0-9a-fA-F-]{36})",
        )
    };
    let (region, account, kind, rest) = match parts.as_slice() {
        ["arn", _, "lambda", region, account, kind, rest @ ..] => (*region, *account, *kind, rest),
        _ => return Err(bad()),
    };
    if region != scope.region || account != scope.account {
        return Err(crate::error::not_found(format!(
            "The resource you requested does not exist. ({arn} is not in account {} region {})",
            scope.account, scope.region
        )));
    }
    match (kind, rest) {
        ("function", [name]) => {
            validate::function_name(name).map_err(|_| bad())?;
            Ok(Taggable::Function((*name).to_string()))
        }
        ("function", [_, _]) => Err(invalid(
            "Tags are not supported on function versions or aliases; tag the unqualified function ARN.",
        )),
        ("event-source-mapping", [uuid]) if uuid.len() == 36 => {
            Ok(Taggable::EventSourceMapping((*uuid).to_string()))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new("123456789012", "eu-west-1")
    }

    #[test]
    fn every_spelling_of_a_function_resolves_to_its_name() {
        let s = scope();
        let plain = parse_function_ref(&s, "f").unwrap();
        assert_eq!(
            plain,
            FunctionRef {
                name: "f".into(),
                qualifier: None
            }
        );
        assert_eq!(
            parse_function_ref(&s, "f:live")
                .unwrap()
                .qualifier
                .as_deref(),
            Some("live")
        );
        assert_eq!(
            parse_function_ref(&s, "123456789012:function:f")
                .unwrap()
                .name,
            "f"
        );
        let full = parse_function_ref(
            &s,
            "arn:aws:lambda:eu-west-1:123456789012:function:f:$LATEST",
        )
        .unwrap();
        assert_eq!(full.qualifier.as_deref(), Some("$LATEST"));
    }

    #[test]
    fn an_arn_of_another_region_is_refused() {
        let e = parse_function_ref(&scope(), "arn:aws:lambda:us-east-1:123456789012:function:f")
            .unwrap_err();
        assert_eq!(e.code, "InvalidParameterValueException");
    }

    #[test]
    fn conflicting_qualifiers_are_refused() {
        assert!(merge_qualifier(Some("1".into()), Some("2".into())).is_err());
        assert_eq!(
            merge_qualifier(None, Some("2".into())).unwrap().as_deref(),
            Some("2")
        );
    }

    #[test]
    fn qualified_function_arns_cannot_be_tagged() {
        let s = scope();
        assert_eq!(
            parse_taggable(&s, &function_arn(&s, "f")).unwrap(),
            Taggable::Function("f".into())
        );
        assert!(parse_taggable(&s, &format!("{}:1", function_arn(&s, "f"))).is_err());
    }
}
