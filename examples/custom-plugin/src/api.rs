//! The notes API: awsJson1.0 style, `X-Amz-Target: Notes.<Operation>`.
//!
//! Validation and error codes follow AWS conventions (`ValidationException`,
//! `ResourceNotFoundException`, `ResourceInUseException`), because an emulator that accepts
//! what the real service refuses lets bugs through.

use base64::Engine;
use cryopod::{AwsError, Digest, Scope};
use http::StatusCode;
use serde_json::{Value, json};

use crate::state::{Note, Notebook, NotesState};

/// Largest attachment accepted, as a real service would cap it.
pub const MAX_ATTACHMENT_BYTES: usize = 16 * 1024 * 1024;

/// A parsed request.
#[derive(Debug)]
pub enum Op {
    /// Create a notebook.
    CreateNotebook {
        /// Name.
        name: String,
        /// Tags.
        tags: Vec<(String, String)>,
    },
    /// Delete an empty or non-empty notebook.
    DeleteNotebook {
        /// Name.
        name: String,
    },
    /// List notebook names.
    ListNotebooks,
    /// Create or replace a note.
    PutNote {
        /// Notebook.
        notebook: String,
        /// Note key.
        key: String,
        /// Text.
        text: String,
        /// Attachment bytes.
        attachment: Option<Vec<u8>>,
    },
    /// Read a note.
    GetNote {
        /// Notebook.
        notebook: String,
        /// Key.
        key: String,
    },
    /// Delete a note.
    DeleteNote {
        /// Notebook.
        notebook: String,
        /// Key.
        key: String,
    },
    /// List keys of a notebook.
    ListNotes {
        /// Notebook.
        notebook: String,
    },
}

fn validation(msg: impl Into<String>) -> AwsError {
    AwsError::bad_request("ValidationException", msg)
}

fn not_found(what: &str, name: &str) -> AwsError {
    AwsError::bad_request(
        "ResourceNotFoundException",
        format!("{what} {name} does not exist"),
    )
}

fn str_field(body: &Value, field: &str) -> Result<String, AwsError> {
    match body.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(validation(format!("{field} must be a string"))),
        None => Err(validation(format!("{field} is required"))),
    }
}

fn valid_name(field: &str, name: &str) -> Result<(), AwsError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(validation(format!(
            "{field} `{name}` must be 1 to 64 characters of A-Z, a-z, 0-9, - and _"
        )));
    }
    Ok(())
}

/// Every operation [`Op::parse`] answers, for the registration (`lib.rs`), the README's
/// service table and the test that each is dispatched.
pub const OPERATIONS: &[&str] = &[
    "CreateNotebook",
    "DeleteNotebook",
    "ListNotebooks",
    "PutNote",
    "GetNote",
    "DeleteNote",
    "ListNotes",
];

impl Op {
    /// Parses operation `op` with JSON `body`.
    pub fn parse(op: &str, body: &Value) -> Result<Op, AwsError> {
        Ok(match op {
            "CreateNotebook" => {
                let name = str_field(body, "NotebookName")?;
                valid_name("NotebookName", &name)?;
                let tags = match body.get("Tags") {
                    None => Vec::new(),
                    Some(Value::Object(m)) => m
                        .iter()
                        .map(|(k, v)| {
                            v.as_str()
                                .map(|s| (k.clone(), s.to_string()))
                                .ok_or_else(|| validation("tag values must be strings"))
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(validation("Tags must be an object")),
                };
                Op::CreateNotebook { name, tags }
            }
            "DeleteNotebook" => Op::DeleteNotebook {
                name: str_field(body, "NotebookName")?,
            },
            "ListNotebooks" => Op::ListNotebooks,
            "PutNote" => {
                let key = str_field(body, "Key")?;
                if key.is_empty() || key.len() > 1024 {
                    return Err(validation("Key must be 1 to 1024 bytes"));
                }
                let attachment = match body.get("Attachment") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(b64)) => {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|e| validation(format!("Attachment is not base64: {e}")))?;
                        if bytes.len() > MAX_ATTACHMENT_BYTES {
                            return Err(validation(format!(
                                "Attachment is {} bytes; the limit is {MAX_ATTACHMENT_BYTES}",
                                bytes.len()
                            )));
                        }
                        Some(bytes)
                    }
                    Some(_) => return Err(validation("Attachment must be a base64 string")),
                };
                Op::PutNote {
                    notebook: str_field(body, "NotebookName")?,
                    key,
                    text: str_field(body, "Text")?,
                    attachment,
                }
            }
            "GetNote" => Op::GetNote {
                notebook: str_field(body, "NotebookName")?,
                key: str_field(body, "Key")?,
            },
            "DeleteNote" => Op::DeleteNote {
                notebook: str_field(body, "NotebookName")?,
                key: str_field(body, "Key")?,
            },
            "ListNotes" => Op::ListNotes {
                notebook: str_field(body, "NotebookName")?,
            },
            other => {
                return Err(AwsError::bad_request(
                    "UnknownOperationException",
                    format!("Notes has no operation {other}"),
                ));
            }
        })
    }

    /// Whether the operation changes state (and so goes through a transactional write).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::CreateNotebook { .. }
                | Op::DeleteNotebook { .. }
                | Op::PutNote { .. }
                | Op::DeleteNote { .. }
        )
    }
}

