//! Synthetic workloads shared by the balance tests and the benchmark.
#![allow(dead_code, unreachable_pub)]

use kbx_balance::{LoadBalance, Pod, PodChooser};

/// `n` distinct, realistic-looking absolute context paths (deterministic).
pub fn synthetic_paths(n: usize) -> Vec<String> {
    const TAILS: [&str; 5] = ["", "/app", "/docker/build", "/services/api", "/web"];
    (0..n)
        .map(|i| {
            let user = i % 53;
            let project = i / 53;
            format!(
                "/home/dev{user}/src/project-{project}{}",
                TAILS[(i / 7) % TAILS.len()]
            )
        })
        .collect()
}

/// The pods of a StatefulSet-mode node: `<node>-0` … `<node>-<n-1>`, running and ready.
pub fn statefulset_pods(node: &str, n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| Pod::running(format!("{node}-{i}")))
        .collect()
}

/// The index (in `pods`) of the pod each key goes to.
pub fn assign(strategy: LoadBalance, keys: &[String], pods: &[Pod]) -> Vec<usize> {
    let chooser = PodChooser::new(strategy);
    keys.iter()
        .map(|k| {
            let chosen = chooser.choose(k, pods).expect("pods are candidates");
            pods.iter()
                .position(|p| std::ptr::eq(p, chosen))
                .expect("chosen from pods")
        })
        .collect()
}

/// The most loaded pod's key count divided by the mean count.
pub fn max_over_mean(assignment: &[usize], pods: usize) -> f64 {
    let mut counts = vec![0usize; pods];
    for &i in assignment {
        counts[i] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(0);
    max as f64 * pods as f64 / assignment.len() as f64
}

/// The share of keys whose pod (by name) differs between two assignments over `before`/`after`.
pub fn moved_share(
    before: &[usize],
    before_pods: &[Pod],
    after: &[usize],
    after_pods: &[Pod],
) -> f64 {
    let moved = before
        .iter()
        .zip(after)
        .filter(|&(&b, &a)| before_pods[b].name != after_pods[a].name)
        .count();
    moved as f64 / before.len() as f64
}
