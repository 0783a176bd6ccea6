//! Properties of pod choice that must hold for any key and any pod list.

use std::collections::BTreeSet;

use kbx_balance::{Error, LoadBalance, Pod, PodChooser, PodPhase, candidates};
use proptest::prelude::*;

const HASHED: [LoadBalance; 2] = [LoadBalance::Sticky, LoadBalance::Rendezvous];

/// Distinct pod names, shaped like Deployment and StatefulSet pod names plus arbitrary text.
fn pod_names(min: usize, max: usize) -> impl Strategy<Value = Vec<String>> {
    let name = prop_oneof![
        "[a-z][a-z0-9-]{0,20}-[0-9]{1,2}",
        "[a-z0-9]{1,8}-[a-f0-9]{10}-[a-z0-9]{5}",
        any::<String>(),
    ];
    proptest::collection::btree_set(name, min..=max).prop_map(|s| s.into_iter().collect())
}

fn phase() -> impl Strategy<Value = PodPhase> {
    prop_oneof![
        4 => Just(PodPhase::Running),
        1 => Just(PodPhase::Pending),
        1 => Just(PodPhase::Succeeded),
        1 => Just(PodPhase::Failed),
        1 => Just(PodPhase::Unknown),
    ]
}

/// Pods in every state, with distinct names.
fn pods_in_any_state() -> impl Strategy<Value = Vec<Pod>> {
    pod_names(0, 10).prop_flat_map(|names| {
        let n = names.len();
        proptest::collection::vec((phase(), any::<bool>(), any::<bool>()), n).prop_map(
            move |states| {
                names
                    .iter()
                    .zip(states)
                    .map(|(name, (phase, ready, terminating))| Pod {
                        name: name.clone(),
                        phase,
                        ready,
                        terminating,
                    })
                    .collect()
            },
        )
    })
}

fn running(names: &[String]) -> Vec<Pod> {
    names.iter().map(Pod::running).collect()
}

fn strategy() -> impl Strategy<Value = LoadBalance> {
    prop_oneof![
        Just(LoadBalance::Sticky),
        Just(LoadBalance::Random),
        Just(LoadBalance::Rendezvous)
    ]
}

proptest! {
    #[test]
    fn hashed_choice_is_deterministic_and_ignores_input_order(
        key in any::<String>(),
        (names, shuffled) in pod_names(1, 12)
            .prop_flat_map(|n| (Just(n.clone()), Just(n).prop_shuffle())),
    ) {
        let pods = running(&names);
        let shuffled = running(&shuffled);
        for strategy in HASHED {
            let a = PodChooser::new(strategy).choose(&key, &pods).unwrap();
            let b = PodChooser::new(strategy).choose(&key, &pods).unwrap();
            let c = PodChooser::new(strategy).choose(&key, &shuffled).unwrap();
            prop_assert_eq!(&a.name, &b.name);
            prop_assert_eq!(&a.name, &c.name);
        }
    }

    #[test]
    fn removing_another_pod_never_moves_a_key(
        key in any::<String>(),
        names in pod_names(2, 12),
        removed in any::<prop::sample::Index>(),
    ) {
        let pods = running(&names);
        let removed = removed.index(pods.len());
        let mut rest = pods.clone();
        rest.remove(removed);
        // Holds for rendezvous by design, and for buildx's ring too (a key only moves when the
        // pod owning its arc goes away).
        for strategy in HASHED {
            let chooser = PodChooser::new(strategy);
            let before = chooser.choose(&key, &pods).unwrap();
            let after = chooser.choose(&key, &rest).unwrap();
            if before.name != pods[removed].name {
                prop_assert_eq!(&before.name, &after.name, "{}", strategy);
            }
        }
    }

    #[test]
    fn adding_a_pod_only_moves_keys_to_it(
        key in any::<String>(),
        names in pod_names(2, 12),
    ) {
        let (new, old) = names.split_last().unwrap();
        let before_pods = running(old);
        let after_pods = running(&names);
        for strategy in HASHED {
            let chooser = PodChooser::new(strategy);
            let before = chooser.choose(&key, &before_pods).unwrap();
            let after = chooser.choose(&key, &after_pods).unwrap();
            prop_assert!(after.name == before.name || after.name == *new, "{}", strategy);
        }
    }

    #[test]
    fn never_chooses_a_terminating_or_unready_pod_when_another_candidate_exists(
        key in any::<String>(),
        pods in pods_in_any_state(),
        strategy in strategy(),
        seed in any::<u64>(),
    ) {
        let usable = |p: &Pod| p.phase == PodPhase::Running && !p.terminating;
        let chooser = PodChooser::with_seed(strategy, seed);
        match chooser.choose(&key, &pods) {
            Ok(chosen) => {
                prop_assert!(usable(chosen), "chose {:?}", chosen);
                if pods.iter().any(|p| usable(p) && p.ready) {
                    prop_assert!(chosen.ready, "chose unready {:?}", chosen);
                }
                prop_assert!(candidates(&pods).iter().any(|c| std::ptr::eq(*c, chosen)));
            }
            Err(err) => {
                prop_assert!(!pods.iter().any(usable));
                prop_assert_eq!(err, Error::NoRunningPods { listed: pods.len() });
            }
        }
    }

    #[test]
    fn candidates_are_sorted_and_usable(pods in pods_in_any_state()) {
        let c = candidates(&pods);
        prop_assert!(c.windows(2).all(|w| w[0].name <= w[1].name));
        prop_assert!(c.iter().all(|p| p.phase == PodPhase::Running && !p.terminating));
        let any_ready = pods.iter().any(|p| p.phase == PodPhase::Running && !p.terminating && p.ready);
        prop_assert!(!any_ready || c.iter().all(|p| p.ready));
        // Nothing usable is lost: with a ready pod, every ready one is kept; otherwise all.
        let kept: BTreeSet<&str> = c.iter().map(|p| p.name.as_str()).collect();
        for p in &pods {
            if p.phase == PodPhase::Running && !p.terminating && (p.ready || !any_ready) {
                prop_assert!(kept.contains(p.name.as_str()));
            }
        }
    }
}

