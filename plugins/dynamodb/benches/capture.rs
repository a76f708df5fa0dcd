//! Capture and apply of 1,000,000 DynamoDB items, against serializing the same items as a
//! plain `Vec` with the same serializer (rmp-serde, named fields) in the same run.
//!
//! Run: `cargo bench -p cryopod-dynamodb --bench capture` (set `DDB_BENCH_ITEMS` to change
//! the volume). Prints a Markdown table; the numbers go to `BENCHMARKS.md`.

mod common;

use std::time::{Duration, Instant};

use common::table;
use cryopod::{MergeStrategy, Runtime, Scope, ScopeFilter, Snapshot};
use cryopod_dynamodb::state::DynamoState;
use cryopod_dynamodb::value::{Item, ItemKey, KeyVal};
use cryopod_dynamodb::{DynamoService, SERVICE};

/// Best wall time and best process CPU time of `f` over the rounds it was run.
#[derive(Clone, Copy)]
struct Best {
    wall: Duration,
    cpu: Duration,
}

impl Best {
    fn new() -> Self {
        Best {
            wall: Duration::MAX,
            cpu: Duration::MAX,
        }
    }

    /// Runs `f` once and keeps the better times; the result is dropped after the timer.
    fn run<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (c, t) = (cryopod::testing::process_cpu_time(), Instant::now());
        let v = f();
        self.wall = self.wall.min(t.elapsed());
        self.cpu = self
            .cpu
            .min(cryopod::testing::process_cpu_time().saturating_sub(c));
        v
    }
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

/// One Query on the GSI (or on the table without one) of group `g7`, limited to one item.
fn first_query(tokio: &tokio::runtime::Runtime, rt: &Runtime, with_gsi: bool) {
    let svc = rt.service(SERVICE).expect("dynamodb runs");
    let ddb = svc
        .as_any()
        .downcast_ref::<DynamoService>()
        .expect("the dynamodb service");
    let body = if with_gsi {
        serde_json::json!({
            "TableName": "bench", "IndexName": "by-group", "Limit": 1,
            "KeyConditionExpression": "#g = :g",
            "ExpressionAttributeNames": {"#g": "group"},
            "ExpressionAttributeValues": {":g": {"S": "g7"}}
        })
    } else {
        serde_json::json!({
            "TableName": "bench", "Limit": 1,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "user#0000007"}}
        })
    };
    let out = tokio
        .block_on(ddb.call(&Scope::default(), "Query", body))
        .expect("query");
    assert_eq!(out["Count"], 1, "{out}");
}

