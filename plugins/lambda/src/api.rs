//! The Lambda REST-JSON API: request routing, the operations, and their rules.
//!
//! Each operation is split in two: the async part (reading the body, storing a code package
//! in the blob store, asking S3 for an object) runs before the state lock; the state part is
//! a synchronous closure given to [`cryopod::StateCell::write`], so a request that fails
//! half-way changes nothing.

use base64::Engine;
use cryopod::{AwsError, Scope};
use http::{Method, StatusCode};
use imbl::{OrdMap, Vector};
use serde_json::{Map, Value, json};

use crate::error::{conflict, invalid, not_found, precondition, unsupported};
use crate::names::{self, FunctionRef, Taggable};
use crate::render;
use crate::state::{
    Alias, CodeRef, EventSourceMapping, Function, FunctionConfig, FunctionVersion, LambdaScope,
    LambdaState, LayerVersion, LoggingConfig, Statement,
};
use crate::validate::{self, Input, check_len, check_range, one_of};

/// Largest zip accepted inline (`ZipFile`), as AWS: 50 MiB.
pub const MAX_ZIP_BYTES: usize = 50 * 1024 * 1024;
/// Largest request body: a 50 MiB zip base64-encoded (69,905,068 bytes) plus the JSON around
/// it and the rest of a CreateFunction request.
pub const MAX_BODY_BYTES: usize = 70 * 1024 * 1024;
/// Largest `MemorySize` Lambda accepts (the model allows more for capacity providers).
pub const MAX_MEMORY_MB: i64 = 10240;
/// Largest `Timeout` Lambda accepts, in seconds.
pub const MAX_TIMEOUT_S: i64 = 900;
/// Most layers a function may use.
pub const MAX_LAYERS: usize = 5;

/// Configuration blocks stored and echoed without interpretation.
const EXTRA_FUNCTION_FIELDS: &[&str] = &[
    "VpcConfig",
    "DeadLetterConfig",
    "KMSKeyArn",
    "FileSystemConfigs",
    "ImageConfig",
    "TenancyConfig",
    "CapacityProviderConfig",
    "DurableConfig",
    "RuntimeConfig",
    "AcceleratorConfig",
];

/// Event source mapping settings stored and echoed without interpretation.
const EXTRA_ESM_FIELDS: &[&str] = &[
    "StartingPositionTimestamp",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "FilterCriteria",
    "KMSKeyArn",
    "MetricsConfig",
    "LoggingConfig",
    "ScalingConfig",
    "DestinationConfig",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "TumblingWindowInSeconds",
    "Topics",
    "Queues",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "FunctionResponseTypes",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
    "ProvisionedPollerConfig",
];

/// A routed request: the operation and its path parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `POST /2015-03-31/functions`
    CreateFunction,
    /// `GET /2015-03-31/functions`
    ListFunctions,
    /// `GET /2015-03-31/functions/{f}`
    GetFunction(String),
    /// `DELETE /2015-03-31/functions/{f}`
    DeleteFunction(String),
    /// `GET /2015-03-31/functions/{f}/configuration`
    GetFunctionConfiguration(String),
    /// `PUT /2015-03-31/functions/{f}/configuration`
    UpdateFunctionConfiguration(String),
    /// `PUT /2015-03-31/functions/{f}/code`
    UpdateFunctionCode(String),
    /// `POST /2015-03-31/functions/{f}/versions`
    PublishVersion(String),
    /// `GET /2015-03-31/functions/{f}/versions`
    ListVersionsByFunction(String),
    /// `POST /2015-03-31/functions/{f}/aliases`
    CreateAlias(String),
    /// `GET /2015-03-31/functions/{f}/aliases`
    ListAliases(String),
    /// `GET /2015-03-31/functions/{f}/aliases/{a}`
    GetAlias(String, String),
    /// `PUT /2015-03-31/functions/{f}/aliases/{a}`
    UpdateAlias(String, String),
    /// `DELETE /2015-03-31/functions/{f}/aliases/{a}`
    DeleteAlias(String, String),
    /// `POST /2015-03-31/functions/{f}/policy`
    AddPermission(String),
    /// `GET /2015-03-31/functions/{f}/policy`
    GetPolicy(String),
    /// `DELETE /2015-03-31/functions/{f}/policy/{sid}`
    RemovePermission(String, String),
    /// `POST /2015-03-31/event-source-mappings`
    CreateEventSourceMapping,
    /// `GET /2015-03-31/event-source-mappings`
    ListEventSourceMappings,
    /// `GET /2015-03-31/event-source-mappings/{uuid}`
    GetEventSourceMapping(String),
    /// `PUT /2015-03-31/event-source-mappings/{uuid}`
    UpdateEventSourceMapping(String),
    /// `DELETE /2015-03-31/event-source-mappings/{uuid}`
    DeleteEventSourceMapping(String),
    /// `POST /2018-10-31/layers/{l}/versions`
    PublishLayerVersion(String),
    /// `GET /2018-10-31/layers`
    ListLayers,
    /// `GET /2018-10-31/layers?find=LayerVersion&Arn=…`
    GetLayerVersionByArn,
    /// `GET /2018-10-31/layers/{l}/versions`
    ListLayerVersions(String),
    /// `GET /2018-10-31/layers/{l}/versions/{n}`
    GetLayerVersion(String, String),
    /// `DELETE /2018-10-31/layers/{l}/versions/{n}`
    DeleteLayerVersion(String, String),
    /// `POST /2017-03-31/tags/{arn}`
    TagResource(String),
    /// `DELETE /2017-03-31/tags/{arn}`
    UntagResource(String),
    /// `GET /2017-03-31/tags/{arn}`
    ListTags(String),
    /// `GET /2016-08-19/account-settings`
    GetAccountSettings,
    /// `POST /2015-03-31/functions/{f}/invocations` (runs the function: [`crate::invoke`])
    Invoke(String),
    /// `POST /2014-11-13/functions/{f}/invoke-async` (the legacy asynchronous invoke)
    InvokeAsync(String),
    /// Unsigned download of a function's zip: account, region, function, digest hex.
    DownloadFunctionCode(String, String, String, String),
    /// Unsigned download of a layer's zip: account, region, layer, digest hex.
    DownloadLayerCode(String, String, String, String),
    /// Anything else under Lambda's prefixes, named for the error message.
    Unsupported(String),
}

impl Op {
    /// Routes `method path`; path segments are percent-decoded (ARNs arrive as `%3A`).
    pub fn route(method: &Method, path: &str, query: &[(String, String)]) -> Op {
        let segs: Vec<String> = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let m = method.as_str();
        let own = |x: &str| x.to_string();
        match (m, s.as_slice()) {
            ("POST", ["2015-03-31", "functions"]) => Op::CreateFunction,
            ("GET", ["2015-03-31", "functions"]) => Op::ListFunctions,
            ("GET", ["2015-03-31", "functions", f]) => Op::GetFunction(own(f)),
            ("DELETE", ["2015-03-31", "functions", f]) => Op::DeleteFunction(own(f)),
            ("GET", ["2015-03-31", "functions", f, "configuration"]) => {
                Op::GetFunctionConfiguration(own(f))
            }
            ("PUT", ["2015-03-31", "functions", f, "configuration"]) => {
                Op::UpdateFunctionConfiguration(own(f))
            }
            ("PUT", ["2015-03-31", "functions", f, "code"]) => Op::UpdateFunctionCode(own(f)),
            ("POST", ["2015-03-31", "functions", f, "versions"]) => Op::PublishVersion(own(f)),
            ("GET", ["2015-03-31", "functions", f, "versions"]) => {
                Op::ListVersionsByFunction(own(f))
            }
            ("POST", ["2015-03-31", "functions", f, "aliases"]) => Op::CreateAlias(own(f)),
            ("GET", ["2015-03-31", "functions", f, "aliases"]) => Op::ListAliases(own(f)),
            ("GET", ["2015-03-31", "functions", f, "aliases", a]) => Op::GetAlias(own(f), own(a)),
            ("PUT", ["2015-03-31", "functions", f, "aliases", a]) => {
                Op::UpdateAlias(own(f), own(a))
            }
            ("DELETE", ["2015-03-31", "functions", f, "aliases", a]) => {
                Op::DeleteAlias(own(f), own(a))
            }
            ("POST", ["2015-03-31", "functions", f, "policy"]) => Op::AddPermission(own(f)),
            ("GET", ["2015-03-31", "functions", f, "policy"]) => Op::GetPolicy(own(f)),
            ("DELETE", ["2015-03-31", "functions", f, "policy", sid]) => {
                Op::RemovePermission(own(f), own(sid))
            }
            ("POST", ["2015-03-31", "functions", f, "invocations"]) => Op::Invoke(own(f)),
            ("POST", ["2014-11-13", "functions", f, "invoke-async"]) => Op::InvokeAsync(own(f)),
            (
                "POST",
                [
                    "2021-11-15",
                    "functions",
                    _,
                    "response-streaming-invocations",
                ],
            ) => Op::Unsupported("InvokeWithResponseStream".into()),
            ("POST", ["2015-03-31", "event-source-mappings"]) => Op::CreateEventSourceMapping,
            ("GET", ["2015-03-31", "event-source-mappings"]) => Op::ListEventSourceMappings,
            ("GET", ["2015-03-31", "event-source-mappings", u]) => {
                Op::GetEventSourceMapping(own(u))
            }
            ("PUT", ["2015-03-31", "event-source-mappings", u]) => {
                Op::UpdateEventSourceMapping(own(u))
            }
            ("DELETE", ["2015-03-31", "event-source-mappings", u]) => {
                Op::DeleteEventSourceMapping(own(u))
            }
            ("GET", ["2018-10-31", "layers"]) => {
                if query
                    .iter()
                    .any(|(k, v)| k == "find" && v == "LayerVersion")
                {
                    Op::GetLayerVersionByArn
                } else {
                    Op::ListLayers
                }
            }
            ("POST", ["2018-10-31", "layers", l, "versions"]) => Op::PublishLayerVersion(own(l)),
            ("GET", ["2018-10-31", "layers", l, "versions"]) => Op::ListLayerVersions(own(l)),
            ("GET", ["2018-10-31", "layers", l, "versions", n]) => {
                Op::GetLayerVersion(own(l), own(n))
            }
            ("DELETE", ["2018-10-31", "layers", l, "versions", n]) => {
                Op::DeleteLayerVersion(own(l), own(n))
            }
            ("POST", ["2017-03-31", "tags", arn]) => Op::TagResource(own(arn)),
            ("DELETE", ["2017-03-31", "tags", arn]) => Op::UntagResource(own(arn)),
            ("GET", ["2017-03-31", "tags", arn]) => Op::ListTags(own(arn)),
            ("GET", ["2016-08-19", "account-settings"]) => Op::GetAccountSettings,
            ("GET", ["2015-03-31", "code-download", a, r, f, d]) => {
                Op::DownloadFunctionCode(own(a), own(r), own(f), own(d))
            }
            ("GET", ["2018-10-31", "layer-download", a, r, l, d]) => {
                Op::DownloadLayerCode(own(a), own(r), own(l), own(d))
            }
            _ => Op::Unsupported(format!("{m} {path}")),
        }
    }

