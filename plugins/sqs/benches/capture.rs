//! Capture and apply of 1,000,000 small messages across 100 queues, against the floor:
//! serializing the same message records as a plain `Vec` with the same serializer
//! (rmp-serde, named fields) in the same run.
//!
//! `cargo bench -p cryopod-sqs --bench capture` (plain `main`, no harness). Set
//! `SQS_BENCH_MESSAGES` to change the volume.

use std::time::{Duration, Instant};

use cryopod::{MergeStrategy, Runtime, Scope, ScopeFilter, ServiceState, Snapshot};
use cryopod_sqs::state::{Message, Queue, SqsState};
use cryopod_sqs::{SERVICE, SqsService};
use imbl::OrdMap;
use serde::Deserialize;

const QUEUES: usize = 100;

fn message(i: usize) -> Message {
    Message {
        id: format!("{i:08x}-0000-4000-8000-000000000000"),
        body: format!("small message body number {i}"),
        attributes: Default::default(),
        system_attributes: Default::default(),
        sender_id: "000000000000".into(),
        sent_at: 1_700_000_000_000 + i as i64,
        receive_count: (i % 3) as u32,
        first_received_at: None,
        visible_at: 1_700_000_000_000 + (i % 1000) as i64,
        delayed: false,
        expires_at: 1_700_345_600_000,
        group_id: None,
        dedup_id: None,
        dead_letter_source: None,
    }
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
    match out {
        Some(v) => (best, v),
        None => panic!("runs must be at least 1"),
    }
}

