//! The table both DynamoDB benches fill.
#![allow(dead_code)] // each bench uses part of it

use std::collections::BTreeMap;

use cryopod_dynamodb::state::{IndexDef, KeySchema, Projection, Table};
use cryopod_dynamodb::value::{AttrValue, Item, ItemKey, KeyVal};

/// Item `i` of the bench table: ten sort keys per partition, six attributes.
pub fn item(i: usize) -> (ItemKey, Item) {
    let pk = format!("user#{:07}", i / 10);
    let sk = (i % 10).to_string();
    let mut m = BTreeMap::new();
    m.insert("pk".to_string(), AttrValue::S(pk.clone()));
    m.insert("sk".to_string(), AttrValue::N(sk.clone()));
    m.insert("name".to_string(), AttrValue::S(format!("name {i}")));
    m.insert(
        "score".to_string(),
        AttrValue::N(format!("{}.{}", i % 1000, i % 7)),
    );
    m.insert("active".to_string(), AttrValue::BOOL(i.is_multiple_of(2)));
    m.insert("group".to_string(), AttrValue::S(format!("g{}", i % 100)));
    (
        ItemKey {
            hash: KeyVal::string(&pk),
            range: KeyVal::number(&sk),
        },
        Item::new(m),
    )
}

/// A table of `n` items keyed `pk` (S) + `sk` (N), optionally with one GSI on `group`.
pub fn table(n: usize, with_gsi: bool) -> Table {
    let mut t = Table {
        name: "bench".into(),
        table_id: "00000000-0000-0000-0000-000000000000".into(),
        created: 1.7e9,
        key: KeySchema {
            hash: "pk".into(),
            range: Some("sk".into()),
        },
        attribute_definitions: vec![
            ("pk".into(), "S".into()),
            ("sk".into(), "N".into()),
            ("group".into(), "S".into()),
        ],
        billing_mode: "PAY_PER_REQUEST".into(),
        throughput: None,
        local_indexes: vec![],
        global_indexes: if with_gsi {
            vec![IndexDef {
                name: "by-group".into(),
                key: KeySchema {
                    hash: "group".into(),
                    range: Some("sk".into()),
                },
                projection: Projection {
                    kind: "ALL".into(),
                    non_key: vec![],
                },
                throughput: None,
            }]
        } else {
            vec![]
        },
        ttl: None,
        tags: Default::default(),
        deletion_protection: false,
        items: (0..n).map(item).collect(),
        indexes: Default::default(),
        size_bytes: 0,
    };
    t.rebuild_indexes();
    t
}
