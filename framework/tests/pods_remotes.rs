//! One conformance suite for every pod store backend: the local OCI layout, a `file://`
//! directory, S3-compatible object storage (a real `moto_server`) and an OCI registry (a real
//! `docker-registry`). Whatever the backend, a store keeps content-addressed blobs and
//! manifests under `NAME:VERSION`, lists and deletes versions, and never loses a blob a
//! remaining version references. (S3 runs in `pods_remote_s3.rs`, its own process, because
//! it sets the AWS credential variables.)

mod pods_support;

use cryopod::Digest;
use cryopod::pods::layout::MANIFEST_MEDIA_TYPE;
use cryopod::pods::remote::{self, RemoteUrl};
use cryopod::pods::{PodError, Pods};
use pods_support::conformance::conformance;
use pods_support::servers::{Registry, free_port, noise};

#[tokio::test]
async fn the_local_store_keeps_the_remote_promises() {
    let pods = Pods::temporary().expect("pods");
    conformance(pods.resolve(None).expect("local")).await;
    // It is an OCI image layout.
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pods.root().join("oci-layout")).expect("oci-layout"))
            .expect("json");
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pods.root().join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(index["schemaVersion"], 2);
    for m in index["manifests"].as_array().expect("manifests") {
        assert_eq!(m["mediaType"], MANIFEST_MEDIA_TYPE);
        let hex = m["digest"]
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:");
        assert!(pods.root().join("blobs/sha256").join(hex).is_file());
    }
    // Collection removed the blob only demo:1 referenced (the local store has no grace).
    let only_v1 = Digest::of(&noise(2, 4096));
    assert!(
        !pods
            .root()
            .join("blobs/sha256")
            .join(only_v1.hex())
            .exists()
    );
}

#[tokio::test]
async fn a_file_directory_keeps_the_remote_promises() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().join("shared").display());
    let parsed: RemoteUrl = url.parse().expect("url");
    conformance(remote::open(&parsed, &url).expect("open")).await;
    assert!(dir.path().join("shared/index.json").is_file());
}

#[tokio::test]
async fn an_oci_registry_keeps_the_remote_promises() {
    let registry = Registry::start();
    let url = registry.url("team/pods");
    let parsed: RemoteUrl = url.parse().expect("url");
    conformance(remote::open(&parsed, &url).expect("open")).await;
}

#[tokio::test]
async fn an_unreachable_remote_is_a_clear_error() {
    let port = free_port();
    for url in [
        format!("s3://bucket/p?endpoint=http://127.0.0.1:{port}"),
        format!("oci://127.0.0.1:{port}/ns"),
    ] {
        let parsed: RemoteUrl = url.parse().expect("url");
        let store = remote::open(&parsed, &url).expect("open");
        match store.list().await {
            Err(PodError::Remote { location, .. }) => assert_eq!(location, url),
            Err(e) => panic!("{url}: unexpected error {e}"),
            Ok(_) => panic!("{url}: a closed port answered"),
        }
    }
}
