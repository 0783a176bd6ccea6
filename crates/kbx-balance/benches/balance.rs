//! How evenly and how stably each strategy spreads build keys over pods, and what a choice costs.
//!
//! `cargo bench -p kbx-balance` first prints a table for 2–16 pods and 100,000 synthetic context
//! paths: the most loaded pod's share over the mean (1.00 is perfect), the share of keys that
//! move when the node scales from N to N+1 pods (the least possible is 1/(N+1)), and the time per
//! choice, for buildx's `sticky` ring (the baseline) and `rendezvous` side by side, all measured
//! in the same run; then the max/mean averaged over 20 sets of Deployment-style pod names, as
//! sticky's spread depends on the names. Then criterion times one choice at 4 and 16 pods for every strategy, with
//! buildx's `sticky` as the baseline. Without `--bench` (as under `cargo test`), only the
//! criterion functions run, once each, as a smoke test.
#![allow(missing_docs, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{assign, max_over_mean, moved_share, statefulset_pods, synthetic_paths};
use criterion::Criterion;
use kbx_balance::{LoadBalance, Pod, PodChooser, candidates};

const KEYS: usize = 100_000;

struct Row {
    ratio: f64,
    moved: f64,
    ns: f64,
}

/// Max/mean at `n` pods, moved share on `n`→`n+1`, and ns per choice at `n` pods.
fn measure(strategy: LoadBalance, keys: &[String], n: usize) -> Row {
    let pods = statefulset_pods("buildkit", n);
    let grown = statefulset_pods("buildkit", n + 1);
    let start = Instant::now();
    let before = assign(strategy, keys, &pods);
    let ns = start.elapsed().as_nanos() as f64 / keys.len() as f64;
    let after = assign(strategy, keys, &grown);
    Row {
        ratio: max_over_mean(&before, n),
        moved: moved_share(&before, &pods, &after, &grown),
        ns,
    }
}

fn print_table() {
    let keys = synthetic_paths(KEYS);
    println!("\nkbx-balance: {KEYS} synthetic context paths, StatefulSet pod names buildkit-<i>\n");
    println!(
        "| pods N | max/mean sticky (buildx) | max/mean rendezvous | moved N→N+1 sticky | moved N→N+1 rendezvous | ideal 1/(N+1) | ns/choice sticky | ns/choice rendezvous | rendezvous/sticky time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in 2..=16 {
        let s = measure(LoadBalance::Sticky, &keys, n);
        let r = measure(LoadBalance::Rendezvous, &keys, n);
        println!(
            "| {n} | {:.2} | {:.3} | {:.1} % | {:.1} % | {:.1} % | {:.0} | {:.0} | {:.2} |",
            s.ratio,
            r.ratio,
            100.0 * s.moved,
            100.0 * r.moved,
            100.0 / (n + 1) as f64,
            s.ns,
            r.ns,
            r.ns / s.ns,
        );
    }
    println!();
    print_name_sets(&keys);
}

/// Deployment-style pod names `<node>-<replicaset hash>-<suffix>`, from a fixed generator
/// (Kubernetes' name alphabet), so that sticky's unevenness is not judged on one name set.
fn deployment_pods(set: u64, n: usize) -> Vec<Pod> {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut state = set.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = move |len: usize| -> String {
        (0..len)
            .map(|_| {
                // splitmix64
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ALPHABET[((z ^ (z >> 31)) % ALPHABET.len() as u64) as usize] as char
            })
            .collect()
    };
    let replicaset = next(10);
    (0..n)
        .map(|_| Pod::running(format!("kube0-{replicaset}-{}", next(5))))
        .collect()
}

fn print_name_sets(keys: &[String]) {
    const SETS: u64 = 20;
    for n in [4, 8] {
        let (mut sticky, mut rendezvous) = (Vec::new(), Vec::new());
        for set in 0..SETS {
            let pods = deployment_pods(set, n);
            sticky.push(max_over_mean(&assign(LoadBalance::Sticky, keys, &pods), n));
            rendezvous.push(max_over_mean(
                &assign(LoadBalance::Rendezvous, keys, &pods),
                n,
            ));
        }
        let stats = |xs: &[f64]| {
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let worst = xs.iter().copied().fold(f64::MIN, f64::max);
            (mean, worst)
        };
        let (sm, sw) = stats(&sticky);
        let (rm, rw) = stats(&rendezvous);
        println!(
            "{n} pods, {SETS} Deployment-style name sets: max/mean sticky {sm:.2} on average (worst {sw:.2}), rendezvous {rm:.3} (worst {rw:.3})"
        );
    }
    println!();
}

fn bench_choice(c: &mut Criterion, pods: &[Pod]) {
    let key = "/home/dev7/src/project-42/docker/build";
    let mut group = c.benchmark_group(format!("choose among {} pods", pods.len()));
    for (name, strategy) in [
        ("sticky (buildx, baseline)", LoadBalance::Sticky),
        ("rendezvous", LoadBalance::Rendezvous),
        ("random", LoadBalance::Random),
    ] {
        let chooser = PodChooser::new(strategy);
        group.bench_function(name, |b| {
            b.iter(|| {
                chooser
                    .choose(black_box(key), black_box(pods))
                    .map(|p| p.name.len())
            })
        });
    }
    // `sticky` keeps the last ring it built (per thread); alternating two pod sets makes every
    // choice build its ring, as the first choice of a `kbx build` process does.
    let other: Vec<Pod> = pods
        .iter()
        .map(|p| Pod::running(format!("{}-b", p.name)))
        .collect();
    let chooser = PodChooser::new(LoadBalance::Sticky);
    let mut flip = false;
    group.bench_function("sticky, ring built on every choice", |b| {
        b.iter(|| {
            flip = !flip;
            let set = if flip { pods } else { other.as_slice() };
            chooser
                .choose(black_box(key), black_box(set))
                .map(|p| p.name.len())
        })
    });
    group.bench_function("candidates only", |b| {
        b.iter(|| candidates(black_box(pods)).len())
    });
    group.finish();
}

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        print_table();
    }
    let mut c = Criterion::default().configure_from_args();
    for n in [4, 16] {
        bench_choice(&mut c, &statefulset_pods("buildkit", n));
    }
    c.final_summary();
}
