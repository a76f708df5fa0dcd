//! The two wire protocols of SQS, translated to and from one JSON shape.
//!
//! Every operation is implemented once, on the JSON protocol's request and response shapes
//! (`serde_json::Value`). Query-protocol requests (`Action=SendMessage&MessageAttribute.1.Name=…`)
//! are folded into that shape, and responses are rendered from it as XML, so both protocols
//! give the same results for the same calls by construction.

use std::collections::BTreeMap;

use cryopod::aws::xml_escape;
use serde_json::{Map, Value};

use crate::error::{ErrorKind, SqsError, SqsResult};

/// Form keys that are protocol plumbing, not operation input.
const PLUMBING: &[&str] = &[
    "Action",
    "Version",
    "AWSAccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "Timestamp",
    "Expires",
    "SecurityToken",
];

enum Node {
    Leaf(String),
    Branch(BTreeMap<String, Node>),
}

fn insert(node: &mut BTreeMap<String, Node>, path: &[&str], value: String) -> SqsResult<()> {
    let Some((head, rest)) = path.split_first() else {
        return Ok(());
    };
    if rest.is_empty() {
        node.insert((*head).to_string(), Node::Leaf(value));
        return Ok(());
    }
    let child = node
        .entry((*head).to_string())
        .or_insert_with(|| Node::Branch(BTreeMap::new()));
    match child {
        Node::Branch(m) => insert(m, rest, value),
        Node::Leaf(_) => Err(SqsError::new(
            ErrorKind::MalformedRequest,
            format!("parameter {head} is both a value and a structure"),
        )),
    }
}

fn indexed(node: Node) -> Vec<Node> {
    match node {
        Node::Leaf(v) => vec![Node::Leaf(v)],
        Node::Branch(m) => {
            let mut items: Vec<(u64, Node)> = m
                .into_iter()
                .map(|(k, v)| (k.parse().unwrap_or(u64::MAX), v))
                .collect();
            items.sort_by_key(|(i, _)| *i);
            items.into_iter().map(|(_, v)| v).collect()
        }
    }
}

fn leaf(node: Node) -> Value {
    match node {
        Node::Leaf(v) => Value::String(v),
        Node::Branch(m) => object(m),
    }
}

fn child(m: &mut BTreeMap<String, Node>, key: &str) -> Option<Node> {
    m.remove(key)
}

fn object(m: BTreeMap<String, Node>) -> Value {
    let mut out = Map::new();
    for (key, node) in m {
        match key.as_str() {
            "AttributeName" | "MessageAttributeName" | "MessageSystemAttributeName" | "TagKey" => {
                let list: Vec<Value> = indexed(node).into_iter().map(leaf).collect();
                out.insert(format!("{key}s"), Value::Array(list));
            }
            "Attribute" | "Tag" | "MessageAttribute" | "MessageSystemAttribute" => {
                let (name_key, plural) = match key.as_str() {
                    "Attribute" => ("Name", "Attributes"),
                    "Tag" => ("Key", "Tags"),
                    "MessageAttribute" => ("Name", "MessageAttributes"),
                    _ => ("Name", "MessageSystemAttributes"),
                };
                let mut map = Map::new();
                for item in indexed(node) {
                    if let Node::Branch(mut fields) = item
                        && let Some(Node::Leaf(name)) = child(&mut fields, name_key)
                    {
                        let value = child(&mut fields, "Value").map(leaf).unwrap_or(Value::Null);
                        map.insert(name, value);
                    }
                }
                out.insert(plural.to_string(), Value::Object(map));
            }
            k if k.ends_with("RequestEntry") => {
                let list: Vec<Value> = indexed(node).into_iter().map(leaf).collect();
                out.insert("Entries".to_string(), Value::Array(list));
            }
            _ => {
                out.insert(key, leaf(node));
            }
        }
    }
    Value::Object(out)
}

/// Folds query-protocol form parameters into the JSON protocol's request shape.
/// Returns the action name and the input.
pub fn query_to_json(params: Vec<(String, String)>) -> SqsResult<(String, Value)> {
    let mut action = None;
    let mut root = BTreeMap::new();
    for (k, v) in params {
        if k == "Action" {
            action = Some(v);
            continue;
        }
        if PLUMBING.contains(&k.as_str()) || k.starts_with("X-Amz-") {
            continue;
        }
        let path: Vec<&str> = k.split('.').collect();
        insert(&mut root, &path, v)?;
    }
    let action = action.ok_or_else(|| SqsError::missing("Action"))?;
    Ok((action, object(root)))
}