    /// Whether the operation has a JSON body worth reading.
    pub fn has_body(&self) -> bool {
        matches!(
            self,
            Op::CreateFunction
                | Op::UpdateFunctionConfiguration(_)
                | Op::UpdateFunctionCode(_)
                | Op::PublishVersion(_)
                | Op::CreateAlias(_)
                | Op::UpdateAlias(..)
                | Op::AddPermission(_)
                | Op::CreateEventSourceMapping
                | Op::UpdateEventSourceMapping(_)
                | Op::PublishLayerVersion(_)
                | Op::TagResource(_)
        )
    }
}

/// Where a code package comes from, before it is in the blob store.
#[derive(Debug)]
pub enum CodeSource {
    /// `ZipFile`, decoded.
    Zip(Vec<u8>),
    /// `S3Bucket`/`S3Key`/`S3ObjectVersion`, resolved through the S3 service.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Object version.
        version: Option<String>,
    },
    /// `ImageUri`, for `Image` functions (nothing to store).
    Image(String),
}

/// Reads `Code` / `Content` (or an `UpdateFunctionCode` body, which has the same fields).
pub fn code_source(code: &Input<'_>, allow_image: bool) -> Result<Option<CodeSource>, AwsError> {
    if let Some(b64) = code.str("ZipFile")? {
        // Bound the decoded size before decoding: 4 base64 chars are 3 bytes.
        if b64.len() / 4 * 3 > MAX_ZIP_BYTES + 3 {
            return Err(zip_too_large(b64.len() / 4 * 3));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| {
                crate::error::serialization(format!("ZipFile is not valid base64: {e}"))
            })?;
        if bytes.len() > MAX_ZIP_BYTES {
            return Err(zip_too_large(bytes.len()));
        }
        return Ok(Some(CodeSource::Zip(bytes)));
    }
    if let Some(bucket) = code.str("S3Bucket")? {
        check_len("S3Bucket", &bucket, 3, 63)?;
        let key = code.str("S3Key")?.ok_or_else(|| {
            invalid("Please provide a source for function code: S3Key is required with S3Bucket.")
        })?;
        check_len("S3Key", &key, 1, 1024)?;
        let version = code.str("S3ObjectVersion")?;
        return Ok(Some(CodeSource::S3 {
            bucket,
            key,
            version,
        }));
    }
    if allow_image && let Some(uri) = code.str("ImageUri")? {
        return Ok(Some(CodeSource::Image(uri)));
    }
    Ok(None)
}

fn zip_too_large(n: usize) -> AwsError {
    crate::error::too_large(format!(
        "Zipped size {n} bytes is over the {MAX_ZIP_BYTES} bytes limit for direct upload; upload the package to S3 and pass S3Bucket and S3Key instead."
    ))
}

/// The current time as Lambda writes `LastModified`: `2024-01-01T00:00:00.000+0000`.
pub fn now_string() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn function_not_found(scope: &Scope, name: &str, q: Option<&str>) -> AwsError {
    not_found(format!(
        "Function not found: {}",
        names::qualified_arn(scope, name, q)
    ))
}

fn resource_not_found() -> AwsError {
    not_found("The resource you requested does not exist.")
}

fn check_revision(expected: Option<&str>, actual: &str) -> Result<(), AwsError> {
    match expected {
        Some(e) if e != actual => Err(precondition(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        )),
        _ => Ok(()),
    }
}

/// Everything an operation needs to know about its request besides the body.
pub struct Ctx<'a> {
    /// The request's scope.
    pub scope: &'a Scope,
    /// `http://host:port` for URLs in answers.
    pub endpoint: &'a str,
    /// Query parameters.
    pub query: &'a [(String, String)],
}

impl Ctx<'_> {
    /// The first value of a query parameter.
    pub fn q(&self, name: &str) -> Option<String> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn max_items(&self, default: i64, max: i64) -> Result<usize, AwsError> {
        match self.q("MaxItems") {
            None => Ok(default as usize),
            Some(s) => {
                let n: i64 = s.parse().map_err(|_| {
                    crate::error::constraint("maxItems", &s, "Member must be an integer")
                })?;
                check_range("MaxItems", n, 1, max)?;
                Ok(n as usize)
            }
        }
    }

    fn function_ref(&self, raw: &str) -> Result<FunctionRef, AwsError> {
        let r = names::parse_function_ref(self.scope, raw)?;
        let qualifier = names::merge_qualifier(r.qualifier, self.q("Qualifier"))?;
        Ok(FunctionRef {
            name: r.name,
            qualifier,
        })
    }
}

/// Returns the items after `after` (exclusive), at most `max`, and the key to continue from.
fn paginate<K: Ord + Clone, T>(
    items: Vec<(K, T)>,
    after: Option<K>,
    max: usize,
) -> (Vec<T>, Option<K>) {
    let mut rest = items
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .peekable();
    let mut out = Vec::new();
    let mut last = None;
    while out.len() < max {
        match rest.next() {
            Some((k, v)) => {
                last = Some(k);
                out.push(v);
            }
            None => break,
        }
    }
    let next = if rest.peek().is_some() { last } else { None };
    (out, next)
}

fn with_marker(mut v: Value, field: &str, next: Option<String>) -> Value {
    if let (Some(n), Value::Object(o)) = (next, &mut v) {
        o.insert(field.into(), json!(n));
    }
    v
}

