//! buildx's own pod-chooser tests (`driver/kubernetes/podchooser/podchooser_test.go`), hash-ring
//! test vectors, and the choices the real Buildx 0.29.1 made on a cluster.

use kbx_balance::{Error, LoadBalance, Pod, PodChooser, PodPhase, candidates};

/// A pod as buildx's tests build it: a phase, maybe a deletion timestamp, no conditions.
fn pod(name: &str, phase: PodPhase, terminating: bool) -> Pod {
    let mut p = Pod::with_phase(name, phase);
    p.terminating = terminating;
    p
}

fn run(name: &str) -> Pod {
    pod(name, PodPhase::Running, false)
}

fn run_t(name: &str) -> Pod {
    pod(name, PodPhase::Running, true)
}

/// Every pod made ready, to check the cases hold whether or not the `Ready` condition is set.
fn all_ready(pods: &[Pod]) -> Vec<Pod> {
    pods.iter()
        .cloned()
        .map(|p| Pod { ready: true, ..p })
        .collect()
}

fn names(pods: &[&Pod]) -> Vec<String> {
    pods.iter().map(|p| p.name.clone()).collect()
}

/// `ListRunningPods` cases: (subtest, pods, expected names).
fn list_running_pods_cases() -> Vec<(&'static str, Vec<Pod>, Vec<&'static str>)> {
    vec![
        (
            "skips terminating pods",
            vec![run("pod-a"), run_t("pod-b"), run("pod-c")],
            vec!["pod-a", "pod-c"],
        ),
        (
            "keeps the last pod that is not terminating",
            vec![run_t("pod-a"), run("pod-b")],
            vec!["pod-b"],
        ),
        (
            "returns nothing when every pod is terminating",
            vec![run_t("pod-a"), run_t("pod-b")],
            vec![],
        ),
        (
            "skips pods that are not running",
            vec![
                pod("pod-a", PodPhase::Pending, false),
                run("pod-b"),
                pod("pod-c", PodPhase::Succeeded, false),
                pod("pod-d", PodPhase::Failed, false),
            ],
            vec!["pod-b"],
        ),
        (
            "sorts pods by name",
            vec![run("pod-c"), run("pod-a"), run("pod-b")],
            vec!["pod-a", "pod-b", "pod-c"],
        ),
    ]
}

#[test]
fn list_running_pods() {
    for (case, pods, want) in list_running_pods_cases() {
        assert_eq!(names(&candidates(&pods)), want, "{case}");
        assert_eq!(
            names(&candidates(&all_ready(&pods))),
            want,
            "{case} (all ready)"
        );
    }
}

#[test]
fn random_never_returns_a_terminating_pod() {
    let pods = [run_t("pod-a"), run("pod-b"), run_t("pod-c")];
    let chooser = PodChooser::new(LoadBalance::Random);
    for _ in 0..20 {
        assert_eq!(
            chooser
                .choose("", &pods)
                .expect("pod-b is a candidate")
                .name,
            "pod-b"
        );
    }
}

#[test]
fn random_errors_when_every_pod_is_terminating() {
    let pods = [run_t("pod-a")];
    let err = PodChooser::new(LoadBalance::Random)
        .choose("", &pods)
        .unwrap_err();
    assert_eq!(err.to_string(), "no running buildkit pods found");
    assert_eq!(err, Error::NoRunningPods { listed: 1 });
}

#[test]
fn sticky_does_not_stick_to_a_terminating_pod() {
    let key = "some-context-path-hash";
    let mut pods = vec![run("pod-a"), run("pod-b"), run("pod-c")];
    let chooser = PodChooser::new(LoadBalance::Sticky);
    let first = chooser
        .choose(key, &pods)
        .expect("three candidates")
        .name
        .clone();
    assert_eq!(first, "pod-b");
    for p in &mut pods {
        p.terminating |= p.name == first;
    }
    let second = chooser.choose(key, &pods).expect("two candidates");
    assert_ne!(second.name, first);
    assert!(!second.terminating);
    assert_eq!(second.name, "pod-c");
}

