//! The registration is consistent (one statement of service, state and version, checked
//! against the built provider), and every operation it lists, which the README's service
//! table shows, is routed to a handler rather than answered as unsupported.

use cryopod::Body;

/// `(method, path)` of each operation, as the Lambda REST API addresses it.
fn route(op: &str) -> (&'static str, &'static str) {
    match op {
        "AddPermission" => ("POST", "/2015-03-31/functions/f/policy"),
        "CreateAlias" => ("POST", "/2015-03-31/functions/f/aliases"),
        "CreateEventSourceMapping" => ("POST", "/2015-03-31/event-source-mappings"),
        "CreateFunction" => ("POST", "/2015-03-31/functions"),
        "DeleteAlias" => ("DELETE", "/2015-03-31/functions/f/aliases/a"),
        "DeleteEventSourceMapping" => ("DELETE", "/2015-03-31/event-source-mappings/u"),
        "DeleteFunction" => ("DELETE", "/2015-03-31/functions/f"),
        "DeleteLayerVersion" => ("DELETE", "/2018-10-31/layers/l/versions/1"),
        "GetAccountSettings" => ("GET", "/2016-08-19/account-settings"),
        "GetAlias" => ("GET", "/2015-03-31/functions/f/aliases/a"),
        "GetEventSourceMapping" => ("GET", "/2015-03-31/event-source-mappings/u"),
        "GetFunction" => ("GET", "/2015-03-31/functions/f"),
        "GetFunctionConfiguration" => ("GET", "/2015-03-31/functions/f/configuration"),
        "GetLayerVersion" => ("GET", "/2018-10-31/layers/l/versions/1"),
        "GetLayerVersionByArn" => (
            "GET",
            "/2018-10-31/layers?find=LayerVersion&Arn=arn:aws:lambda:us-east-1:000000000000:layer:l:1",
        ),
        "GetPolicy" => ("GET", "/2015-03-31/functions/f/policy"),
        "Invoke" => ("POST", "/2015-03-31/functions/f/invocations"),
        "InvokeAsync" => ("POST", "/2014-11-13/functions/f/invoke-async"),
        "ListAliases" => ("GET", "/2015-03-31/functions/f/aliases"),
        "ListEventSourceMappings" => ("GET", "/2015-03-31/event-source-mappings"),
        "ListFunctions" => ("GET", "/2015-03-31/functions"),
        "ListLayerVersions" => ("GET", "/2018-10-31/layers/l/versions"),
        "ListLayers" => ("GET", "/2018-10-31/layers"),
        "ListTags" => (
            "GET",
            "/2017-03-31/tags/arn:aws:lambda:us-east-1:000000000000:function:f",
        ),
        "ListVersionsByFunction" => ("GET", "/2015-03-31/functions/f/versions"),
        "PublishLayerVersion" => ("POST", "/2018-10-31/layers/l/versions"),
        "PublishVersion" => ("POST", "/2015-03-31/functions/f/versions"),
        "RemovePermission" => ("DELETE", "/2015-03-31/functions/f/policy/sid"),
        "TagResource" => (
            "POST",
            "/2017-03-31/tags/arn:aws:lambda:us-east-1:000000000000:function:f",
        ),
        "UntagResource" => (
            "DELETE",
            "/2017-03-31/tags/arn:aws:lambda:us-east-1:000000000000:function:f?tagKeys=a",
        ),
        "UpdateAlias" => ("PUT", "/2015-03-31/functions/f/aliases/a"),
        "UpdateEventSourceMapping" => ("PUT", "/2015-03-31/event-source-mappings/u"),
        "UpdateFunctionCode" => ("PUT", "/2015-03-31/functions/f/code"),
        "UpdateFunctionConfiguration" => ("PUT", "/2015-03-31/functions/f/configuration"),
        // Anything else: a path no operation has, which must be refused.
        _ => ("GET", "/2015-03-31/no-such-operation"),
    }
}

#[tokio::test]
async fn registration_is_consistent() {
    cryopod::testing::check_registration(cryopod_lambda::SERVICE);
}

#[tokio::test]
async fn every_listed_operation_is_dispatched() {
    let rt = cryopod::testing::runtime_with(&[cryopod_lambda::SERVICE]);
    cryopod::testing::check_operations(&rt, cryopod_lambda::SERVICE, |op| {
        let (method, uri) = route(op);
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .expect("a literal request builds")
    })
    .await;
}