/// Reads the configuration fields of a Create/UpdateFunctionConfiguration body into `c`.
/// `creating` applies the defaults and the create-only requirements.
pub fn apply_config(
    body: &Input<'_>,
    c: &mut FunctionConfig,
    creating: bool,
) -> Result<(), AwsError> {
    if let Some(role) = body.str("Role")? {
        validate::role_arn(&role)?;
        c.role = role;
    }
    if let Some(r) = body.str("Runtime")? {
        validate::runtime(&r)?;
        c.runtime = Some(r);
    }
    if let Some(h) = body.str("Handler")? {
        check_len("Handler", &h, 0, 128)?;
        if h.chars().any(char::is_whitespace) {
            return Err(crate::error::constraint(
                "handler",
                &h,
                "Member must satisfy regular expression pattern: [^\\s]+",
            ));
        }
        c.handler = Some(h);
    }
    if let Some(d) = body.str("Description")? {
        check_len("Description", &d, 0, 256)?;
        c.description = d;
    }
    if let Some(t) = body.int("Timeout", 1, 5400)? {
        if t > MAX_TIMEOUT_S {
            return Err(invalid(format!(
                "'Timeout' value {t} failed to satisfy constraint: Member must have value less than or equal to {MAX_TIMEOUT_S}"
            )));
        }
        c.timeout = t as u32;
    }
    if let Some(m) = body.int("MemorySize", 128, 32768)? {
        if m > MAX_MEMORY_MB {
            return Err(invalid(format!(
                "'MemorySize' value failed to satisfy constraint: Member must have value less than or equal to {MAX_MEMORY_MB}"
            )));
        }
        c.memory_size = m as u32;
    }
    if let Some(env) = body.object("Environment")? {
        let vars = env.str_map("Variables")?.unwrap_or_default();
        validate::environment(&vars)?;
        c.environment = Some(vars);
    }
    if let Some(layers) = body.str_list("Layers")? {
        if layers.len() > MAX_LAYERS {
            return Err(invalid(format!(
                "Cannot reference more than {MAX_LAYERS} layers."
            )));
        }
        for l in &layers {
            if names::parse_layer_version_arn(l).is_none() {
                return Err(crate::error::constraint(
                    "layers",
                    l,
                    "Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+",
                ));
            }
        }
        c.layers = layers;
    }
    if creating && let Some(a) = body.str_list("Architectures")? {
        validate::architectures(&a)?;
        c.architectures = a;
    }
    if let Some(e) = body.object("EphemeralStorage")? {
        let size = e.int("Size", 512, 32768)?.ok_or_else(|| {
            crate::error::constraint("ephemeralStorage.size", "null", "Member must not be null")
        })?;
        if size > 10240 {
            return Err(invalid(
                "'EphemeralStorage.Size' value failed to satisfy constraint: Member must have value less than or equal to 10240",
            ));
        }
        c.ephemeral_storage = size as u32;
    }
    if let Some(t) = body.object("TracingConfig")?
        && let Some(mode) = t.str("Mode")?
    {
        one_of("TracingConfig.Mode", &mode, &["Active", "PassThrough"])?;
        c.tracing_mode = mode;
    }
    if let Some(s) = body.object("SnapStart")?
        && let Some(apply) = s.str("ApplyOn")?
    {
        one_of("SnapStart.ApplyOn", &apply, &["PublishedVersions", "None"])?;
        c.snap_start = apply;
    }
    if let Some(l) = body.object("LoggingConfig")? {
        if let Some(f) = l.str("LogFormat")? {
            one_of("LoggingConfig.LogFormat", &f, &["JSON", "Text"])?;
            c.logging.log_format = f;
        }
        if let Some(a) = l.str("ApplicationLogLevel")? {
            one_of(
                "LoggingConfig.ApplicationLogLevel",
                &a,
                &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"],
            )?;
            c.logging.application_log_level = Some(a);
        }
        if let Some(s) = l.str("SystemLogLevel")? {
            one_of(
                "LoggingConfig.SystemLogLevel",
                &s,
                &["DEBUG", "INFO", "WARN"],
            )?;
            c.logging.system_log_level = Some(s);
        }
        if let Some(g) = l.str("LogGroup")? {
            check_len("LoggingConfig.LogGroup", &g, 1, 512)?;
            c.logging.log_group = g;
        }
        if c.logging.log_format == "Text"
            && (c.logging.application_log_level.is_some() || c.logging.system_log_level.is_some())
        {
            return Err(invalid(
                "Function log levels can only be set when the log format is JSON.",
            ));
        }
    }
    for field in EXTRA_FUNCTION_FIELDS {
        if let Some(v) = body.raw(field) {
            c.extra.insert((*field).to_string(), v.to_string());
        }
    }
    if creating && c.package_type == "Zip" && (c.runtime.is_none() || c.handler.is_none()) {
        return Err(invalid(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
        ));
    }
    Ok(())
}

/// The default configuration of a new function, before the request's fields.
pub fn default_config(name: &str, package_type: &str) -> FunctionConfig {
    FunctionConfig {
        runtime: None,
        role: String::new(),
        handler: None,
        description: String::new(),
        timeout: 3,
        memory_size: 128,
        package_type: package_type.to_string(),
        code: None,
        image_uri: None,
        environment: None,
        layers: Vector::new(),
        architectures: Vector::unit("x86_64".to_string()),
        ephemeral_storage: 512,
        tracing_mode: "PassThrough".into(),
        snap_start: "None".into(),
        logging: LoggingConfig {
            log_format: "Text".into(),
            application_log_level: None,
            system_log_level: None,
            log_group: format!("/aws/lambda/{name}"),
        },
        extra: OrdMap::new(),
    }
}

/// Checks that the layers of `c` exist when they are in the request's own scope (layers of
/// other accounts cannot be checked here and are accepted as AWS would if shared).
fn check_layers(scope: &Scope, r: &LambdaScope, c: &FunctionConfig) -> Result<(), AwsError> {
    for arn in &c.layers {
        if let Some((s, name, n)) = names::parse_layer_version_arn(arn)
            && &s == scope
            && r.layers
                .get(&name)
                .and_then(|l| l.versions.get(&n))
                .is_none()
        {
            return Err(invalid(format!("Layer version {arn} does not exist.")));
        }
    }
    Ok(())
}

/// What decides whether `PublishVersion` has anything new to publish: code and configuration,
/// not the description (which a version may override).
fn same_content(a: &FunctionConfig, b: &FunctionConfig) -> bool {
    let mut a = a.clone();
    a.description = b.description.clone();
    &a == b
}

/// Publishes `$LATEST` as a new version, or returns the last version when nothing changed
/// since it (as AWS does).
fn publish(f: &mut Function, description: Option<String>) -> u64 {
    if let Some((n, last)) = f.versions.get_max()
        && same_content(&last.config, &f.latest.config)
        && description
            .as_ref()
            .is_none_or(|d| *d == last.config.description)
    {
        return *n;
    }
    f.last_version += 1;
    let n = f.last_version;
    let mut v = f.latest.clone();
    if let Some(d) = description {
        v.config.description = d;
    }
    v.last_modified = now_string();
    v.revision_id = new_revision();
    f.versions.insert(n, v);
    n
}

/// A function's version by qualifier: `(version label, data)`; aliases resolve to the
/// version they point at.
fn version_of<'f>(
    scope: &Scope,
    name: &str,
    f: &'f Function,
    q: Option<&str>,
) -> Result<(String, &'f FunctionVersion), AwsError> {
    match q {
        None | Some("$LATEST") => Ok(("$LATEST".into(), &f.latest)),
        Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u64 = q
                .parse()
                .map_err(|_| function_not_found(scope, name, Some(q)))?;
            f.versions
                .get(&n)
                .map(|v| (q.to_string(), v))
                .ok_or_else(|| function_not_found(scope, name, Some(q)))
        }
        Some(alias) => {
            let a = f
                .aliases
                .get(alias)
                .ok_or_else(|| function_not_found(scope, name, Some(alias)))?;
            version_of(scope, name, f, Some(&a.function_version))
        }
    }
}

fn get_function<'r>(
    scope: &Scope,
    r: &'r LambdaScope,
    name: &str,
) -> Result<&'r Function, AwsError> {
    r.functions
        .get(name)
        .ok_or_else(|| function_not_found(scope, name, None))
}

fn get_function_mut<'r>(
    scope: &Scope,
    r: &'r mut LambdaScope,
    name: &str,
) -> Result<&'r mut Function, AwsError> {
    r.functions
        .get_mut(name)
        .ok_or_else(|| function_not_found(scope, name, None))
}

fn config_json(
    ctx: &Ctx<'_>,
    r: &LambdaScope,
    name: &str,
    arn_q: Option<&str>,
    version: &str,
    v: &FunctionVersion,
) -> Value {
    render::function_configuration(ctx.scope, r, name, arn_q, version, v)
}