/// Applies a write operation to the state; `attachment` is the already stored blob.
pub fn apply_write(
    state: &mut NotesState,
    scope: &Scope,
    op: Op,
    attachment: Option<Digest>,
) -> Result<Value, AwsError> {
    let resources = state.scopes.get_mut(scope);
    match op {
        Op::CreateNotebook { name, tags } => {
            if resources.notebooks.contains_key(&name) {
                return Err(AwsError::bad_request(
                    "ResourceInUseException",
                    format!("Notebook {name} already exists"),
                ));
            }
            resources.notebooks.insert(
                name,
                Notebook {
                    tags: tags.into_iter().collect(),
                    ..Default::default()
                },
            );
            Ok(json!({}))
        }
        Op::DeleteNotebook { name } => {
            resources
                .notebooks
                .remove(&name)
                .ok_or_else(|| not_found("Notebook", &name))?;
            Ok(json!({}))
        }
        Op::PutNote {
            notebook,
            key,
            text,
            ..
        } => {
            let nb = resources
                .notebooks
                .get_mut(&notebook)
                .ok_or_else(|| not_found("Notebook", &notebook))?;
            let revision = nb.notes.get(&key).map_or(1, |n| n.revision + 1);
            nb.notes.insert(
                key,
                Note {
                    text,
                    attachment,
                    revision,
                },
            );
            Ok(json!({ "Revision": revision }))
        }
        Op::DeleteNote { notebook, key } => {
            let nb = resources
                .notebooks
                .get_mut(&notebook)
                .ok_or_else(|| not_found("Notebook", &notebook))?;
            nb.notes
                .remove(&key)
                .ok_or_else(|| not_found("Note", &key))?;
            Ok(json!({}))
        }
        _ => Err(validation("not a write operation")),
    }
}

/// Answers a read operation; `load` fetches attachment bytes from the blob store.
pub fn answer_read(
    state: &NotesState,
    scope: &Scope,
    op: &Op,
) -> Result<(Value, Option<Digest>), AwsError> {
    let empty = Default::default();
    let resources = state.scopes.get(scope).unwrap_or(&empty);
    match op {
        Op::ListNotebooks => Ok((
            json!({ "NotebookNames": resources.notebooks.keys().collect::<Vec<_>>() }),
            None,
        )),
        Op::GetNote { notebook, key } => {
            let nb = resources
                .notebooks
                .get(notebook)
                .ok_or_else(|| not_found("Notebook", notebook))?;
            let note = nb.notes.get(key).ok_or_else(|| not_found("Note", key))?;
            Ok((
                json!({ "Text": note.text, "Revision": note.revision }),
                note.attachment,
            ))
        }
        Op::ListNotes { notebook } => {
            let nb = resources
                .notebooks
                .get(notebook)
                .ok_or_else(|| not_found("Notebook", notebook))?;
            Ok((json!({ "Keys": nb.notes.keys().collect::<Vec<_>>() }), None))
        }
        _ => Err(validation("not a read operation")),
    }
}

/// The 200 response.
pub fn ok(value: Value) -> http::Response<cryopod::Body> {
    cryopod::aws::json_response(StatusCode::OK, &value)
}
