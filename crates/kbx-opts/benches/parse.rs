//! Parsing a typical 10-option `--driver-opt` set, against a naive baseline in the same run.
//!
//! The baseline splits on `,` and the first `=` into a `HashMap` with no quoting, typing or
//! validation: the least any parser must do. The ratio kbx/baseline is what buildx-exact CSV
//! handling, typing and validation cost.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kbx_opts::{DriverOpts, KubernetesOptions};

const TYPICAL: [&str; 3] = [
    "namespace=buildkit,replicas=2,requests.cpu=500m,requests.memory=1Gi,limits.cpu=2,limits.memory=4Gi",
    r#""nodeselector=kubernetes.io/arch=amd64","tolerations=key=dedicated,operator=Equal,value=ci,effect=NoSchedule;key=spot,operator=Exists""#,
    "loadbalance=sticky,timeout=300s",
];

fn naive(records: [&str; 3]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for record in records {
        for field in record.split(',') {
            if let Some((k, v)) = field.split_once('=') {
                map.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    map
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("typical 10 options");
    group.bench_function("baseline: naive split into HashMap", |b| {
        b.iter(|| naive(black_box(TYPICAL)))
    });
    group.bench_function("kbx: records -> DriverOpts", |b| {
        b.iter(|| DriverOpts::parse(black_box(TYPICAL)).expect("valid"))
    });
    group.bench_function("kbx: records -> KubernetesOptions", |b| {
        b.iter(|| KubernetesOptions::parse(black_box(TYPICAL)).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