/// `CreateFunction`: the body is parsed, the code stored; this inserts the function.
pub fn create_function(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    body: &Input<'_>,
    code: CodeOutcome,
) -> Result<Value, AwsError> {
    let raw = body.req_str("FunctionName")?;
    let fref = names::parse_function_ref(ctx.scope, &raw)?;
    if fref.qualifier.is_some() {
        return Err(invalid(
            "A function name with a qualifier is not allowed when creating a function.",
        ));
    }
    let name = fref.name;
    let package_type = body.str("PackageType")?.unwrap_or_else(|| "Zip".into());
    one_of("PackageType", &package_type, &["Zip", "Image"])?;
    if body.str("Role")?.is_none() {
        return Err(crate::error::constraint(
            "role",
            "null",
            "Member must not be null",
        ));
    }
    let mut c = default_config(&name, &package_type);
    apply_config(body, &mut c, true)?;
    match (package_type.as_str(), code) {
        ("Zip", CodeOutcome::Zip(code)) => c.code = Some(code),
        ("Image", CodeOutcome::Image(uri)) => {
            c.image_uri = Some(uri);
            c.runtime = None;
            c.handler = None;
        }
        ("Zip", _) => {
            return Err(invalid(
                "Please provide a source for function code: ZipFile, or S3Bucket and S3Key.",
            ));
        }
        _ => {
            return Err(invalid(
                "Please provide a source for function code: ImageUri is required for PackageType Image.",
            ));
        }
    }
    let tags = body.str_map("Tags")?.unwrap_or_default();
    validate::tags(&tags)?;
    let do_publish = body.bool("Publish")?.unwrap_or(false);
    let r = state.scopes.get_mut(ctx.scope);
    check_layers(ctx.scope, r, &c)?;
    if r.functions.contains_key(&name) {
        return Err(conflict(format!("Function already exist: {name}")));
    }
    let mut f = Function {
        latest: FunctionVersion {
            config: c,
            last_modified: now_string(),
            revision_id: new_revision(),
        },
        versions: OrdMap::new(),
        last_version: 0,
        aliases: OrdMap::new(),
        policies: OrdMap::new(),
        tags,
    };
    let out = if do_publish {
        let n = publish(&mut f, None);
        let label = n.to_string();
        config_json(ctx, r, &name, Some(&label), &label, &f.versions[&n])
    } else {
        config_json(ctx, r, &name, None, "$LATEST", &f.latest)
    };
    tracing::info!(scope = %ctx.scope, function = %name, "created function");
    r.functions.insert(name, f);
    Ok(out)
}

/// The code of a request after the async part: stored zip or image URI.
#[derive(Debug)]
pub enum CodeOutcome {
    /// No code in the request.
    None,
    /// A zip now in the blob store.
    Zip(CodeRef),
    /// A container image.
    Image(String),
}

/// `GetFunction`.
pub fn get_function_op(state: &LambdaState, ctx: &Ctx<'_>, raw: &str) -> Result<Value, AwsError> {
    let fref = ctx.function_ref(raw)?;
    let empty = LambdaScope::default();
    let r = state.scopes.get(ctx.scope).unwrap_or(&empty);
    let f = get_function(ctx.scope, r, &fref.name)?;
    let q = fref.qualifier.as_deref();
    let (label, v) = version_of(ctx.scope, &fref.name, f, q)?;
    let mut out = Map::new();
    out.insert(
        "Configuration".into(),
        config_json(ctx, r, &fref.name, q, &label, v),
    );
    let code = match (&v.config.code, &v.config.image_uri) {
        (Some(code), _) => json!({
            "RepositoryType": "S3",
            "Location": render::function_code_url(ctx.endpoint, ctx.scope, &fref.name, code),
        }),
        (None, Some(uri)) => {
            json!({ "RepositoryType": "ECR", "ImageUri": uri, "ResolvedImageUri": uri })
        }
        (None, None) => json!({}),
    };
    out.insert("Code".into(), code);
    if !f.tags.is_empty() {
        out.insert("Tags".into(), json!(f.tags));
    }
    Ok(Value::Object(out))
}

/// `GetFunctionConfiguration`.
pub fn get_function_configuration(
    state: &LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
) -> Result<Value, AwsError> {
    let fref = ctx.function_ref(raw)?;
    let empty = LambdaScope::default();
    let r = state.scopes.get(ctx.scope).unwrap_or(&empty);
    let f = get_function(ctx.scope, r, &fref.name)?;
    let q = fref.qualifier.as_deref();
    let (label, v) = version_of(ctx.scope, &fref.name, f, q)?;
    Ok(config_json(ctx, r, &fref.name, q, &label, v))
}

/// `ListFunctions`: `$LATEST` of each function, or every version with `FunctionVersion=ALL`.
/// The marker is `name:ordinal` (`$LATEST` is ordinal 0).
pub fn list_functions(state: &LambdaState, ctx: &Ctx<'_>) -> Result<Value, AwsError> {
    let all = match ctx.q("FunctionVersion") {
        None => false,
        Some(v) => {
            one_of("FunctionVersion", &v, &["ALL"])?;
            true
        }
    };
    let max = ctx.max_items(50, 10000)?;
    let after = match ctx.q("Marker") {
        None => None,
        Some(m) => Some(parse_function_marker(&m)?),
    };
    let empty = LambdaScope::default();
    let r = state.scopes.get(ctx.scope).unwrap_or(&empty);
    let mut items = Vec::new();
    for (name, f) in &r.functions {
        items.push((
            (name.clone(), 0u64),
            config_json(ctx, r, name, None, "$LATEST", &f.latest),
        ));
        if all {
            for (n, v) in &f.versions {
                let label = n.to_string();
                items.push((
                    (name.clone(), *n),
                    config_json(ctx, r, name, Some(&label), &label, v),
                ));
            }
        }
    }
    let (page, next) = paginate(items, after, max);
    Ok(with_marker(
        json!({ "Functions": page }),
        "NextMarker",
        next.map(|(n, o)| format!("{n}:{o}")),
    ))
}

fn parse_function_marker(m: &str) -> Result<(String, u64), AwsError> {
    m.rsplit_once(':')
        .and_then(|(n, o)| Some((n.to_string(), o.parse().ok()?)))
        .ok_or_else(|| invalid(format!("Invalid marker: {m}")))
}

/// `DeleteFunction`: the whole function, or one published version with a numeric qualifier.
pub fn delete_function(state: &mut LambdaState, ctx: &Ctx<'_>, raw: &str) -> Result<(), AwsError> {
    let fref = ctx.function_ref(raw)?;
    let r = state.scopes.get_mut(ctx.scope);
    match fref.qualifier.as_deref() {
        None => {
            r.functions
                .remove(&fref.name)
                .ok_or_else(|| function_not_found(ctx.scope, &fref.name, None))?;
            tracing::info!(scope = %ctx.scope, function = %fref.name, "deleted function");
            Ok(())
        }
        Some("$LATEST") => Err(invalid(
            "$LATEST version cannot be deleted without deleting the function.",
        )),
        Some(q) => {
            let f = get_function_mut(ctx.scope, r, &fref.name)?;
            let n: u64 = q.parse().map_err(|_| {
                invalid("Deletion of aliases is not supported by DeleteFunction; use DeleteAlias.")
            })?;
            let users: Vec<&str> = f
                .aliases
                .iter()
                .filter(|(_, a)| a.function_version == q || a.routing.contains_key(q))
                .map(|(k, _)| k.as_str())
                .collect();
            if !users.is_empty() {
                return Err(conflict(format!(
                    "Unable to delete version because the following aliases reference it: [{}]",
                    users.join(", ")
                )));
            }
            f.versions
                .remove(&n)
                .ok_or_else(|| function_not_found(ctx.scope, &fref.name, Some(q)))?;
            f.policies.remove(q);
            Ok(())
        }
    }
}

/// `UpdateFunctionConfiguration`.
pub fn update_function_configuration(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    body: &Input<'_>,
) -> Result<Value, AwsError> {
    let fref = names::parse_function_ref(ctx.scope, raw)?;
    let r = state.scopes.get_mut(ctx.scope);
    let f = get_function(ctx.scope, r, &fref.name)?;
    check_revision(body.str("RevisionId")?.as_deref(), &f.latest.revision_id)?;
    let mut c = f.latest.config.clone();
    apply_config(body, &mut c, false)?;
    if c.package_type == "Image" && (body.raw("Runtime").is_some() || body.raw("Handler").is_some())
    {
        return Err(invalid(
            "Runtime and Handler cannot be set for functions packaged as container images.",
        ));
    }
    check_layers(ctx.scope, r, &c)?;
    let f = get_function_mut(ctx.scope, r, &fref.name)?;
    f.latest.config = c;
    f.latest.last_modified = now_string();
    f.latest.revision_id = new_revision();
    let f = get_function(ctx.scope, r, &fref.name)?;
    Ok(config_json(ctx, r, &fref.name, None, "$LATEST", &f.latest))
}

