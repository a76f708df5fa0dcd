//! Conformance: the framework's harness (`cryopod::testing::check_provider`) accepts the
//! notes provider on a richly populated state, and rejects a provider that forgets data.

mod common;

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use common::*;
use cryopod::plugin::CellProvider;
use cryopod::{
    AwsError, AwsRequest, Body, ProviderError, Runtime, Scope, Scoped, ScopedState, Service,
    StateCell,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Two accounts × two regions of notebooks with tags, notes with several revisions,
/// per-scope and shared attachments (one of them empty), unicode texts and odd keys, and
/// resources that were created and deleted again.
async fn populate_notes(rt: &Runtime) {
    let shared_logo: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    for (i, (account, region)) in [(A1, US), (A1, EU), (A2, US), (A2, EU)]
        .into_iter()
        .enumerate()
    {
        let s = scope(account, region);
        let own: Vec<u8> = (0..3000 + i * 100).map(|j| (j * 7 + i) as u8).collect();
        let scratch = format!("scratch-{i}");
        notes_call(
            rt,
            &s,
            "CreateNotebook",
            json!({"NotebookName": "journal",
                   "Tags": {"owner": account, "region": region, "index": i.to_string()}}),
        )
        .await;
        notes_call(rt, &s, "CreateNotebook", json!({"NotebookName": scratch})).await;
        notes_call(rt, &s, "CreateNotebook", json!({"NotebookName": "temp"})).await;
        let put = |nb: &str, key: &str, text: String, attachment: Option<&[u8]>| {
            let mut body = json!({"NotebookName": nb, "Key": key, "Text": text});
            if let Some(a) = attachment {
                body["Attachment"] = json!(b64(a));
            }
            body
        };
        notes_call(
            rt,
            &s,
            "PutNote",
            put("journal", "day-1", format!("first draft {i}"), Some(b"v1")),
        )
        .await;
        let r = notes_call(
            rt,
            &s,
            "PutNote",
            put("journal", "day-1", format!("second draft {i}"), Some(&own)),
        )
        .await;
        assert_eq!(r["Revision"], 2);
        notes_call(
            rt,
            &s,
            "PutNote",
            put("journal", "logo", "shared".into(), Some(&shared_logo)),
        )
        .await;
        notes_call(
            rt,
            &s,
            "PutNote",
            put("journal", "day-2", format!("ünïcödé ✓ \u{1F600} {i}"), None),
        )
        .await;
        notes_call(
            rt,
            &s,
            "PutNote",
            put(&scratch, "empty-attachment", String::new(), Some(&[])),
        )
        .await;
        notes_call(
            rt,
            &s,
            "PutNote",
            put(&scratch, "key with spaces/and/slashes", "x".into(), None),
        )
        .await;
        notes_call(
            rt,
            &s,
            "PutNote",
            put(&scratch, "gone", "deleted below".into(), None),
        )
        .await;
        notes_call(
            rt,
            &s,
            "DeleteNote",
            json!({"NotebookName": scratch, "Key": "gone"}),
        )
        .await;
        notes_call(rt, &s, "DeleteNotebook", json!({"NotebookName": "temp"})).await;
    }
}

#[tokio::test]
async fn notes_provider_passes_the_conformance_harness_on_a_rich_state() {
    let rt = runtime();
    populate_notes(&rt).await;

    let summary = rt.summary(Some(&["notes".to_string()])).await.unwrap();
    assert_eq!(
        summary["notes"].len(),
        4,
        "the state spans 2 accounts × 2 regions"
    );
    for sc in &summary["notes"] {
        assert_eq!(sc.resources["notebook"], 2, "{sc:?}");
        assert_eq!(sc.resources["note"], 5, "{sc:?}");
    }
    let notes = live_notes(&rt).await;
    assert_eq!(
        cryopod::ServiceState::blobs(&notes).len(),
        6,
        "4 own attachments + 1 shared + 1 empty"
    );

    cryopod::testing::check_provider("notes", &rt, runtime)
        .await
        .expect("conformance");
}

#[tokio::test]
async fn counter_test_service_passes_the_conformance_harness() {
    let rt = runtime();
    for (a, r) in [(A1, US), (A1, EU), (A2, US), (A2, EU)] {
        counter(&rt).set(&scope(a, r), "hits", 3).await;
        counter(&rt).set(&scope(a, r), "misses", -1).await;
    }
    cryopod::testing::check_provider("counter", &rt, runtime)
        .await
        .expect("conformance");
}

// ---------------------------------------------------------------------------------------
// A provider with the classic persistence bug, to show the harness catches it.

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct LossyState {
    scopes: Scoped<CounterScope>,
}

impl ScopedState for LossyState {
    type Resources = CounterScope;
    fn scoped(&self) -> &Scoped<CounterScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<CounterScope> {
        &mut self.scopes
    }
}

cryopod::service_state!(LossyState, service = "lossy", version = 1);

/// Forgets every counter named `forgotten` on restore: a field left out of restore.
struct LossyService {
    cell: StateCell<LossyState>,
}

impl CellProvider for LossyService {
    type State = LossyState;
    fn cell(&self) -> &StateCell<LossyState> {
        &self.cell
    }
    fn before_install(&self, s: &mut LossyState) -> Result<(), ProviderError> {
        let scopes: Vec<Scope> = s.scopes.iter().map(|(sc, _)| sc.clone()).collect();
        for sc in scopes {
            s.scopes.get_mut(&sc).counters.remove("forgotten");
        }
        Ok(())
    }
}

#[async_trait]
impl Service for LossyService {
    async fn handle(&self, _req: AwsRequest) -> http::Response<Body> {
        AwsError::bad_request("UnknownOperationException", "no API").to_json_response()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

cryopod::register_service! {
    service: "lossy",
    routes: &[cryopod::Route::JsonTarget("Lossy.")],
    build: |ctx| Arc::new(LossyService { cell: StateCell::new(ctx) }),
}

#[tokio::test]
#[should_panic(expected = "differs from the original")]
async fn conformance_harness_rejects_a_provider_that_forgets_data_on_restore() {
    let fresh = || runtime_with(&["lossy"]);
    let rt = fresh();
    let svc: &LossyService = rt
        .service("lossy")
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap();
    let s = scope(A1, US);
    for (name, v) in [("kept", 1), ("forgotten", 2)] {
        svc.cell
            .write(&s, |st| {
                st.scopes.get_mut(&s).counters.insert(name.into(), v);
                Ok::<_, std::convert::Infallible>(())
            })
            .await
            .unwrap();
    }
    let _ = cryopod::testing::check_provider("lossy", &rt, fresh).await;
}

#[tokio::test]
async fn notes_registration_is_consistent() {
    cryopod::testing::check_registration(cryopod_notes::SERVICE);
}

#[tokio::test]
async fn every_listed_notes_operation_is_dispatched() {
    let rt = runtime_with(&["notes"]);
    cryopod::testing::check_json_operations(&rt, cryopod_notes::SERVICE).await;
}

#[tokio::test]
#[should_panic(expected = "use cryopod::plugin!")]
async fn registration_check_rejects_a_service_that_does_not_state_its_version() {
    cryopod::testing::check_registration("lossy");
}
