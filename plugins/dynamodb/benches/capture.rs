//! Capture and apply of 1,000,000 DynamoDB items, against serializing the same items as a
//! plain `Vec` with the same serializer (rmp-serde, named fields) in the same run.
//!
//! Run: `cargo bench -p cryopod-dynamodb --bench capture` (set `DDB_BENCH_ITEMS` to change
//! the volume). Prints a Markdown table; the numbers go to `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cryopod::{MergeStrategy, Runtime, Scope, ScopeFilter, ServiceState, Snapshot};
use cryopod_dynamodb::SERVICE;
use cryopod_dynamodb::state::{DynamoState, IndexDef, KeySchema, Projection, Table};
use cryopod_dynamodb::value::{AttrValue, Item, ItemKey, KeyVal};

fn item(i: usize) -> (ItemKey, Item) {
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
            hash: KeyVal::S(pk),
            range: Some(KeyVal::N(sk)),
        },
        Item::new(m),
    )
}

fn table(n: usize, with_gsi: bool) -> Table {
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
        derived_ready: false,
    };
    t.rebuild_indexes();
    t
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.expect("at least one run"))
}

fn runtime() -> Runtime {
    match Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    }
}

fn main() {
    let n: usize = std::env::var("DDB_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    println!("| case | items | plain Vec (rmp named) | cryopod | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for with_gsi in [false, true] {
        let t = table(n, with_gsi);
        let plain: Vec<Item> = t.items.values().cloned().collect();
        let mut state = DynamoState::default();
        state
            .scopes
            .get_mut(&Scope::default())
            .tables
            .insert("bench".into(), t);
        let rt = runtime();
        let mut snap = Snapshot::default();
        snap.services.insert(SERVICE.into(), Box::new(state));
        tokio
            .block_on(rt.apply(snap, MergeStrategy::Overwrite))
            .expect("seed");

        // Capture: O(1) clone under the barrier, then encode.
        let (plain_enc, plain_bytes) = best(3, || rmp_serde::to_vec_named(&plain).expect("encode"));
        let (cap, bytes) = best(3, || {
            let s = tokio
                .block_on(rt.capture(None, &ScopeFilter::all()))
                .expect("capture");
            let mut out = Vec::new();
            s.services[SERVICE].encode_to(&mut out).expect("encode");
            out
        });
        // The clone alone, which is what writers wait for.
        let (clone_only, _) = best(3, || {
            tokio
                .block_on(rt.capture(None, &ScopeFilter::all()))
                .expect("capture")
        });
        // Apply: decode, install, rebuild indexes.
        let (plain_dec, _) = best(3, || {
            rmp_serde::from_slice::<Vec<Item>>(&plain_bytes).expect("decode")
        });
        // A fresh target each run, returned so that dropping it happens outside the timer
        // (the plain baseline does not time the drop of its result either).
        let (apply, _) = best(3, || {
            let target = runtime();
            let st: Box<dyn ServiceState> = rmp_serde::from_slice(&bytes).expect("decode");
            let mut snap = Snapshot::default();
            snap.services.insert(SERVICE.into(), st);
            tokio
                .block_on(target.apply(snap, MergeStrategy::Overwrite))
                .expect("apply");
            target
        });
        let (decode_only, _) = best(3, || {
            rmp_serde::from_slice::<Box<dyn ServiceState>>(&bytes).expect("decode")
        });
        let (concrete_enc, _) = best(3, || {
            let s = tokio
                .block_on(rt.capture(None, &ScopeFilter::all()))
                .expect("capture");
            let st = s.services[SERVICE]
                .as_any()
                .downcast_ref::<DynamoState>()
                .expect("dynamodb state")
                .clone();
            rmp_serde::to_vec_named(&st).expect("encode")
        });
        let label = if with_gsi { " (table + 1 GSI)" } else { "" };
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
        let ratio = |a: Duration, b: Duration| format!("{:.2}×", b.as_secs_f64() / a.as_secs_f64());
        println!(
            "| capture{label}: clone + encode | {n} | {} | {} | {} |",
            ms(plain_enc),
            ms(cap),
            ratio(plain_enc, cap)
        );
        println!(
            "| apply{label}: decode + install + rebuild indexes | {n} | {} | {} | {} |",
            ms(plain_dec),
            ms(apply),
            ratio(plain_dec, apply)
        );
        println!(
            "| capture{label}: encode without the typetag wrapper | {n} | {} | {} | {} |",
            ms(plain_enc),
            ms(concrete_enc),
            ratio(plain_enc, concrete_enc)
        );
        println!(
            "| apply{label}: decode only (typetag + building the item map) | {n} | {} | {} | {} |",
            ms(plain_dec),
            ms(decode_only),
            ratio(plain_dec, decode_only)
        );
        println!(
            "| bytes{label} | {n} | {} | {} | {:.2}× |",
            plain_bytes.len(),
            bytes.len(),
            bytes.len() as f64 / plain_bytes.len() as f64
        );
        println!(
            "| capture{label}: writer pause (O(1) clone) | {n} | | {:.3} ms | |",
            clone_only.as_secs_f64() * 1000.0
        );
    }
}
