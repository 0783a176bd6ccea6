//! What the chooser needs to know about a pod, and which pods are candidates.

use std::fmt;

/// The `status.phase` of a pod.
///
/// Only [`PodPhase::Running`] pods are candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodPhase {
    /// `Pending`: accepted, but not all containers run yet.
    Pending,
    /// `Running`: bound to a node, at least one container running.
    Running,
    /// `Succeeded`: all containers exited with success.
    Succeeded,
    /// `Failed`: all containers exited, at least one with failure.
    Failed,
    /// `Unknown`, or any value this crate does not know.
    Unknown,
}

impl PodPhase {
    /// Maps the phase string of the Kubernetes API to a phase.
    ///
    /// The match is exact and case-sensitive, as the API server writes it; anything else,
    /// including an empty or absent phase, is [`PodPhase::Unknown`] (never a candidate).
    ///
    /// ```
    /// use kbx_balance::PodPhase;
    /// assert_eq!(PodPhase::from_api("Running"), PodPhase::Running);
    /// assert_eq!(PodPhase::from_api("running"), PodPhase::Unknown);
    /// ```
    pub fn from_api(phase: &str) -> Self {
        match phase {
            "Pending" => PodPhase::Pending,
            "Running" => PodPhase::Running,
            "Succeeded" => PodPhase::Succeeded,
            "Failed" => PodPhase::Failed,
            _ => PodPhase::Unknown,
        }
    }

    /// The API's spelling: `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
            PodPhase::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for PodPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One pod of a builder node, as far as pod choice is concerned.
///
/// Build it from the Kubernetes object: `name` from `metadata.name`, `phase` from
/// `status.phase` ([`PodPhase::from_api`]), `ready` is whether the pod's `Ready` condition has
/// status `"True"`, and `terminating` whether `metadata.deletionTimestamp` is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pod {
    /// `metadata.name`.
    pub name: String,
    /// `status.phase`.
    pub phase: PodPhase,
    /// Whether the `Ready` condition is `"True"`.
    pub ready: bool,
    /// Whether `metadata.deletionTimestamp` is set.
    pub terminating: bool,
}

impl Pod {
    /// A pod that is `Running`, `Ready` and not terminating: the normal case.
    ///
    /// ```
    /// let pod = kbx_balance::Pod::running("buildkit-0");
    /// assert!(pod.ready && !pod.terminating);
    /// ```
    pub fn running(name: impl Into<String>) -> Self {
        Pod {
            name: name.into(),
            phase: PodPhase::Running,
            ready: true,
            terminating: false,
        }
    }

    /// A pod with the given phase, not ready and not terminating (the state of the pods in
    /// buildx's own tests, which carry no conditions).
    pub fn with_phase(name: impl Into<String>, phase: PodPhase) -> Self {
        Pod {
            name: name.into(),
            phase,
            ready: false,
            terminating: false,
        }
    }
}

/// The pods a choice is made from, sorted by name (ascending byte order).
///
/// As buildx (`ListRunningPods` at its current main branch): pods with a deletion timestamp are
/// dropped, then only `Running` pods are kept, then they are sorted by name. The sort is stable,
/// so pods with equal names keep their input order.
///
/// # Deviation
/// buildx ignores readiness, so a running pod whose BuildKit daemon is not (or no longer) ready
/// can be chosen. kbx then keeps only the pods whose `Ready` condition is true, **when at least
/// one such pod exists**; when none is ready the running pods are all kept, as in buildx, so a
/// builder whose readiness probe is slow still works. When all candidates are ready (the normal
/// case) or none is, the result is exactly buildx's.
///
/// ```
/// use kbx_balance::{Pod, PodPhase, candidates};
///
/// let mut unready = Pod::running("b");
/// unready.ready = false;
/// let mut leaving = Pod::running("a");
/// leaving.terminating = true;
/// let pods = [Pod::running("c"), unready, leaving, Pod::with_phase("d", PodPhase::Pending)];
/// let names: Vec<&str> = candidates(&pods).iter().map(|p| p.name.as_str()).collect();
/// assert_eq!(names, ["c"]);
/// ```
pub fn candidates(pods: &[Pod]) -> Vec<&Pod> {
    let mut running: Vec<&Pod> = pods
        .iter()
        .filter(|p| !p.terminating && p.phase == PodPhase::Running)
        .collect();
    if running.iter().any(|p| p.ready) {
        running.retain(|p| p.ready);
    }
    running.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    running
}
