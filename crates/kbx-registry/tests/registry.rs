//! kbx-registry against a real `docker-registry` (distribution v2.8) on 127.0.0.1. The oracle
//! is the registry's HTTP API read with plain HTTP/1.0 requests written here.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{Registry, client, sha256};
use futures::{StreamExt, stream};
use kbx_registry::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, Error, MANIFEST_ACCEPT, OCI_INDEX, Reference,
};

fn platforms_of(index: &serde_json::Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .expect("manifests array")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut plat = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or(""),
                p["architecture"].as_str().unwrap_or("")
            );
            if let Some(v) = p["variant"].as_str() {
                plat.push('/');
                plat.push_str(v);
            }
            (m["digest"].as_str().unwrap_or("").to_owned(), plat)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_blob_and_manifest_then_read_back_over_http() {
    let reg = Registry::start();
    let c = client(None);
    let r = reg.reference("kbx/push:v1");
    // Several chunks, streamed.
    let chunks: Vec<Bytes> = (0..64).map(|i| Bytes::from(vec![i as u8; 4096])).collect();
    let all: Vec<u8> = chunks.iter().flat_map(|b| b.iter().copied()).collect();
    let desc = Descriptor::of("application/octet-stream", &all);
    c.push_blob(
        &r,
        &desc,
        stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>)),
    )
    .await
    .expect("push blob");
    let got = reg.get(&format!("/v2/kbx/push/blobs/{}", desc.digest), None);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, all);

    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cdesc = Descriptor::of("application/vnd.docker.container.image.v1+json", config);
    c.push_blob(
        &r,
        &cdesc,
        stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(config))]),
    )
    .await
    .expect("push config");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": cdesc,
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": desc.digest, "size": desc.size}],
    }))
    .expect("json");
    let pushed = c
        .put_manifest(&r, DOCKER_MANIFEST, Bytes::from(manifest.clone()))
        .await
        .expect("put manifest");
    assert_eq!(pushed.digest, sha256(&manifest));
    let got = reg.get("/v2/kbx/push/manifests/v1", Some(DOCKER_MANIFEST));
    assert_eq!(got.status, 200);
    assert_eq!(got.body, manifest);
    assert_eq!(
        got.header("Docker-Content-Digest"),
        Some(pushed.digest.as_str())
    );

    // And the client reads back what the oracle sees.
    let resolved = c.resolve(&r).await.expect("resolve");
    assert_eq!(resolved.digest, pushed.digest);
    assert_eq!(resolved.media_type, DOCKER_MANIFEST);
    assert_eq!(resolved.size, manifest.len() as u64);
    let mut s = c.blob(&r, &desc.digest).await.expect("blob");
    let mut back = Vec::new();
    while let Some(chunk) = s.next().await {
        back.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(back, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_blob_with_wrong_digest_fails_and_stores_nothing() {
    let reg = Registry::start();
    let c = client(None);
    let r = reg.reference("kbx/bad:v1");
    let desc = Descriptor::of("application/octet-stream", b"what was promised");
    let err = c
        .push_blob(
            &r,
            &desc,
            stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
                b"something else!!!",
            ))]),
        )
        .await
        .expect_err("digest mismatch");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert_eq!(
        reg.head(&format!("/v2/kbx/bad/blobs/{}", desc.digest))
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_index_from_two_platform_images() {
    let reg = Registry::start();
    let (amd, amd_bytes) = reg.push_image("kbx/app", "amd64", "amd64", None, false);
    // buildx normalises the config's platform: arm64/v8 is listed as arm64.
    let (arm, _) = reg.push_image("kbx/app", "arm64", "aarch64", Some("v8"), false);
    let c = client(None);
    let sources = [
        reg.reference("kbx/app:amd64"),
        reg.reference("kbx/app:arm64"),
    ];
    let tag = reg.reference("kbx/app:multi");
    let created = c
        .create_index(&sources, &[tag], &BTreeMap::new(), false)
        .await
        .expect("create index");
    assert_eq!(created.descriptor.media_type, DOCKER_MANIFEST_LIST);

    let got = reg.get("/v2/kbx/app/manifests/multi", Some(MANIFEST_ACCEPT));
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.header("Content-Type"), Some(DOCKER_MANIFEST_LIST));
    assert_eq!(got.body, created.bytes.to_vec());
    assert_eq!(sha256(&got.body), created.descriptor.digest);
    let index = got.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        platforms_of(&index),
        vec![
            (amd.clone(), "linux/amd64".to_owned()),
            (arm, "linux/arm64".to_owned())
        ]
    );
    assert_eq!(index["manifests"][0]["size"], amd_bytes.len());
    assert_eq!(index["manifests"][0]["mediaType"], DOCKER_MANIFEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_index_from_an_index_source_dedups_and_goes_oci() {
    let reg = Registry::start();
    let (amd, _) = reg.push_image("kbx/src", "amd64", "amd64", None, false);
    let (arm, _) = reg.push_image("kbx/src", "arm64", "arm64", None, false);
    let (riscv, _) = reg.push_image("kbx/src", "riscv", "riscv64", None, true);
    let c = client(None);
    // An index of amd64 + arm64 made by the client, then combined with arm64 again (a
    // duplicate) and an OCI riscv64 image.
    let first = c
        .create_index(
            &[
                reg.reference("kbx/src:amd64"),
                reg.reference("kbx/src:arm64"),
            ],
            &[reg.reference("kbx/src:list")],
            &BTreeMap::new(),
            false,
        )
        .await
        .expect("first index");
    let mut ann = BTreeMap::new();
    ann.insert(
        "index:org.opencontainers.image.title".to_owned(),
        "kbx".to_owned(),
    );
    let created = c
        .create_index(
            &[
                reg.reference("kbx/src:list"),
                reg.reference("kbx/src:arm64"),
                reg.reference("kbx/src:riscv"),
            ],
            &[reg.reference("kbx/src:all")],
            &ann,
            false,
        )
        .await
        .expect("second index");
    assert_ne!(created.descriptor.digest, first.descriptor.digest);
    assert_eq!(created.descriptor.media_type, OCI_INDEX);
    let got = reg.get("/v2/kbx/src/manifests/all", Some(MANIFEST_ACCEPT));
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.header("Content-Type"), Some(OCI_INDEX));
    let index = got.json();
    assert_eq!(
        platforms_of(&index),
        vec![
            (amd, "linux/amd64".to_owned()),
            (arm, "linux/arm64".to_owned()),
            (riscv, "linux/riscv64".to_owned()),
        ]
    );
    assert_eq!(
        index["annotations"]["org.opencontainers.image.title"],
        "kbx"
    );

    // A single index source without annotations is pushed byte for byte.
    let same = c
        .create_index(
            &[reg.reference("kbx/src:list")],
            &[reg.reference("kbx/src:copy")],
            &BTreeMap::new(),
            false,
        )
        .await
        .expect("copy");
    assert_eq!(same.descriptor.digest, first.descriptor.digest);
    let got = reg.get("/v2/kbx/src/manifests/copy", Some(MANIFEST_ACCEPT));
    assert_eq!(sha256(&got.body), first.descriptor.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_in_other_repositories_get_everything_mounted() {
    let reg = Registry::start();
    let (amd, amd_bytes) = reg.push_image("kbx/one", "amd64", "amd64", None, false);
    let (arm, _) = reg.push_image("kbx/two", "arm64", "arm64", None, false);
    let c = client(None);
    let tags = [
        reg.reference("kbx/three:v1"),
        reg.reference("kbx/four/deep:v2"),
    ];
    let created = c
        .create_index(
            &[
                reg.reference("kbx/one:amd64"),
                reg.reference("kbx/two:arm64"),
            ],
            &tags,
            &BTreeMap::new(),
            false,
        )
        .await
        .expect("create");
    let manifest: serde_json::Value = serde_json::from_slice(&amd_bytes).expect("json");
    for (repo, tag) in [("kbx/three", "v1"), ("kbx/four/deep", "v2")] {
        let got = reg.get(
            &format!("/v2/{repo}/manifests/{tag}"),
            Some(MANIFEST_ACCEPT),
        );
        assert_eq!(got.status, 200, "{repo}: {}", got.text());
        assert_eq!(sha256(&got.body), created.descriptor.digest);
        for d in [&amd, &arm] {
            let h = reg.get(&format!("/v2/{repo}/manifests/{d}"), Some(MANIFEST_ACCEPT));
            assert_eq!(h.status, 200, "{repo} lacks manifest {d}");
        }
        for blob in [
            &manifest["config"]["digest"],
            &manifest["layers"][0]["digest"],
        ] {
            let b = blob.as_str().expect("digest");
            assert_eq!(
                reg.head(&format!("/v2/{repo}/blobs/{b}")).status,
                200,
                "{repo} lacks {b}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing() {
    let reg = Registry::start();
    reg.push_image("kbx/dry", "amd64", "amd64", None, false);
    reg.push_image("kbx/dry", "arm64", "arm64", None, false);
    let c = client(None);
    let created = c
        .create_index(
            &[
                reg.reference("kbx/dry:amd64"),
                reg.reference("kbx/dry:arm64"),
            ],
            &[
                reg.reference("kbx/dry:multi"),
                reg.reference("kbx/other:multi"),
            ],
            &BTreeMap::new(),
            true,
        )
        .await
        .expect("dry run");
    let v: serde_json::Value = serde_json::from_slice(&created.bytes).expect("json");
    assert_eq!(v["manifests"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        reg.get("/v2/kbx/dry/manifests/multi", Some(MANIFEST_ACCEPT))
            .status,
        404
    );
    assert_eq!(reg.get("/v2/kbx/other/tags/list", None).status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_matches_the_registry() {
    let reg = Registry::start();
    let (amd, _) = reg.push_image("kbx/insp", "amd64", "amd64", None, false);
    let (arm, _) = reg.push_image("kbx/insp", "armv7", "arm", Some("v7"), false);
    let index = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": amd, "size": reg.head(&format!("/v2/kbx/insp/manifests/{amd}")).header("Content-Length").and_then(|v| v.parse::<u64>().ok()), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": DOCKER_MANIFEST, "digest": arm, "size": reg.head(&format!("/v2/kbx/insp/manifests/{arm}")).header("Content-Length").and_then(|v| v.parse::<u64>().ok()), "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
        ]
    }))
    .expect("json");
    let digest = reg.put_manifest("kbx/insp", "v1", DOCKER_MANIFEST_LIST, &index);
    let c = client(None);
    let r = reg.reference("kbx/insp:v1");
    let i = c.inspect(&r).await.expect("inspect");
    assert_eq!(i.descriptor.digest, digest);
    assert_eq!(i.raw.to_vec(), index);
    let host = reg.host();
    // buildx's tabwriter layout, trailing spaces included.
    let expected = [
        format!("Name:      {host}/kbx/insp:v1"),
        format!("MediaType: {DOCKER_MANIFEST_LIST}"),
        format!("Digest:    {digest}"),
        " ".repeat(11),
        "Manifests: ".to_owned(),
        format!("  Name:      {host}/kbx/insp:v1@{amd}"),
        format!("  MediaType: {DOCKER_MANIFEST}"),
        "  Platform:  linux/amd64".to_owned(),
        " ".repeat(13),
        format!("  Name:      {host}/kbx/insp:v1@{arm}"),
        format!("  MediaType: {DOCKER_MANIFEST}"),
        "  Platform:  linux/arm/v7".to_owned(),
    ];
    assert_eq!(i.to_string(), expected.join("\n") + "\n");
    // A single image: no manifest list.
    let i = c
        .inspect(&reg.reference("kbx/insp:amd64"))
        .await
        .expect("inspect image");
    assert_eq!(i.descriptor.digest, amd);
    assert!(i.manifests.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_manifest_is_not_found() {
    let reg = Registry::start();
    let c = client(None);
    let r = reg.reference("kbx/none:v1");
    let err = c.resolve(&r).await.expect_err("not found");
    assert!(
        matches!(&err, Error::NotFound { reference } if reference == &r.to_string()),
        "{err:?}"
    );
    let err = c.manifest(&r).await.expect_err("not found");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_right_password_works() {
    let reg = Registry::start_with_htpasswd("kbx", "s3cret");
    reg.push_image("kbx/auth", "amd64", "amd64", None, false);
    reg.push_image("kbx/auth", "arm64", "arm64", None, false);
    let c = client(Some(("kbx", "s3cret")));
    let created = c
        .create_index(
            &[
                reg.reference("kbx/auth:amd64"),
                reg.reference("kbx/auth:arm64"),
            ],
            &[reg.reference("kbx/auth:multi")],
            &BTreeMap::new(),
            false,
        )
        .await
        .expect("create with the right password");
    let got = reg.get("/v2/kbx/auth/manifests/multi", Some(MANIFEST_ACCEPT));
    assert_eq!(got.status, 200);
    assert_eq!(sha256(&got.body), created.descriptor.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_wrong_or_missing_password_is_unauthorized() {
    let reg = Registry::start_with_htpasswd("kbx", "s3cret");
    reg.push_image("kbx/auth", "amd64", "amd64", None, false);
    let sources = [reg.reference("kbx/auth:amd64")];
    let tags = [reg.reference("kbx/auth:multi")];
    for (cred, sent) in [(Some(("kbx", "wrong")), true), (None, false)] {
        let err = client(cred)
            .create_index(&sources, &tags, &BTreeMap::new(), false)
            .await
            .expect_err("unauthorized");
        match &err {
            Error::Unauthorized {
                registry,
                credentials_sent,
                ..
            } => {
                assert_eq!(registry, &reg.host());
                assert_eq!(*credentials_sent, sent);
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&reg.host()), "{msg}");
        assert!(
            msg.contains(if sent {
                "with the credentials sent"
            } else {
                "no credentials were sent"
            }),
            "{msg}"
        );
    }
    assert_eq!(
        reg.get("/v2/kbx/auth/manifests/multi", Some(MANIFEST_ACCEPT))
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down_is_unreachable() {
    let port = common::free_port();
    let r = Reference::parse(&format!("127.0.0.1:{port}/kbx/down:v1")).expect("ref");
    let err = client(None).resolve(&r).await.expect_err("down");
    match &err {
        Error::Unreachable { registry, .. } => assert_eq!(registry, &format!("127.0.0.1:{port}")),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_on_another_registry_get_blobs_streamed_across() {
    let src = Registry::start();
    let dst = Registry::start();
    let (amd, amd_bytes) = src.push_image("kbx/x", "amd64", "amd64", None, false);
    let (arm, _) = src.push_image("kbx/x", "arm64", "arm64", None, true);
    let c = client(None);
    let created = c
        .create_index(
            &[src.reference("kbx/x:amd64"), src.reference("kbx/x:arm64")],
            &[dst.reference("mirror/x:v1")],
            &BTreeMap::new(),
            false,
        )
        .await
        .expect("create across registries");
    // One OCI entry: an OCI index.
    assert_eq!(created.descriptor.media_type, OCI_INDEX);
    let got = dst.get("/v2/mirror/x/manifests/v1", Some(MANIFEST_ACCEPT));
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(sha256(&got.body), created.descriptor.digest);
    let m: serde_json::Value = serde_json::from_slice(&amd_bytes).expect("json");
    for d in [&amd, &arm] {
        let h = dst.get(
            &format!("/v2/mirror/x/manifests/{d}"),
            Some(MANIFEST_ACCEPT),
        );
        assert_eq!(h.status, 200, "mirror lacks {d}");
    }
    let layer = m["layers"][0]["digest"].as_str().expect("digest");
    let copied = dst.get(&format!("/v2/mirror/x/blobs/{layer}"), None);
    let original = src.get(&format!("/v2/kbx/x/blobs/{layer}"), None);
    assert_eq!(copied.status, 200);
    assert_eq!(copied.body, original.body);
    // Nothing was written to the source registry.
    assert_eq!(src.get("/v2/mirror/x/tags/list", None).status, 404);
}