#[test]
fn sticky_errors_when_every_pod_is_terminating() {
    let pods = [run_t("pod-a"), run_t("pod-b")];
    let err = PodChooser::new(LoadBalance::Sticky)
        .choose("key", &pods)
        .unwrap_err();
    assert_eq!(err.to_string(), "no running buildkit pods found");
}

#[test]
fn every_strategy_errors_on_an_empty_list() {
    for strategy in [
        LoadBalance::Sticky,
        LoadBalance::Random,
        LoadBalance::Rendezvous,
    ] {
        let err = PodChooser::new(strategy)
            .choose("/work/app", &[])
            .unwrap_err();
        assert_eq!(err, Error::NoRunningPods { listed: 0 }, "{strategy}");
        assert_eq!(err.to_string(), "no running buildkit pods found");
    }
}

const KEYS: [&str; 6] = [
    "",
    "some-context-path-hash",
    "key",
    "/home/user/project",
    "/work/app",
    "/",
];

/// Test vectors: pods, then the chosen pod for each of [`KEYS`]. Computed with an independent
/// implementation of the ring (40 MD5 points per pod, three little-endian words each) that agreed
/// with the real Buildx on every path of [`observed_on_a_cluster`].
fn sticky_vectors() -> Vec<(Vec<String>, [String; 6])> {
    let own = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let six = |xs: [&str; 6]| xs.map(str::to_owned);
    let kube = |s: &str| format!("kube0-6977cdcb75-{s}");
    vec![
        (
            own(&["pod-a", "pod-b", "pod-c"]),
            six(["pod-c", "pod-b", "pod-a", "pod-a", "pod-b", "pod-a"]),
        ),
        (
            own(&["p0-0", "p0-1", "p0-2"]),
            six(["p0-1", "p0-0", "p0-0", "p0-1", "p0-1", "p0-2"]),
        ),
        (
            own(&["p0-0", "p0-1", "p0-2", "p0-3"]),
            six(["p0-1", "p0-0", "p0-0", "p0-1", "p0-1", "p0-2"]),
        ),
        (
            ["48ld2", "rkc6b", "vb4ks", "z4fzs"].map(kube).to_vec(),
            ["48ld2", "48ld2", "z4fzs", "vb4ks", "vb4ks", "48ld2"].map(kube),
        ),
        (
            own(&["pod-b", "pod-c"]),
            six(["pod-c", "pod-b", "pod-c", "pod-b", "pod-b", "pod-c"]),
        ),
    ]
}

/// What `docker-buildx` 0.29.1 chose on the local cluster for 30 context paths on a 3-replica
/// builder, read from the pods' BuildKit history (the interop conformance scenario).
fn observed_on_a_cluster() -> (Vec<String>, Vec<(String, String)>) {
    let pod = |s: &str| format!("ours0-58bcb696cd-{s}");
    let chosen = [
        "v4bdm", "x4445", "v4bdm", "v4bdm", "v4bdm", "v4bdm", "hmmmj", "hmmmj", "v4bdm", "x4445",
        "x4445", "x4445", "x4445", "x4445", "v4bdm", "v4bdm", "v4bdm", "x4445", "hmmmj", "x4445",
        "hmmmj", "hmmmj", "v4bdm", "hmmmj", "v4bdm", "x4445", "v4bdm", "x4445", "hmmmj", "x4445",
    ];
    (
        ["hmmmj", "v4bdm", "x4445"].map(pod).to_vec(),
        chosen
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("/tmp/.tmpmIQLX7/paths/ctx-{i:02}"), pod(c)))
            .collect(),
    )
}

#[test]
fn sticky_matches_what_the_real_buildx_chose() {
    let (names, cases) = observed_on_a_cluster();
    let pods: Vec<Pod> = names.iter().map(Pod::running).collect();
    let chooser = PodChooser::new(LoadBalance::Sticky);
    for (key, want) in cases {
        assert_eq!(
            chooser.choose(&key, &pods).expect("pods").name,
            want,
            "{key}"
        );
    }
}