/// `UpdateFunctionCode`.
pub fn update_function_code(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    body: &Input<'_>,
    code: CodeOutcome,
) -> Result<Value, AwsError> {
    let fref = names::parse_function_ref(ctx.scope, raw)?;
    let r = state.scopes.get_mut(ctx.scope);
    let f = get_function_mut(ctx.scope, r, &fref.name)?;
    check_revision(body.str("RevisionId")?.as_deref(), &f.latest.revision_id)?;
    let mut c = f.latest.config.clone();
    match (c.package_type.as_str(), code) {
        ("Zip", CodeOutcome::Zip(code)) => c.code = Some(code),
        ("Image", CodeOutcome::Image(uri)) => c.image_uri = Some(uri),
        ("Zip", _) => {
            return Err(invalid(
                "Please provide a source for function code: ZipFile, or S3Bucket and S3Key.",
            ));
        }
        _ => {
            return Err(invalid(
                "Please provide ImageUri when updating a function with packageType Image.",
            ));
        }
    }
    if let Some(a) = body.str_list("Architectures")? {
        validate::architectures(&a)?;
        c.architectures = a;
    }
    if body.bool("DryRun")?.unwrap_or(false) {
        let mut v = f.latest.clone();
        v.config = c;
        return Ok(config_json(ctx, r, &fref.name, None, "$LATEST", &v));
    }
    f.latest.config = c;
    f.latest.last_modified = now_string();
    f.latest.revision_id = new_revision();
    let out_version = if body.bool("Publish")?.unwrap_or(false) {
        Some(publish(f, None))
    } else {
        None
    };
    let f = get_function(ctx.scope, r, &fref.name)?;
    Ok(match out_version {
        Some(n) => {
            let label = n.to_string();
            config_json(ctx, r, &fref.name, Some(&label), &label, &f.versions[&n])
        }
        None => config_json(ctx, r, &fref.name, None, "$LATEST", &f.latest),
    })
}

/// `PublishVersion`.
pub fn publish_version(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    body: &Input<'_>,
) -> Result<Value, AwsError> {
    let fref = names::parse_function_ref(ctx.scope, raw)?;
    let description = body.str("Description")?;
    if let Some(d) = &description {
        check_len("Description", d, 0, 256)?;
    }
    let r = state.scopes.get_mut(ctx.scope);
    let f = get_function_mut(ctx.scope, r, &fref.name)?;
    check_revision(body.str("RevisionId")?.as_deref(), &f.latest.revision_id)?;
    if let Some(sha) = body.str("CodeSha256")? {
        let actual = f
            .latest
            .config
            .code
            .map(|c| c.sha256_base64())
            .unwrap_or_default();
        if sha != actual {
            return Err(invalid(format!(
                "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({actual}). Please try again with the CodeSHA256 in $LATEST."
            )));
        }
    }
    let n = publish(f, description);
    let label = n.to_string();
    let f = get_function(ctx.scope, r, &fref.name)?;
    Ok(config_json(
        ctx,
        r,
        &fref.name,
        Some(&label),
        &label,
        &f.versions[&n],
    ))
}

/// `ListVersionsByFunction`: `$LATEST` then the versions in order; the marker is the ordinal.
pub fn list_versions(state: &LambdaState, ctx: &Ctx<'_>, raw: &str) -> Result<Value, AwsError> {
    let fref = names::parse_function_ref(ctx.scope, raw)?;
    let max = ctx.max_items(50, 10000)?;
    let after = match ctx.q("Marker") {
        None => None,
        Some(m) => Some(
            m.parse::<u64>()
                .map_err(|_| invalid(format!("Invalid marker: {m}")))?,
        ),
    };
    let empty = LambdaScope::default();
    let r = state.scopes.get(ctx.scope).unwrap_or(&empty);
    let f = get_function(ctx.scope, r, &fref.name)?;
    let mut items = vec![(
        0u64,
        config_json(ctx, r, &fref.name, Some("$LATEST"), "$LATEST", &f.latest),
    )];
    for (n, v) in &f.versions {
        let label = n.to_string();
        items.push((*n, config_json(ctx, r, &fref.name, Some(&label), &label, v)));
    }
    let (page, next) = paginate(items, after, max);
    Ok(with_marker(
        json!({ "Versions": page }),
        "NextMarker",
        next.map(|n| n.to_string()),
    ))
}

fn version_exists(f: &Function, v: &str) -> bool {
    v == "$LATEST" || v.parse::<u64>().is_ok_and(|n| f.versions.contains_key(&n))
}

fn routing(
    scope: &Scope,
    name: &str,
    f: &Function,
    primary: &str,
    body: &Input<'_>,
) -> Result<Option<OrdMap<String, f64>>, AwsError> {
    let Some(rc) = body.object("RoutingConfig")? else {
        return Ok(None);
    };
    let mut out = OrdMap::new();
    if let Some(Value::Object(weights)) = rc.raw("AdditionalVersionWeights") {
        if weights.len() > 1 {
            return Err(invalid(
                "Number of items in AdditionalVersionWeights cannot be greater than 1",
            ));
        }
        for (v, w) in weights {
            let w = w
                .as_f64()
                .ok_or_else(|| crate::error::serialization("weights must be numbers"))?;
            if !(0.0..=1.0).contains(&w) {
                return Err(crate::error::constraint(
                    "routingConfig.additionalVersionWeights",
                    &w.to_string(),
                    "Member must have value between 0.0 and 1.0",
                ));
            }
            if !version_exists(f, v) || v == "$LATEST" {
                return Err(function_not_found(scope, name, Some(v)));
            }
            if v == primary {
                return Err(invalid(format!(
                    "Invalid function version {v}. Function version {v} is already included in routing configuration."
                )));
            }
            out.insert(v.clone(), w);
        }
    }
    if !out.is_empty() && primary == "$LATEST" {
        return Err(invalid(
            "$LATEST is not supported for an alias pointing to more than 1 version",
        ));
    }
    Ok(Some(out))
}

/// `CreateAlias`.
pub fn create_alias(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    body: &Input<'_>,
) -> Result<Value, AwsError> {
    let fref = names::parse_function_ref(ctx.scope, raw)?;
    let alias = body.req_str("Name")?;
    validate::alias_name(&alias)?;
    let version = body.req_str("FunctionVersion")?;
    let description = body.str("Description")?.unwrap_or_default();
    check_len("Description", &description, 0, 256)?;
    let r = state.scopes.get_mut(ctx.scope);
    let f = get_function_mut(ctx.scope, r, &fref.name)?;
    if !version_exists(f, &version) {
        return Err(function_not_found(ctx.scope, &fref.name, Some(&version)));
    }
    let routing = routing(ctx.scope, &fref.name, f, &version, body)?.unwrap_or_default();
    if f.aliases.contains_key(&alias) {
        return Err(conflict(format!(
            "Alias already exists: {}",
            names::qualified_arn(ctx.scope, &fref.name, Some(&alias))
        )));
    }
    let a = Alias {
        function_version: version,
        description,
        routing,
        revision_id: new_revision(),
    };
    let out = render::alias(ctx.scope, &fref.name, &alias, &a);
    f.aliases.insert(alias, a);
    Ok(out)
}

/// `GetAlias`.
pub fn get_alias(
    state: &LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    alias: &str,
) -> Result<Value, AwsError> {
    let fref = names::parse_function_ref(ctx.scope, raw)?;
    validate::alias_name(alias)?;
    let empty = LambdaScope::default();
    let r = state.scopes.get(ctx.scope).unwrap_or(&empty);
    let f = get_function(ctx.scope, r, &fref.name)?;
    let a = f.aliases.get(alias).ok_or_else(|| {
        not_found(format!(
            "Cannot find alias arn: {}",
            names::qualified_arn(ctx.scope, &fref.name, Some(alias))
        ))
    })?;
    Ok(render::alias(ctx.scope, &fref.name, alias, a))
}

/// `ListAliases`, optionally only those pointing at `FunctionVersion`.
pub fn list_aliases(state: &LambdaState, ctx: &Ctx<'_>, raw: &str) -> Result<Value, AwsError> {
    let fref = names::parse_function_ref(ctx.scope, raw)?;
    let max = ctx.max_items(50, 10000)?;
    let version = ctx.q("FunctionVersion");
    let empty = LambdaScope::default();
    let r = state.scopes.get(ctx.scope).unwrap_or(&empty);
    let f = get_function(ctx.scope, r, &fref.name)?;
    let items: Vec<(String, Value)> = f
        .aliases
        .iter()
        .filter(|(_, a)| version.as_ref().is_none_or(|v| *v == a.function_version))
        .map(|(n, a)| (n.clone(), render::alias(ctx.scope, &fref.name, n, a)))
        .collect();
    let (page, next) = paginate(items, ctx.q("Marker"), max);
    Ok(with_marker(json!({ "Aliases": page }), "NextMarker", next))
}

/// `UpdateAlias`.
pub fn update_alias(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    alias: &str,
    body: &Input<'_>,
) -> Result<Value, AwsError> {
    let fref = names::parse_function_ref(ctx.scope, raw)?;
    validate::alias_name(alias)?;
    let r = state.scopes.get_mut(ctx.scope);
    let f = get_function_mut(ctx.scope, r, &fref.name)?;
    let mut a = f.aliases.get(alias).cloned().ok_or_else(|| {
        not_found(format!(
            "Alias not found: {}",
            names::qualified_arn(ctx.scope, &fref.name, Some(alias))
        ))
    })?;
    check_revision(body.str("RevisionId")?.as_deref(), &a.revision_id)?;
    if let Some(v) = body.str("FunctionVersion")? {
        if !version_exists(f, &v) {
            return Err(function_not_found(ctx.scope, &fref.name, Some(&v)));
        }
        a.function_version = v;
    }
    if let Some(d) = body.str("Description")? {
        check_len("Description", &d, 0, 256)?;
        a.description = d;
    }
    if let Some(rt) = routing(ctx.scope, &fref.name, f, &a.function_version, body)? {
        a.routing = rt;
    }
    a.revision_id = new_revision();
    let out = render::alias(ctx.scope, &fref.name, alias, &a);
    f.aliases.insert(alias.to_string(), a);
    Ok(out)
}

