//! Parsing a typical 10-option `--driver-opt` set.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use kbx_opts::{DriverOpts, KubernetesOptions};

const TYPICAL: [&str; 3] = [
    "namespace=buildkit,replicas=2,requests.cpu=500m,requests.memory=1Gi,limits.cpu=2,limits.memory=4Gi",
    r#""nodeselector=kubernetes.io/arch=amd64","tolerations=key=dedicated,operator=Equal,value=ci,effect=NoSchedule;key=spot,operator=Exists""#,
    "loadbalance=sticky,timeout=300s",
];

fn bench(c: &mut Criterion) {
    c.bench_function("csv records -> DriverOpts (10 options)", |b| {
        b.iter(|| DriverOpts::parse(std::hint::black_box(TYPICAL)).expect("valid"))
    });
    c.bench_function("csv records -> KubernetesOptions (10 options)", |b| {
        b.iter(|| KubernetesOptions::parse(std::hint::black_box(TYPICAL)).expect("valid"))
    });
    let opts = DriverOpts::parse(TYPICAL).expect("valid");
    c.bench_function("DriverOpts -> KubernetesOptions (10 options)", |b| {
        b.iter(|| KubernetesOptions::from_driver_opts(std::hint::black_box(&opts)).expect("valid"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