#[test]
fn sticky_matches_buildx_hash_ring_vectors() {
    let chooser = PodChooser::new(LoadBalance::Sticky);
    for (pod_names, want) in sticky_vectors() {
        let mut pods: Vec<Pod> = pod_names.iter().map(Pod::running).collect();
        for (key, want) in KEYS.iter().zip(&want) {
            assert_eq!(
                &chooser.choose(key, &pods).expect("pods").name,
                want,
                "{pod_names:?} {key:?}"
            );
        }
        // Input order does not matter (candidates are sorted), nor does readiness when uniform.
        pods.reverse();
        for p in &mut pods {
            p.ready = false;
        }
        for (key, want) in KEYS.iter().zip(&want) {
            assert_eq!(
                &chooser.choose(key, &pods).expect("pods").name,
                want,
                "{pod_names:?} {key:?}"
            );
        }
    }
}

#[test]
fn default_chooser_is_sticky_as_buildx() {
    assert_eq!(PodChooser::default().strategy(), LoadBalance::Sticky);
}

#[test]
fn sticky_with_two_pods() {
    let pods = [Pod::running("pod-b"), Pod::running("pod-c")];
    let chosen = PodChooser::new(LoadBalance::Sticky).choose("some-context-path-hash", &pods);
    assert_eq!(chosen.expect("two pods").name, "pod-b");
}

#[test]
fn unready_pods_are_skipped_while_a_ready_one_exists() {
    // Deviation from buildx: "pod-a" would win "key" but is not ready.
    let mut pods = vec![run("pod-a"), run("pod-b"), run("pod-c")];
    pods[1].ready = true;
    pods[2].ready = true;
    let chooser = PodChooser::new(LoadBalance::Sticky);
    assert_eq!(chooser.choose("key", &pods).expect("pods").name, "pod-c");
    // No ready pod at all: behave as buildx and use every running pod.
    pods[1].ready = false;
    pods[2].ready = false;
    assert_eq!(chooser.choose("key", &pods).expect("pods").name, "pod-a");
}

#[test]
fn phases_round_trip_through_the_api_spelling() {
    for phase in [
        PodPhase::Pending,
        PodPhase::Running,
        PodPhase::Succeeded,
        PodPhase::Failed,
        PodPhase::Unknown,
    ] {
        assert_eq!(PodPhase::from_api(phase.as_str()), phase);
        assert_eq!(phase.to_string(), phase.as_str());
    }
    assert_eq!(PodPhase::from_api(""), PodPhase::Unknown);
    assert_eq!(PodPhase::from_api("RUNNING"), PodPhase::Unknown);
}

#[test]
fn sticky_hashes_non_utf8_keys_as_raw_bytes() {
    // A Unix path need not be UTF-8; buildx hashes its bytes. Expected values computed with an
    // independent re-implementation of the ring (Python's hashlib MD5).
    let pods: Vec<Pod> = ["p0-0", "p0-1", "p0-2", "p0-3"].map(Pod::running).to_vec();
    let chooser = PodChooser::new(LoadBalance::Sticky);
    let cases: [(&[u8], &str); 7] = [
        (b"/home/\xff\xfe/project", "p0-3"),
        (b"/tmp/caf\xe9", "p0-0"),
        (b"\x00", "p0-0"),
        (b"/srv/\x80build", "p0-0"),
        (b"/home/\xc3(", "p0-1"),
        (b"/data/\xf0(\x8c(", "p0-1"),
        (b"/x/\xfe", "p0-2"),
    ];
    for (key, want) in cases {
        assert_eq!(
            chooser.choose(key, &pods).expect("pods").name,
            want,
            "{key:?}"
        );
    }
    // A &str key and its bytes are the same key.
    for key in KEYS {
        let a = chooser.choose(key, &pods).expect("pods");
        let b = chooser.choose(key.as_bytes(), &pods).expect("pods");
        assert!(std::ptr::eq(a, b));
    }
}