/// `DeleteAlias`: idempotent, as AWS (a missing alias is not an error).
pub fn delete_alias(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    alias: &str,
) -> Result<(), AwsError> {
    let fref = names::parse_function_ref(ctx.scope, raw)?;
    validate::alias_name(alias)?;
    let r = state.scopes.get_mut(ctx.scope);
    let f = get_function_mut(ctx.scope, r, &fref.name)?;
    f.aliases.remove(alias);
    f.policies.remove(alias);
    Ok(())
}

fn policy_target(
    ctx: &Ctx<'_>,
    f: &Function,
    name: &str,
    q: Option<&str>,
) -> Result<(String, String), AwsError> {
    match q {
        None => Ok((String::new(), names::function_arn(ctx.scope, name))),
        Some("$LATEST") => Err(invalid(
            "We currently do not support adding policies for $LATEST.",
        )),
        Some(q) => {
            let exists = if q.bytes().all(|b| b.is_ascii_digit()) {
                q.parse::<u64>().is_ok_and(|n| f.versions.contains_key(&n))
            } else {
                f.aliases.contains_key(q)
            };
            if !exists {
                return Err(function_not_found(ctx.scope, name, Some(q)));
            }
            Ok((
                q.to_string(),
                names::qualified_arn(ctx.scope, name, Some(q)),
            ))
        }
    }
}

/// `AddPermission`.
pub fn add_permission(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    body: &Input<'_>,
) -> Result<Value, AwsError> {
    let fref = ctx.function_ref(raw)?;
    let sid = body.req_str("StatementId")?;
    validate::statement_id(&sid, false)?;
    let action = body.req_str("Action")?;
    let action_ok = action == "*"
        || action == "lambda:*"
        || action
            .strip_prefix("lambda:")
            .is_some_and(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphabetic()));
    if !action_ok {
        return Err(crate::error::constraint(
            "action",
            &action,
            "Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])",
        ));
    }
    let principal = body.req_str("Principal")?;
    if principal.is_empty() || principal.chars().any(char::is_whitespace) {
        return Err(crate::error::constraint(
            "principal",
            &principal,
            "Member must satisfy regular expression pattern: [^\\s]+",
        ));
    }
    let source_account = body.str("SourceAccount")?;
    if let Some(a) = &source_account
        && (a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(crate::error::constraint(
            "sourceAccount",
            a,
            "Member must satisfy regular expression pattern: \\d{12}",
        ));
    }
    let function_url_auth_type = body.str("FunctionUrlAuthType")?;
    if let Some(t) = &function_url_auth_type {
        one_of("FunctionUrlAuthType", t, &["NONE", "AWS_IAM"])?;
    }
    let st = Statement {
        sid: sid.clone(),
        action,
        principal,
        source_arn: body.str("SourceArn")?,
        source_account,
        event_source_token: body.str("EventSourceToken")?,
        principal_org_id: body.str("PrincipalOrgID")?,
        function_url_auth_type,
    };
    let r = state.scopes.get_mut(ctx.scope);
    let f = get_function_mut(ctx.scope, r, &fref.name)?;
    let (key, resource) = policy_target(ctx, f, &fref.name, fref.qualifier.as_deref())?;
    let policy = f.policies.entry(key).or_default();
    if !policy.statements.is_empty() {
        check_revision(body.str("RevisionId")?.as_deref(), &policy.revision_id)?;
    }
    if policy.statements.iter().any(|s| s.sid == sid) {
        return Err(conflict(format!(
            "The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."
        )));
    }
    let out = render::statement(&resource, &st);
    policy.statements.push_back(st);
    policy.revision_id = new_revision();
    Ok(json!({ "Statement": out.to_string() }))
}

/// `GetPolicy`.
pub fn get_policy(state: &LambdaState, ctx: &Ctx<'_>, raw: &str) -> Result<Value, AwsError> {
    let fref = ctx.function_ref(raw)?;
    let empty = LambdaScope::default();
    let r = state.scopes.get(ctx.scope).unwrap_or(&empty);
    let f = get_function(ctx.scope, r, &fref.name)?;
    let (key, resource) = match fref.qualifier.as_deref() {
        Some("$LATEST") => return Err(resource_not_found()),
        q => policy_target(ctx, f, &fref.name, q)?,
    };
    let p = f
        .policies
        .get(&key)
        .filter(|p| !p.statements.is_empty())
        .ok_or_else(resource_not_found)?;
    Ok(json!({
        "Policy": render::policy(&resource, p).to_string(),
        "RevisionId": p.revision_id,
    }))
}

/// `RemovePermission`.
pub fn remove_permission(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    sid: &str,
) -> Result<(), AwsError> {
    let fref = ctx.function_ref(raw)?;
    validate::statement_id(sid, true)?;
    let r = state.scopes.get_mut(ctx.scope);
    let f = get_function_mut(ctx.scope, r, &fref.name)?;
    let (key, _) = match fref.qualifier.as_deref() {
        Some("$LATEST") => return Err(resource_not_found()),
        q => policy_target(ctx, f, &fref.name, q)?,
    };
    let missing = || not_found(format!("Statement {sid} is not found in resource policy."));
    let p = f.policies.get_mut(&key).ok_or_else(missing)?;
    check_revision(ctx.q("RevisionId").as_deref(), &p.revision_id)?;
    let idx = p
        .statements
        .iter()
        .position(|s| s.sid == sid)
        .ok_or_else(missing)?;
    p.statements.remove(idx);
    p.revision_id = new_revision();
    if p.statements.is_empty() {
        f.policies.remove(&key);
    }
    Ok(())
}

fn source_kind(arn: &str) -> &str {
    arn.split(':').nth(2).unwrap_or("")
}

fn check_esm_fields(body: &Input<'_>) -> Result<(), AwsError> {
    body.int("BatchSize", 1, 10000)?;
    body.int("MaximumBatchingWindowInSeconds", 0, 300)?;
    body.int("ParallelizationFactor", 1, 10)?;
    body.int("MaximumRecordAgeInSeconds", -1, 604800)?;
    body.int("MaximumRetryAttempts", -1, 10000)?;
    body.int("TumblingWindowInSeconds", 0, 900)?;
    Ok(())
}

fn esm_extra(body: &Input<'_>, extra: &mut OrdMap<String, String>) {
    for field in EXTRA_ESM_FIELDS {
        if let Some(v) = body.raw(field) {
            extra.insert((*field).to_string(), v.to_string());
        }
    }
}

fn esm_function_arn(r: &LambdaScope, ctx: &Ctx<'_>, raw: &str) -> Result<String, AwsError> {
    let fref = names::parse_function_ref(ctx.scope, raw)?;
    let f = get_function(ctx.scope, r, &fref.name)?;
    if let Some(q) = fref.qualifier.as_deref() {
        version_of(ctx.scope, &fref.name, f, Some(q))?;
    }
    Ok(names::qualified_arn(
        ctx.scope,
        &fref.name,
        fref.qualifier.as_deref(),
    ))
}

