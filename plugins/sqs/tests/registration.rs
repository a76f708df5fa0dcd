//! The registration is consistent (one statement of service, state and version, checked
//! against the built provider), and every operation it lists, which the README's service
//! table shows, is dispatched rather than answered as unknown.

#[tokio::test]
async fn registration_is_consistent() {
    cryopod::testing::check_registration(cryopod_sqs::SERVICE);
}

#[tokio::test]
async fn every_listed_operation_is_dispatched() {
    let rt = cryopod::testing::runtime_with(&[cryopod_sqs::SERVICE]);
    cryopod::testing::check_json_operations(&rt, cryopod_sqs::SERVICE).await;
}