/// Operations whose query response carries no `<{Op}Result>` element.
fn has_result(op: &str) -> bool {
    !matches!(
        op,
        "DeleteQueue"
            | "SetQueueAttributes"
            | "DeleteMessage"
            | "ChangeMessageVisibility"
            | "PurgeQueue"
            | "TagQueue"
            | "UntagQueue"
    )
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn element(out: &mut String, name: &str, inner: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(inner);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn render(op: &str, v: &Value, out: &mut String) {
    let Value::Object(m) = v else {
        out.push_str(&xml_escape(&scalar(v)));
        return;
    };
    for (k, v) in m {
        match (k.as_str(), v) {
            ("QueueUrls" | "queueUrls", Value::Array(items)) => {
                for i in items {
                    element(out, "QueueUrl", &xml_escape(&scalar(i)));
                }
            }
            ("Messages", Value::Array(items)) => {
                for i in items {
                    let mut inner = String::new();
                    render(op, i, &mut inner);
                    element(out, "Message", &inner);
                }
            }
            ("Successful" | "Failed", Value::Array(items)) => {
                let name = if k == "Failed" {
                    "BatchResultErrorEntry".to_string()
                } else {
                    format!("{op}ResultEntry")
                };
                for i in items {
                    let mut inner = String::new();
                    render(op, i, &mut inner);
                    element(out, &name, &inner);
                }
            }
            ("Attributes" | "Tags" | "MessageAttributes", Value::Object(entries)) => {
                let (item, key_name) = match k.as_str() {
                    "Attributes" => ("Attribute", "Name"),
                    "Tags" => ("Tag", "Key"),
                    _ => ("MessageAttribute", "Name"),
                };
                for (name, value) in entries {
                    let mut inner = String::new();
                    element(&mut inner, key_name, &xml_escape(name));
                    let mut val = String::new();
                    render(op, value, &mut val);
                    element(&mut inner, "Value", &val);
                    element(out, item, &inner);
                }
            }
            (_, Value::Null) => {}
            (_, Value::Array(items)) => {
                for i in items {
                    let mut inner = String::new();
                    render(op, i, &mut inner);
                    element(out, k, &inner);
                }
            }
            (_, other) => {
                let mut inner = String::new();
                render(op, other, &mut inner);
                element(out, k, &inner);
            }
        }
    }
}

/// Renders an operation's JSON-shaped output as the query protocol's XML response.
pub fn json_to_xml(op: &str, output: &Value, request_id: &str) -> String {
    let mut body = String::from("<?xml version=\"1.0\"?>");
    body.push_str(&format!(
        "<{op}Response xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">"
    ));
    if has_result(op) {
        let mut inner = String::new();
        render(op, output, &mut inner);
        element(&mut body, &format!("{op}Result"), &inner);
    }
    body.push_str(&format!(
        "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{op}Response>"
    ));
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_maps_and_lists_fold_into_the_json_shape() {
        let (action, v) = query_to_json(p(&[
            ("Action", "SendMessageBatch"),
            ("QueueUrl", "http://h/000000000000/q"),
            ("SendMessageBatchRequestEntry.2.Id", "b"),
            ("SendMessageBatchRequestEntry.2.MessageBody", "two"),
            ("SendMessageBatchRequestEntry.1.Id", "a"),
            ("SendMessageBatchRequestEntry.1.MessageBody", "one"),
            (
                "SendMessageBatchRequestEntry.1.MessageAttribute.1.Name",
                "k",
            ),
            (
                "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType",
                "String",
            ),
            (
                "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue",
                "v",
            ),
        ]))
        .expect("parse");
        assert_eq!(action, "SendMessageBatch");
        assert_eq!(
            v,
            json!({
                "QueueUrl": "http://h/000000000000/q",
                "Entries": [
                    {"Id": "a", "MessageBody": "one",
                     "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
                    {"Id": "b", "MessageBody": "two"}
                ]
            })
        );
        let (_, v) = query_to_json(p(&[
            ("Action", "ReceiveMessage"),
            ("AttributeName.1", "All"),
            ("Attribute.1.Name", "VisibilityTimeout"),
            ("Attribute.1.Value", "5"),
            ("Tag.1.Key", "env"),
            ("Tag.1.Value", "dev"),
        ]))
        .expect("parse");
        assert_eq!(
            v,
            json!({"AttributeNames": ["All"], "Attributes": {"VisibilityTimeout": "5"}, "Tags": {"env": "dev"}})
        );
    }

    #[test]
    fn xml_renders_flattened_lists_and_maps() {
        let xml = json_to_xml(
            "ReceiveMessage",
            &json!({"Messages": [{"MessageId": "m", "Body": "a<b",
                "Attributes": {"SenderId": "1"},
                "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}}]}),
            "rid",
        );
        for piece in [
            "<ReceiveMessageResult><Message>",
            "<MessageId>m</MessageId>",
            "<Body>a&lt;b</Body>",
            "<Attribute><Name>SenderId</Name><Value>1</Value></Attribute>",
            "<MessageAttribute><Name>k</Name><Value><DataType>String</DataType><StringValue>v</StringValue></Value></MessageAttribute>",
            "</Message></ReceiveMessageResult>",
        ] {
            assert!(xml.contains(piece), "{piece} missing in {xml}");
        }
        let xml = json_to_xml("DeleteQueue", &json!({}), "rid");
        assert!(!xml.contains("DeleteQueueResult"));
        let xml = json_to_xml(
            "SendMessageBatch",
            &json!({"Successful": [{"Id": "a"}], "Failed": [{"Id": "b", "SenderFault": true}]}),
            "rid",
        );
        assert!(
            xml.contains("<SendMessageBatchResultEntry><Id>a</Id></SendMessageBatchResultEntry>"),
            "{xml}"
        );
        assert!(xml.contains("<BatchResultErrorEntry><Id>b</Id><SenderFault>true</SenderFault></BatchResultErrorEntry>"), "{xml}");
    }
}