fn rounds(r: &[f64]) -> String {
    r.iter()
        .map(|x| format!("{x:.2}x"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let total: usize = std::env::var("SQS_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let per_queue = total / QUEUES;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");

    // The same records both ways.
    let mut plain: Vec<Message> = Vec::with_capacity(total);
    let mut state = SqsState::default();
    let scope = Scope::default();
    let t = Instant::now();
    for qi in 0..QUEUES {
        let name = format!("queue-{qi:03}");
        let mut q = Queue::new(name.clone(), false, OrdMap::new(), 1_700_000_000_000);
        for mi in 0..per_queue {
            let m = message(qi * per_queue + mi);
            plain.push(m.clone());
            q.push(m);
        }
        state.scopes.get_mut(&scope).queues.insert(name, q);
    }
    println!(
        "built {total} messages in {QUEUES} queues in {:?}",
        t.elapsed()
    );

    let rt = Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .build()
        .expect("runtime");
    if let Some(s) = rt
        .service(SERVICE)
        .and_then(|s| s.as_any().downcast_ref::<SqsService>())
    {
        s.clock().freeze(1_700_000_000_000);
    }
    let mut snap = Snapshot::default();
    snap.services.insert(SERVICE.into(), Box::new(state));
    tokio
        .block_on(rt.apply(snap, MergeStrategy::Overwrite))
        .expect("install");

    let services = vec![SERVICE.to_string()];
    let runs = 5;

    // Capture: the O(1) clone under the barrier, then encoding.
    let (clone_time, _) = best(runs, || {
        tokio
            .block_on(rt.capture(Some(&services), &ScopeFilter::all()))
            .expect("capture")
    });
    // The measured operation and its baseline run in turn, `runs` times each, so that
    // other work on the machine (often a build) hits both alike; best of each is reported,
    // with the ratio of every round.
    let mut capture_time = Duration::MAX;
    let mut plain_encode = Duration::MAX;
    let mut capture_ratios = Vec::new();
    let mut bytes = Vec::new();
    let mut plain_bytes = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let snap = tokio
            .block_on(rt.capture(Some(&services), &ScopeFilter::all()))
            .expect("capture");
        let mut out = Vec::with_capacity(64 << 20);
        snap.services[SERVICE].encode_to(&mut out).expect("encode");
        let ours = t.elapsed();
        drop(snap);
        bytes = out;
        let t = Instant::now();
        let out = rmp_serde::to_vec_named(&plain).expect("encode plain");
        let base = t.elapsed();
        plain_bytes = out;
        capture_time = capture_time.min(ours);
        plain_encode = plain_encode.min(base);
        capture_ratios.push(ours.as_secs_f64() / base.as_secs_f64());
    }

    // Apply: decode the section, then install it (the restore shifts clocks per queue).
    // This is the path bundles and persistence take: the typed codec registered for
    // "sqs/1" (typetag only as a fallback). The install replaces the previous state, which
    // holds as many messages; its queues are freed on the plugin's background thread
    // (`cryopod_sqs::messages`), so the timed apply does not include freeing them, just as
    // the baseline's timed decode does not include dropping its `Vec`. Both frees are timed
    // apart (ours: waiting for the background thread to finish) and reported, with the ratio
    // that counts them on both sides.
    let mut decode_only = Duration::MAX;
    let mut install_only = Duration::MAX;
    let mut apply_time = Duration::MAX;
    let mut plain_decode = Duration::MAX;
    let mut apply_with_free = Duration::MAX;
    let mut plain_with_free = Duration::MAX;
    let mut apply_ratios = Vec::new();
    let mut apply_rounds = Vec::new();
    let mut apply_cpu = Duration::MAX;
    let mut plain_cpu = Duration::MAX;
    for _ in 0..runs {
        let c = cryopod::testing::process_cpu_time();
        let t = Instant::now();
        let (state, _) =
            cryopod::state::decode_section(SERVICE, 1, &mut &bytes[..]).expect("decode");
        let decoded = t.elapsed();
        let t = Instant::now();
        let mut snap = Snapshot::default();
        snap.services.insert(SERVICE.into(), state);
        tokio
            .block_on(rt.apply(snap, MergeStrategy::Overwrite))
            .expect("apply");
        let installed = t.elapsed();
        apply_cpu = apply_cpu.min(cryopod::testing::process_cpu_time().saturating_sub(c));
        let t = Instant::now();
        cryopod_sqs::messages::wait_for_background_drops();
        let freed = t.elapsed();
        let c = cryopod::testing::process_cpu_time();
        let t = Instant::now();
        let back = rmp_serde::from_slice::<Vec<Message>>(&plain_bytes).expect("decode plain");
        let base = t.elapsed();
        plain_cpu = plain_cpu.min(cryopod::testing::process_cpu_time().saturating_sub(c));
        assert_eq!(back.len(), total);
        let t = Instant::now();
        drop(back);
        let base_freed = t.elapsed();
        decode_only = decode_only.min(decoded);
        install_only = install_only.min(installed);
        apply_time = apply_time.min(decoded + installed);
        plain_decode = plain_decode.min(base);
        apply_with_free = apply_with_free.min(decoded + installed + freed);
        plain_with_free = plain_with_free.min(base + base_freed);
        apply_ratios.push((decoded + installed).as_secs_f64() / base.as_secs_f64());
        apply_rounds.push(format!(
            "decode {:.0} + install {:.0} (+ background free {:.0}) vs {:.0} (+ drop {:.0}) ms",
            decoded.as_secs_f64() * 1e3,
            installed.as_secs_f64() * 1e3,
            freed.as_secs_f64() * 1e3,
            base.as_secs_f64() * 1e3,
            base_freed.as_secs_f64() * 1e3,
        ));
    }

    // Breakdown: the plugin's own structure without the framework's type-erased encoding.
    let concrete: SqsState = {
        let snap = tokio
            .block_on(rt.capture(Some(&services), &ScopeFilter::all()))
            .expect("capture");
        let mut snap = snap;
        match snap
            .services
            .remove(SERVICE)
            .map(|s| s.downcast::<SqsState>(SERVICE))
        {
            Some(Ok(s)) => s,
            _ => panic!("no sqs state"),
        }
    };
    let (concrete_encode, concrete_bytes) = best(runs, || {
        rmp_serde::to_vec_named(&concrete).expect("encode concrete")
    });
    let (concrete_decode, _) = best(runs, || {
        rmp_serde::from_slice::<SqsState>(&concrete_bytes).expect("decode concrete")
    });
    let (erased_decode, _) = best(runs, || {
        let mut de = rmp_serde::Deserializer::new(&bytes[..]);
        let state: Box<dyn ServiceState> = Deserialize::deserialize(&mut de).expect("decode");
        state
    });
    drop(concrete);

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("messages: {total} in {QUEUES} queues");
    println!(
        "encoded size: state {} bytes, plain Vec {} bytes ({:.2}x)",
        bytes.len(),
        plain_bytes.len(),
        bytes.len() as f64 / plain_bytes.len() as f64
    );
    println!("capture clone (under the barrier): {clone_time:?}");
    println!(
        "capture + encode: {capture_time:?}   plain Vec encode: {plain_encode:?}   ratio {:.2}x",
        ratio(capture_time, plain_encode)
    );
    println!("  ratio of each round: {}", rounds(&capture_ratios));
    println!(
        "  of which: concrete SqsState encode (no type erasure, Vec writer): {concrete_encode:?} ({:.2}x)",
        ratio(concrete_encode, plain_encode)
    );
    println!(
        "decode + apply (frees outside the timed region on both sides): {apply_time:?}   plain Vec decode: {plain_decode:?}   ratio {:.2}x",
        ratio(apply_time, plain_decode)
    );
    println!("  ratio of each round: {}", rounds(&apply_ratios));
    println!(
        "  CPU time (process, 10 ms ticks, best of each): {apply_cpu:?} vs {plain_cpu:?}   ratio {:.2}x",
        ratio(apply_cpu, plain_cpu)
    );
    println!("  each round: {}", apply_rounds.join("; "));
    println!(
        "  frees counted on both sides: decode + apply + background free {apply_with_free:?}   plain decode + drop {plain_with_free:?}   ratio {:.2}x",
        ratio(apply_with_free, plain_with_free)
    );
    println!(
        "  of which: section decode {decode_only:?} ({:.2}x), apply (install; the old state's queues freed in the background) {install_only:?} ({:.2}x)",
        ratio(decode_only, plain_decode),
        ratio(install_only, plain_decode)
    );
    println!(
        "  for comparison: rmp_serde::from_slice::<SqsState>: {concrete_decode:?} ({:.2}x); type-erased decode: {erased_decode:?} ({:.2}x)",
        ratio(concrete_decode, plain_decode),
        ratio(erased_decode, plain_decode)
    );
}