/// `CreateEventSourceMapping`: stored only; the emulator does not poll sources.
pub fn create_event_source_mapping(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    body: &Input<'_>,
) -> Result<Value, AwsError> {
    let raw = body.req_str("FunctionName")?;
    let source = body.str("EventSourceArn")?;
    if source.is_none() && body.raw("SelfManagedEventSource").is_none() {
        return Err(invalid(
            "Unrecognized event source, must be kinesis, dynamodb stream, sqs, msk, mq, documentdb or self-managed kafka.",
        ));
    }
    let kind = source
        .as_deref()
        .map(source_kind)
        .unwrap_or("kafka")
        .to_string();
    check_esm_fields(body)?;
    let starting = body.str("StartingPosition")?;
    if let Some(p) = &starting {
        one_of(
            "StartingPosition",
            p,
            &["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"],
        )?;
    }
    let streams = matches!(kind.as_str(), "kinesis" | "dynamodb" | "kafka");
    if streams && starting.is_none() {
        return Err(invalid(format!(
            "1 validation error detected: StartingPosition is required for {kind} event sources."
        )));
    }
    if !streams && starting.is_some() {
        return Err(invalid(format!(
            "Unsupported starting position for arn type: {kind}"
        )));
    }
    let default_batch = if kind == "sqs" { 10 } else { 100 };
    let batch = body.int("BatchSize", 1, 10000)?.unwrap_or(default_batch) as u32;
    let tags = body.str_map("Tags")?.unwrap_or_default();
    validate::tags(&tags)?;
    let r = state.scopes.get_mut(ctx.scope);
    let function_arn = esm_function_arn(r, ctx, &raw)?;
    if let Some(src) = &source
        && let Some((uuid, _)) = r.event_source_mappings.iter().find(|(_, m)| {
            m.event_source_arn.as_ref() == Some(src) && m.function_arn == function_arn
        })
    {
        return Err(conflict(format!(
            "The event source arn ({src}) and function ({function_arn}) provided mapping already exists. Please update or delete the existing mapping with UUID {uuid}"
        )));
    }
    let mut m = EventSourceMapping {
        function_arn,
        event_source_arn: source,
        batch_size: batch,
        enabled: body.bool("Enabled")?.unwrap_or(true),
        starting_position: starting,
        last_modified_ms: now_ms(),
        tags,
        extra: OrdMap::new(),
    };
    esm_extra(body, &mut m.extra);
    let uuid = uuid::Uuid::new_v4().to_string();
    let out = render::event_source_mapping(ctx.scope, &uuid, &m, None);
    r.event_source_mappings.insert(uuid, m);
    Ok(out)
}

/// `GetEventSourceMapping`.
pub fn get_event_source_mapping(
    state: &LambdaState,
    ctx: &Ctx<'_>,
    uuid: &str,
) -> Result<Value, AwsError> {
    check_len("UUID", uuid, 36, 36)?;
    let m = state
        .scopes
        .get(ctx.scope)
        .and_then(|r| r.event_source_mappings.get(uuid))
        .ok_or_else(|| esm_not_found(uuid))?;
    Ok(render::event_source_mapping(ctx.scope, uuid, m, None))
}

fn esm_not_found(uuid: &str) -> AwsError {
    not_found(format!(
        "The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})"
    ))
}

/// `ListEventSourceMappings`, filtered by `EventSourceArn` and/or `FunctionName`.
pub fn list_event_source_mappings(state: &LambdaState, ctx: &Ctx<'_>) -> Result<Value, AwsError> {
    let max = ctx.max_items(100, 10000)?;
    let source = ctx.q("EventSourceArn");
    let function = match ctx.q("FunctionName") {
        None => None,
        Some(f) => {
            let r = names::parse_function_ref(ctx.scope, &f)?;
            Some(names::qualified_arn(
                ctx.scope,
                &r.name,
                r.qualifier.as_deref(),
            ))
        }
    };
    let empty = LambdaScope::default();
    let r = state.scopes.get(ctx.scope).unwrap_or(&empty);
    let items: Vec<(String, Value)> = r
        .event_source_mappings
        .iter()
        .filter(|(_, m)| {
            source
                .as_ref()
                .is_none_or(|s| m.event_source_arn.as_ref() == Some(s))
        })
        .filter(|(_, m)| {
            function.as_ref().is_none_or(|f| {
                m.function_arn == *f || m.function_arn.starts_with(&format!("{f}:"))
            })
        })
        .map(|(u, m)| {
            (
                u.clone(),
                render::event_source_mapping(ctx.scope, u, m, None),
            )
        })
        .collect();
    let (page, next) = paginate(items, ctx.q("Marker"), max);
    Ok(with_marker(
        json!({ "EventSourceMappings": page }),
        "NextMarker",
        next,
    ))
}

/// `UpdateEventSourceMapping`.
pub fn update_event_source_mapping(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    uuid: &str,
    body: &Input<'_>,
) -> Result<Value, AwsError> {
    check_len("UUID", uuid, 36, 36)?;
    let r = state.scopes.get_mut(ctx.scope);
    let mut m = r
        .event_source_mappings
        .get(uuid)
        .cloned()
        .ok_or_else(|| esm_not_found(uuid))?;
    check_esm_fields(body)?;
    if let Some(f) = body.str("FunctionName")? {
        m.function_arn = esm_function_arn(r, ctx, &f)?;
    }
    if let Some(b) = body.int("BatchSize", 1, 10000)? {
        m.batch_size = b as u32;
    }
    if let Some(e) = body.bool("Enabled")? {
        m.enabled = e;
    }
    esm_extra(body, &mut m.extra);
    m.last_modified_ms = now_ms();
    let out = render::event_source_mapping(ctx.scope, uuid, &m, None);
    r.event_source_mappings.insert(uuid.to_string(), m);
    Ok(out)
}

/// `DeleteEventSourceMapping`: answers the mapping in state `Deleting`.
pub fn delete_event_source_mapping(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    uuid: &str,
) -> Result<Value, AwsError> {
    check_len("UUID", uuid, 36, 36)?;
    let r = state.scopes.get_mut(ctx.scope);
    let m = r
        .event_source_mappings
        .remove(uuid)
        .ok_or_else(|| esm_not_found(uuid))?;
    Ok(render::event_source_mapping(
        ctx.scope,
        uuid,
        &m,
        Some("Deleting"),
    ))
}

/// The metadata of `PublishLayerVersion`, validated before the code is stored.
pub struct LayerMeta {
    /// Description.
    pub description: String,
    /// Runtimes.
    pub runtimes: Vector<String>,
    /// Architectures.
    pub architectures: Vector<String>,
    /// License.
    pub license: Option<String>,
}

/// Validates the non-code fields of `PublishLayerVersion`.
pub fn layer_meta(body: &Input<'_>) -> Result<LayerMeta, AwsError> {
    let description = body.str("Description")?.unwrap_or_default();
    check_len("Description", &description, 0, 256)?;
    let runtimes = body.str_list("CompatibleRuntimes")?.unwrap_or_default();
    if runtimes.len() > 15 {
        return Err(crate::error::constraint(
            "compatibleRuntimes",
            &format!("{} items", runtimes.len()),
            "Member must have length less than or equal to 15",
        ));
    }
    for r in &runtimes {
        one_of("CompatibleRuntimes", r, validate::RUNTIMES)?;
    }
    let architectures = body
        .str_list("CompatibleArchitectures")?
        .unwrap_or_default();
    if architectures.len() > 2 {
        return Err(crate::error::constraint(
            "compatibleArchitectures",
            &format!("{} items", architectures.len()),
            "Member must have length less than or equal to 2",
        ));
    }
    for a in &architectures {
        one_of("CompatibleArchitectures", a, &["x86_64", "arm64"])?;
    }
    let license = body.str("LicenseInfo")?;
    if let Some(l) = &license {
        check_len("LicenseInfo", l, 0, 512)?;
    }
    Ok(LayerMeta {
        description,
        runtimes,
        architectures,
        license,
    })
}

/// `PublishLayerVersion`: the code is stored; this adds the version.
pub fn publish_layer_version(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    name: &str,
    meta: LayerMeta,
    code: CodeRef,
) -> Result<Value, AwsError> {
    let r = state.scopes.get_mut(ctx.scope);
    let layer = r.layers.entry(name.to_string()).or_default();
    layer.last_version += 1;
    let n = layer.last_version;
    let v = LayerVersion {
        description: meta.description,
        created_date: now_string(),
        compatible_runtimes: meta.runtimes,
        compatible_architectures: meta.architectures,
        license_info: meta.license,
        code,
    };
    let out = render::layer_version_full(ctx.endpoint, ctx.scope, name, n, &v);
    layer.versions.insert(n, v);
    tracing::info!(scope = %ctx.scope, layer = %name, version = n, "published layer version");
    Ok(out)
}

fn layer_matches(v: &LayerVersion, runtime: Option<&String>, arch: Option<&String>) -> bool {
    runtime.is_none_or(|r| v.compatible_runtimes.contains(r))
        && arch.is_none_or(|a| v.compatible_architectures.contains(a))
}

fn layer_filters(ctx: &Ctx<'_>) -> Result<(Option<String>, Option<String>), AwsError> {
    let runtime = ctx.q("CompatibleRuntime");
    if let Some(r) = &runtime {
        one_of("CompatibleRuntime", r, validate::RUNTIMES)?;
    }
    let arch = ctx.q("CompatibleArchitecture");
    if let Some(a) = &arch {
        one_of("CompatibleArchitecture", a, &["x86_64", "arm64"])?;
    }
    Ok((runtime, arch))
}