fn main() {
    let n: usize = std::env::var("DDB_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // Rounds per measurement; baseline and subject alternate inside each round so that
    // load from other processes hits both alike.
    let rounds: usize = std::env::var("DDB_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let ratio = |a: Duration, b: Duration| format!("{:.2}×", b.as_secs_f64() / a.as_secs_f64());
    let row = |case: &str, a: Best, b: Best| {
        println!(
            "| {case} | {n} | {} | {} | {} | {} / {} | {} |",
            ms(a.wall),
            ms(b.wall),
            ratio(a.wall, b.wall),
            ms(a.cpu),
            ms(b.cpu),
            ratio(a.cpu, b.cpu)
        );
    };
    println!(
        "| case | items | plain Vec (rmp named) | cryopod | ratio | CPU plain / cryopod | CPU ratio |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    if std::env::var_os("DDB_BENCH_BREAKDOWN").is_some() {
        breakdown(n);
        return;
    }
    for with_gsi in [false, true] {
        let label = if with_gsi { " (table + 1 GSI)" } else { "" };
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

        // Capture: O(1) clone under the barrier, then encode through the section codec.
        let capture_once = || {
            let s = tokio
                .block_on(rt.capture(None, &ScopeFilter::all()))
                .expect("capture");
            let mut out = Vec::new();
            s.services[SERVICE].encode_to(&mut out).expect("encode");
            out
        };
        let plain_bytes = rmp_serde::to_vec_named(&plain).expect("encode");
        let bytes = capture_once();
        let (mut p_enc, mut c_enc, mut clone_only) = (Best::new(), Best::new(), Best::new());
        for _ in 0..rounds {
            p_enc.run(|| rmp_serde::to_vec_named(&plain).expect("encode"));
            c_enc.run(capture_once);
            // The clone alone, which is what writers wait for.
            clone_only.run(|| {
                tokio
                    .block_on(rt.capture(None, &ScopeFilter::all()))
                    .expect("capture")
            });
        }
        drop(plain);

        // Apply into a fresh runtime, the section decoded as an import decodes it (typed
        // section codec). Each result is dropped after its timer stops (the plain
        // baseline does not time the drop of its result either).
        let apply_once = || {
            let target = runtime();
            let (st, _) =
                cryopod::state::decode_section(SERVICE, 1, &mut &bytes[..]).expect("decode");
            let mut snap = Snapshot::default();
            snap.services.insert(SERVICE.into(), st);
            tokio
                .block_on(target.apply(snap, MergeStrategy::Overwrite))
                .expect("apply");
            target
        };
        let (mut p_dec, mut c_dec, mut apply, mut ready) =
            (Best::new(), Best::new(), Best::new(), Best::new());
        for _ in 0..rounds {
            drop(p_dec.run(|| rmp_serde::from_slice::<Vec<Item>>(&plain_bytes).expect("decode")));
            drop(c_dec.run(|| {
                cryopod::state::decode_section(SERVICE, 1, &mut &bytes[..]).expect("decode")
            }));
            // The restored table's indexes are still being built on a background thread
            // when `apply` returns; wait for that (untimed) before going on, so that the
            // build does not run into the next measurement (baseline or cryopod).
            let applied = apply.run(apply_once);
            first_query(&tokio, &applied, with_gsi);
            drop(applied);
            // Apply, then one query that needs the derived index (the GSI when there is
            // one): the time until the restored table answers index queries.
            drop(ready.run(|| {
                let target = apply_once();
                first_query(&tokio, &target, with_gsi);
                target
            }));
        }
        row(&format!("capture{label}: clone + encode"), p_enc, c_enc);
        row(&format!("apply{label}: decode + install"), p_dec, apply);
        row(
            &format!("apply{label}, then a first query on the index (index built)"),
            p_dec,
            ready,
        );
        row(
            &format!("apply{label}: decode only (typed codec, item map built)"),
            p_dec,
            c_dec,
        );
        println!(
            "| bytes{label} | {n} | {} | {} | {:.2}× | | |",
            plain_bytes.len(),
            bytes.len(),
            bytes.len() as f64 / plain_bytes.len() as f64
        );
        println!(
            "| capture{label}: writer pause (O(1) clone) | {n} | | {:.3} ms | | | |",
            clone_only.wall.as_secs_f64() * 1000.0
        );
    }
}

/// Where the time of an apply goes, step by step (`DDB_BENCH_BREAKDOWN=1`).
fn breakdown(n: usize) {
    let t = table(n, false);
    let plain: Vec<Item> = t.items.values().cloned().collect();
    let bytes = rmp_serde::to_vec_named(&plain).expect("encode");
    drop(plain);
    let step = |name: &str, f: &mut dyn FnMut()| {
        let mut b = Best::new();
        for _ in 0..3 {
            b.run(&mut *f);
        }
        println!("{name}: {:?} (cpu {:?})", b.wall, b.cpu);
    };
    step("from_slice Vec<Item>", &mut || {
        drop(rmp_serde::from_slice::<Vec<Item>>(&bytes).expect("decode"))
    });
    step("from_read (BufReader<dyn Read>) Vec<Item>", &mut || {
        let mut r: &[u8] = &bytes;
        let r: &mut dyn std::io::Read = &mut r;
        let rd = std::io::BufReader::with_capacity(64 * 1024, r);
        drop(rmp_serde::from_read::<_, Vec<Item>>(rd).expect("decode"))
    });
    let items = rmp_serde::from_slice::<Vec<Item>>(&bytes).expect("decode");
    let key = |it: &Item| ItemKey {
        hash: KeyVal::from_attr(it.get("pk").expect("pk")).expect("key"),
        range: KeyVal::from_attr(it.get("sk").expect("sk")),
    };
    step("keys", &mut || {
        drop(items.iter().map(key).collect::<Vec<_>>())
    });
    let keyed: Vec<(ItemKey, Item)> = items.iter().map(|i| (key(i), i.clone())).collect();
    step("PMap from sorted", &mut || {
        drop(
            keyed
                .iter()
                .cloned()
                .collect::<cryopod_dynamodb::pmap::PMap<ItemKey, Item>>(),
        )
    });
    step("clone keyed vec (baseline for the line above)", &mut || {
        drop(keyed.to_vec())
    });
    let tg = table(n, true);
    let idx = tg.global_indexes[0].clone();
    step("index entries", &mut || {
        drop(
            tg.items
                .iter()
                .filter_map(|(pk, it)| tg.index_entry(&idx, pk, it))
                .collect::<Vec<_>>(),
        )
    });
    let entries: Vec<_> = tg
        .items
        .iter()
        .filter_map(|(pk, it)| tg.index_entry(&idx, pk, it))
        .collect();
    step("sort index entries", &mut || {
        let mut e = entries.clone();
        e.sort_unstable();
        drop(e)
    });
    step(
        "index entries + stable sort by index key (two threads)",
        &mut || {
            drop(cryopod_dynamodb::state::sorted_index_entries(
                &tg.items, &idx,
            ))
        },
    );
    let mut sorted = entries.clone();
    sorted.sort_unstable();
    step("index PMap from sorted", &mut || {
        drop(
            sorted
                .iter()
                .cloned()
                .map(|e| (e, ()))
                .collect::<cryopod_dynamodb::pmap::PMap<cryopod_dynamodb::value::IndexKey, ()>>(),
        )
    });
    step("index PMap unsorted (sorts first)", &mut || {
        drop(
            entries
                .iter()
                .cloned()
                .map(|e| (e, ()))
                .collect::<cryopod_dynamodb::pmap::PMap<cryopod_dynamodb::value::IndexKey, ()>>(),
        )
    });
    step("sizes", &mut || {
        std::hint::black_box(items.iter().map(|i| i.size()).sum::<usize>());
    });
}