#[test]
fn random_is_uniform() {
    let pods: Vec<Pod> = (0..4)
        .map(|i| Pod::running(format!("buildkit-{i}")))
        .collect();
    let chooser = PodChooser::with_seed(LoadBalance::Random, 20_260_101);
    let draws = 40_000;
    let mut counts = [0usize; 4];
    for _ in 0..draws {
        let chosen = chooser.choose("/same/key", &pods).unwrap();
        counts[pods.iter().position(|p| std::ptr::eq(p, chosen)).unwrap()] += 1;
    }
    // Expected 10,000 each, standard deviation about 87: allow seven of them.
    for c in counts {
        assert!(c.abs_diff(10_000) < 600, "{counts:?}");
    }
}

#[test]
fn random_makes_a_new_choice_on_every_call() {
    // buildx before v0.36 re-seeded from the clock in seconds, so calls within one second all
    // went to one pod. Here back-to-back calls from one process spread.
    let pods: Vec<Pod> = (0..4)
        .map(|i| Pod::running(format!("buildkit-{i}")))
        .collect();
    let chooser = PodChooser::new(LoadBalance::Random);
    let chosen: BTreeSet<&str> = (0..200)
        .map(|_| chooser.choose("", &pods).unwrap().name.as_str())
        .collect();
    assert_eq!(chosen.len(), 4, "{chosen:?}");
    // Two choosers made at the same instant do not replay each other.
    let a = PodChooser::new(LoadBalance::Random);
    let b = PodChooser::new(LoadBalance::Random);
    let xs: Vec<&str> = (0..64)
        .map(|_| a.choose("", &pods).unwrap().name.as_str())
        .collect();
    let ys: Vec<&str> = (0..64)
        .map(|_| b.choose("", &pods).unwrap().name.as_str())
        .collect();
    assert_ne!(xs, ys);
}

#[test]
fn seeded_random_replays() {
    let pods: Vec<Pod> = (0..8).map(|i| Pod::running(format!("p{i}"))).collect();
    let run = || {
        let c = PodChooser::with_seed(LoadBalance::Random, 42);
        (0..50)
            .map(|_| c.choose("", &pods).unwrap().name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
    assert_eq!(
        PodChooser::with_seed(LoadBalance::Sticky, 42).strategy(),
        LoadBalance::Sticky
    );
}