/// `ListLayers`: each layer with its newest version matching the filters.
pub fn list_layers(state: &LambdaState, ctx: &Ctx<'_>) -> Result<Value, AwsError> {
    let max = ctx.max_items(50, 50)?;
    let (runtime, arch) = layer_filters(ctx)?;
    let empty = LambdaScope::default();
    let r = state.scopes.get(ctx.scope).unwrap_or(&empty);
    let items: Vec<(String, Value)> = r
        .layers
        .iter()
        .filter_map(|(name, l)| {
            let (n, v) = l
                .versions
                .iter()
                .rev()
                .find(|(_, v)| layer_matches(v, runtime.as_ref(), arch.as_ref()))?;
            Some((
                name.clone(),
                json!({
                    "LayerName": name,
                    "LayerArn": names::layer_arn(ctx.scope, name),
                    "LatestMatchingVersion": Value::Object(render::layer_version(ctx.scope, name, *n, v)),
                }),
            ))
        })
        .collect();
    let (page, next) = paginate(items, ctx.q("Marker"), max);
    Ok(with_marker(json!({ "Layers": page }), "NextMarker", next))
}

/// `ListLayerVersions`: newest first; the marker is the last version number returned.
pub fn list_layer_versions(
    state: &LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
) -> Result<Value, AwsError> {
    let name = names::parse_layer_name(ctx.scope, raw)?;
    let max = ctx.max_items(50, 50)?;
    let (runtime, arch) = layer_filters(ctx)?;
    let after = match ctx.q("Marker") {
        None => None,
        Some(m) => Some(std::cmp::Reverse(
            m.parse::<u64>()
                .map_err(|_| invalid(format!("Invalid marker: {m}")))?,
        )),
    };
    let items: Vec<(std::cmp::Reverse<u64>, Value)> = state
        .scopes
        .get(ctx.scope)
        .and_then(|r| r.layers.get(&name))
        .map(|l| {
            l.versions
                .iter()
                .rev()
                .filter(|(_, v)| layer_matches(v, runtime.as_ref(), arch.as_ref()))
                .map(|(n, v)| {
                    (
                        std::cmp::Reverse(*n),
                        Value::Object(render::layer_version(ctx.scope, &name, *n, v)),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let (page, next) = paginate(items, after, max);
    Ok(with_marker(
        json!({ "LayerVersions": page }),
        "NextMarker",
        next.map(|n| n.0.to_string()),
    ))
}

fn layer_version_number(raw: &str) -> Result<u64, AwsError> {
    raw.parse::<u64>()
        .map_err(|_| crate::error::constraint("versionNumber", raw, "Member must be a number"))
}

/// `GetLayerVersion`.
pub fn get_layer_version(
    state: &LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    n: &str,
) -> Result<Value, AwsError> {
    let name = names::parse_layer_name(ctx.scope, raw)?;
    let n = layer_version_number(n)?;
    let v = state
        .scopes
        .get(ctx.scope)
        .and_then(|r| r.layers.get(&name))
        .and_then(|l| l.versions.get(&n))
        .ok_or_else(resource_not_found)?;
    Ok(render::layer_version_full(
        ctx.endpoint,
        ctx.scope,
        &name,
        n,
        v,
    ))
}

/// `GetLayerVersionByArn`.
pub fn get_layer_version_by_arn(state: &LambdaState, ctx: &Ctx<'_>) -> Result<Value, AwsError> {
    let arn = ctx
        .q("Arn")
        .ok_or_else(|| crate::error::constraint("arn", "null", "Member must not be null"))?;
    let (scope, name, n) = names::parse_layer_version_arn(&arn).ok_or_else(|| {
        crate::error::constraint(
            "arn",
            &arn,
            "Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+",
        )
    })?;
    if &scope != ctx.scope {
        return Err(resource_not_found());
    }
    get_layer_version(state, ctx, &name, &n.to_string())
}

/// `DeleteLayerVersion`: idempotent, as AWS. The layer keeps its version counter.
pub fn delete_layer_version(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    raw: &str,
    n: &str,
) -> Result<(), AwsError> {
    let name = names::parse_layer_name(ctx.scope, raw)?;
    let n = layer_version_number(n)?;
    if let Some(l) = state.scopes.get_mut(ctx.scope).layers.get_mut(&name) {
        l.versions.remove(&n);
    }
    Ok(())
}

fn tags_of<'r>(
    ctx: &Ctx<'_>,
    r: &'r mut LambdaScope,
    arn: &str,
) -> Result<&'r mut OrdMap<String, String>, AwsError> {
    match names::parse_taggable(ctx.scope, arn)? {
        Taggable::Function(name) => Ok(&mut get_function_mut(ctx.scope, r, &name)?.tags),
        Taggable::EventSourceMapping(uuid) => Ok(&mut r
            .event_source_mappings
            .get_mut(&uuid)
            .ok_or_else(|| esm_not_found(&uuid))?
            .tags),
    }
}

/// `TagResource`.
pub fn tag_resource(
    state: &mut LambdaState,
    ctx: &Ctx<'_>,
    arn: &str,
    body: &Input<'_>,
) -> Result<(), AwsError> {
    let new = body
        .str_map("Tags")?
        .ok_or_else(|| crate::error::constraint("tags", "null", "Member must not be null"))?;
    let r = state.scopes.get_mut(ctx.scope);
    let tags = tags_of(ctx, r, arn)?;
    let mut merged = tags.clone();
    merged.extend(new);
    validate::tags(&merged)?;
    *tags = merged;
    Ok(())
}

/// `UntagResource`.
pub fn untag_resource(state: &mut LambdaState, ctx: &Ctx<'_>, arn: &str) -> Result<(), AwsError> {
    let keys: Vec<String> = ctx
        .query
        .iter()
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v.clone())
        .collect();
    let r = state.scopes.get_mut(ctx.scope);
    let tags = tags_of(ctx, r, arn)?;
    for k in keys {
        tags.remove(&k);
    }
    Ok(())
}

/// `ListTags`.
pub fn list_tags(state: &LambdaState, ctx: &Ctx<'_>, arn: &str) -> Result<Value, AwsError> {
    let mut r = state.scopes.get(ctx.scope).cloned().unwrap_or_default();
    let tags = tags_of(ctx, &mut r, arn)?;
    Ok(json!({ "Tags": tags }))
}

/// `GetAccountSettings`: Lambda's default quotas and this scope's usage.
pub fn account_settings(state: &LambdaState, ctx: &Ctx<'_>) -> Value {
    let empty = LambdaScope::default();
    let r = state.scopes.get(ctx.scope).unwrap_or(&empty);
    let mut digests = std::collections::BTreeSet::new();
    let mut total = 0u64;
    for f in r.functions.values() {
        for c in std::iter::once(&f.latest)
            .chain(f.versions.values())
            .filter_map(|v| v.config.code)
        {
            if digests.insert(c.digest) {
                total += c.size;
            }
        }
    }
    json!({
        "AccountLimit": {
            "TotalCodeSize": 80_530_636_800u64,
            "CodeSizeUnzipped": crate::zip::MAX_UNZIPPED_BYTES,
            "CodeSizeZipped": MAX_ZIP_BYTES,
            "ConcurrentExecutions": 1000,
            "UnreservedConcurrentExecutions": 1000,
        },
        "AccountUsage": { "TotalCodeSize": total, "FunctionCount": r.functions.len() },
    })
}

/// Whether `name` in `scope` uses the package with digest `hex` (any version): what lets an
/// unsigned download URL serve it.
pub fn function_uses(state: &LambdaState, scope: &Scope, name: &str, hex: &str) -> Option<CodeRef> {
    let f = state.scopes.get(scope)?.functions.get(name)?;
    std::iter::once(&f.latest)
        .chain(f.versions.values())
        .filter_map(|v| v.config.code)
        .find(|c| c.digest.hex() == hex)
}

/// Whether layer `name` in `scope` has a version with digest `hex`.
pub fn layer_uses(state: &LambdaState, scope: &Scope, name: &str, hex: &str) -> Option<CodeRef> {
    state
        .scopes
        .get(scope)?
        .layers
        .get(name)?
        .versions
        .values()
        .map(|v| v.code)
        .find(|c| c.digest.hex() == hex)
}

/// The answer to an operation outside the emulated control plane.
pub fn unsupported_op(what: &str) -> AwsError {
    unsupported(what)
}

/// The success status AWS uses for each operation (botocore's `responseCode`).
pub fn success_status(op: &Op) -> StatusCode {
    match op {
        Op::CreateFunction
        | Op::PublishVersion(_)
        | Op::CreateAlias(_)
        | Op::AddPermission(_)
        | Op::PublishLayerVersion(_) => StatusCode::CREATED,
        Op::CreateEventSourceMapping
        | Op::UpdateEventSourceMapping(_)
        | Op::DeleteEventSourceMapping(_) => StatusCode::ACCEPTED,
        Op::DeleteFunction(_)
        | Op::DeleteAlias(..)
        | Op::RemovePermission(..)
        | Op::DeleteLayerVersion(..)
        | Op::TagResource(_)
        | Op::UntagResource(_) => StatusCode::NO_CONTENT,
        _ => StatusCode::OK,
    }
}
