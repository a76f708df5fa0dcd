//! The conformance suite every pod store backend passes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use cryopod::Digest;
use cryopod::pods::PodError;
use cryopod::pods::layout::{
    ANN_POD_MESSAGE, ANN_POD_NAME, ANN_POD_VERSION, ARTIFACT_TYPE, BLOB_MEDIA_TYPE,
    CONFIG_MEDIA_TYPE, Descriptor, ImageManifest, MANIFEST_MEDIA_TYPE,
};
use cryopod::pods::remote::{Remote, TagEntry};
use futures::StreamExt;

use super::servers::noise;

async fn read_all(store: &dyn Remote, d: &Digest, size: u64) -> Vec<u8> {
    let mut s = store.get_blob(d, size).await.expect("get_blob");
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    out
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

/// Stores one version `name:version` whose only layer is `layer`; returns its entry.
async fn put_version(store: &dyn Remote, name: &str, version: u32, layer: &[u8]) -> TagEntry {
    let config = format!("{{\"name\":\"{name}\",\"version\":{version}}}").into_bytes();
    let config_d = descriptor(CONFIG_MEDIA_TYPE, &config);
    let layer_d = descriptor(BLOB_MEDIA_TYPE, layer);
    store
        .put_bytes(&config_d.digest, CONFIG_MEDIA_TYPE, Bytes::from(config))
        .await
        .expect("put config");
    if !store.has_blob(&layer_d.digest).await.expect("has_blob") {
        store
            .put_bytes(
                &layer_d.digest,
                BLOB_MEDIA_TYPE,
                Bytes::copy_from_slice(layer),
            )
            .await
            .expect("put layer");
    }
    let message = format!("version {version} of {name}");
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.into(),
        artifact_type: Some(ARTIFACT_TYPE.into()),
        config: config_d,
        layers: vec![layer_d],
        annotations: [
            (ANN_POD_NAME.to_string(), name.to_string()),
            (ANN_POD_VERSION.to_string(), version.to_string()),
            (ANN_POD_MESSAGE.to_string(), message.clone()),
        ]
        .into(),
    };
    let bytes = serde_json::to_vec(&manifest).expect("manifest json");
    let entry = TagEntry {
        name: name.into(),
        version,
        message,
        created_at: "2026-01-01T00:00:00Z".into(),
        digest: Digest::of(&bytes),
        size: bytes.len() as u64,
    };
    store
        .put_manifest(&entry, Bytes::from(bytes))
        .await
        .expect("put manifest");
    entry
}

/// The promises every backend keeps: content-addressed blobs (small and multipart-sized),
/// a clear error for a missing blob, versions as tags listed with their messages, deletes
/// that remove one version, and garbage collection that keeps whatever a remaining
/// version references.
pub async fn conformance(store: Arc<dyn Remote>) {
    let store = store.as_ref();
    assert!(
        store.list().await.expect("list").is_empty(),
        "a new store is empty"
    );

    // Blobs are content-addressed: absent, then stored, then read back byte for byte,
    // including one big enough for a multipart upload.
    let small = b"hello pods".to_vec();
    let d = Digest::of(&small);
    assert!(!store.has_blob(&d).await.expect("has_blob"));
    store
        .put_bytes(&d, BLOB_MEDIA_TYPE, Bytes::from(small.clone()))
        .await
        .expect("put_bytes");
    assert!(store.has_blob(&d).await.expect("has_blob"));
    assert_eq!(read_all(store, &d, small.len() as u64).await, small);
    let big = noise(7, 34 * 1024 * 1024 + 123);
    let big_d = Digest::of(&big);
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(file.path(), &big).expect("write");
    store
        .put_blob(&big_d, BLOB_MEDIA_TYPE, file.path(), big.len() as u64)
        .await
        .expect("put_blob");
    assert!(Digest::of(&read_all(store, &big_d, big.len() as u64).await) == big_d);

    // A missing blob is a clear error, not an empty stream.
    let missing = Digest::of(b"never stored");
    match store.get_blob(&missing, 1).await {
        Err(PodError::Corrupt { message, .. }) => assert!(message.contains("missing"), "{message}"),
        Err(e) => panic!("unexpected error for a missing blob: {e}"),
        Ok(_) => panic!("a missing blob was served"),
    }

    // Versions are tags: listed with their messages, read back, deleted one by one.
    let shared = noise(1, 4096);
    let only_v1 = noise(2, 4096);
    let e1 = put_version(store, "demo", 1, &only_v1).await;
    let e2 = put_version(store, "demo", 2, &shared).await;
    let other = put_version(store, "other_pod-2", 1, &shared).await;
    let mut listed = store.list().await.expect("list");
    listed.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
    let names: Vec<(String, u32, String)> = listed
        .iter()
        .map(|e| (e.name.clone(), e.version, e.message.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("demo".into(), 1, e1.message.clone()),
            ("demo".into(), 2, e2.message.clone()),
            ("other_pod-2".into(), 1, other.message.clone()),
        ]
    );
    let m1 = store
        .get_manifest("demo", 1)
        .await
        .expect("get")
        .expect("demo:1 exists");
    assert_eq!(Digest::of(&m1), e1.digest);
    assert!(store.get_manifest("demo", 3).await.expect("get").is_none());
    assert!(store.get_manifest("nope", 1).await.expect("get").is_none());

    store.delete("demo", 1).await.expect("delete");
    store.collect_garbage().await.expect("gc");
    let left: Vec<(String, u32)> = {
        let mut v: Vec<_> = store
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|e| (e.name, e.version))
            .collect();
        v.sort();
        v
    };
    assert_eq!(left, vec![("demo".into(), 2), ("other_pod-2".into(), 1)]);
    assert!(store.get_manifest("demo", 1).await.expect("get").is_none());
    // Whatever a remaining version references survives the collection.
    let m2: ImageManifest = serde_json::from_slice(
        &store
            .get_manifest("demo", 2)
            .await
            .expect("get")
            .expect("demo:2"),
    )
    .expect("json");
    for l in m2.layers.iter().chain(std::iter::once(&m2.config)) {
        assert_eq!(
            Digest::of(&read_all(store, &l.digest, l.size).await),
            l.digest
        );
    }
}
