//! The S3 backend against a real S3-compatible server (`moto_server`), in its own test
//! process: requests are signed with the credentials of the standard AWS environment
//! variables, which this file sets before anything else runs.

mod pods_support;

use cryopod::pods::remote::{self, RemoteUrl};
use pods_support::conformance::conformance;
use pods_support::servers::Moto;

#[test]
fn s3_compatible_storage_keeps_the_remote_promises() {
    // SAFETY: the only test of this binary sets the variables before it starts any thread.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "cryopod-test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "cryopod-test-secret");
        std::env::remove_var("AWS_ENDPOINT_URL");
        std::env::remove_var("AWS_ENDPOINT_URL_S3");
    }
    let moto = Moto::start();
    moto.create_bucket("pods");
    let url = moto.url("pods", "team/a");
    let parsed: RemoteUrl = url.parse().expect("url");
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    rt.block_on(async { conformance(remote::open(&parsed, &url).expect("open")).await });
}
