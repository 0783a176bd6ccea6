//! Rendering the specification's full example (§5.6), against a baseline in the same run.
//!
//! The baseline serialises the already-rendered objects to JSON with serde_json: what any client
//! does anyway to send them to the API server. The ratios say what validation, building the
//! objects and writing YAML cost relative to that.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kbx_manifest::{ConfigFiles, Node, Workload, render};
use kbx_opts::{KubernetesOptions, Platform, buildkitd_args};

fn node() -> Node {
    let options = KubernetesOptions::parse([
        "namespace=buildkit,replicas=2,requests.cpu=500m,requests.memory=1Gi,limits.cpu=2,limits.memory=4Gi",
        r#""nodeselector=kubernetes.io/arch=amd64","tolerations=key=dedicated,operator=Equal,value=ci,effect=NoSchedule;key=spot,operator=Exists""#,
        "annotations=team=platform,labels=owner=ci,serviceaccount=buildkit-sa,qemu.install=true,env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760",
    ])
    .expect("valid options");
    let mut node = Node::new("kube_amd64", options);
    node.platforms = vec![Platform::new("linux", "amd64", "")];
    node.flags = buildkitd_args(None, None).expect("valid flags");
    node.files = ConfigFiles::from_iter([("buildkitd.toml", "debug = true\n")]);
    node
}

fn bench(c: &mut Criterion) {
    let node = node();
    let rendered = render(&node).expect("renders");
    let mut group = c.benchmark_group("spec full example");
    group.bench_function("baseline: objects -> JSON (serde_json)", |b| {
        b.iter(|| {
            let objects = black_box(&rendered);
            let mut out = Vec::new();
            for cm in &objects.config_maps {
                out.push(serde_json::to_vec(cm).expect("json"));
            }
            if let Workload::Deployment(d) = &objects.workload {
                out.push(serde_json::to_vec(d).expect("json"));
            }
            out
        })
    });
    group.bench_function("kbx: node -> objects (validate + build)", |b| {
        b.iter(|| render(black_box(&node)).expect("renders"))
    });
    group.bench_function("kbx: node -> YAML", |b| {
        b.iter(|| {
            render(black_box(&node))
                .expect("renders")
                .to_yaml()
                .expect("yaml")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
