//! The CLI's error type, its exit codes and how it is reported.
//!
//! Every library error has its own variant, so the cause chain survives up to [`report`], which
//! prints it whole and picks hints by matching on the variants (and on the library errors' own
//! variants). Only messages written by the BuildKit daemon or the Docker Engine are matched as
//! text, since they have no structure to match on.
//!
//! Errors that BuildKit or Go code would print `context: cause: cause` keep that shape: BuildKit
//! errors and the variants for which [`Error::inline_causes`] holds print their causes on their
//! own line (the latter in their `Display`, with the source still kept); the others list each
//! cause on a `caused by:` line.

use std::error::Error as StdError;

/// Exit code for a failed command (bad input, failed operation).
pub(crate) const EXIT_FAILURE: u8 = 1;

/// Exit codes and their meanings, as `kbx --help` lists them.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  the command succeeded
  1  the command failed: bad input, a builder that cannot be reached, a failed build, a
     cluster, registry or store error (the message and its causes are printed on stderr)
  2  bad command-line syntax: an unknown command or flag, or a missing or invalid value
  141  the reader of standard output went away (`kbx ls | head -1`); nothing is printed";

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A plain message in buildx's words.
    #[error("{0}")]
    Message(String),
    /// Bad `--driver-opt`, `--platform`, `--buildkitd-flags` or config file.
    #[error(transparent)]
    Options(#[from] kbx_opts::Error),
    /// A value of a flag that the option parser refused, with what it was (`invalid
    /// --platform`).
    #[error("{what}: {}", chain(.source))]
    InvalidValue {
        /// What was being parsed.
        what: String,
        /// The parser's error.
        #[source]
        source: Box<kbx_opts::Error>,
    },
    /// Objects that would be rejected by the API server.
    #[error(transparent)]
    Manifest(#[from] kbx_manifest::Error),
    /// The builder store.
    #[error(transparent)]
    Store(#[from] kbx_store::Error),
    /// The cluster.
    #[error(transparent)]
    Kube(#[from] kbx_kube::Error),
    /// No pod of a node could be chosen.
    #[error(transparent)]
    Balance(#[from] kbx_balance::Error),
    /// A registry (`imagetools`, the manifest list of a multi-node push).
    #[error(transparent)]
    Registry(#[from] kbx_registry::Error),
    /// BuildKit, the Docker Engine, or the build options and credentials they are given.
    #[error(transparent)]
    Buildkit(#[from] kbx_buildkit::Error),
    /// A BuildKit daemon that cannot be reached or does not answer.
    #[error("{what}: {}", chain(.source))]
    BuildkitUnreachable {
        /// `cannot connect to BuildKit at ADDRESS`, `BuildKit does not answer`, ….
        what: String,
        /// Why.
        #[source]
        source: Box<kbx_buildkit::Error>,
    },
    /// A build failed after the pod it ran on went away or stopped serving.
    #[error("builder pod {pod} {fate} during the build")]
    PodLost {
        /// The pod's name.
        pod: String,
        /// `was deleted`, `is being deleted`, `stopped running (Failed)`, `cannot be reached
        /// through the kubelet of its node …`, ….
        fate: String,
        /// The pod still runs, but the connection to it broke (exec stream through the API
        /// server and the node's kubelet).
        cut_off: bool,
        /// How the build failed.
        #[source]
        source: Box<kbx_buildkit::Error>,
    },
    /// The Docker Engine cannot be reached, in the Docker CLI's words (which name no cause;
    /// the cause is kept but not printed).
    #[error("{}", docker_unreachable(.host, *.denied, .source))]
    DockerUnreachable {
        /// `DOCKER_HOST` or the default socket.
        host: String,
        /// Whether to name the OS error of a socket that may not be opened (what the Docker
        /// CLI does when it loads an image).
        denied: bool,
        /// The failed connection.
        #[source]
        source: Box<kbx_buildkit::Error>,
    },
    /// `DOCKER_HOST` does not name an Engine that `--load` can load into.
    #[error("cannot load the image into Docker at DOCKER_HOST={host}: {}", chain(.source))]
    DockerHost {
        /// The value of `DOCKER_HOST`.
        host: String,
        /// Why it cannot be used.
        #[source]
        source: Box<kbx_buildkit::Error>,
    },
    /// The Docker CLI's credentials (config file or helpers) cannot be read.
    #[error("cannot load the Docker credentials: {}", chain(.0))]
    Credentials(#[source] kbx_buildkit::Error),
    /// An `imagetools create` source that is not a descriptor.
    #[error("invalid source descriptor {text}: {}", chain(.source))]
    Descriptor {
        /// The source as given.
        text: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// JSON output could not be written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A node-level failure, with buildx's prefix.
    #[error("failed to initialize builder {builder} ({node})")]
    Node {
        /// The builder.
        builder: String,
        /// The node.
        node: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// Removing a node's cluster objects failed.
    #[error("failed to remove node {node}: {}", chain(.source.as_ref()))]
    RemoveNode {
        /// The node.
        node: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A task running in parallel (booting one node) panicked or was cancelled.
    #[error("bootstrap task failed: {}", chain(.0))]
    Task(#[source] tokio::task::JoinError),
    /// Reading a file given on the command line.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A byte stream to BuildKit (`dial-stdio`) could not be opened or broke off.
    #[error("{what}")]
    Io {
        /// What was being done, e.g. `cannot connect to BuildKit at unix:///…`.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Several independent failures (e.g. removing several builders).
    #[error("{0}")]
    Summary(String),
    /// `use NAME`: no builder has that name (a hint points at `kbx ls`).
    #[error("no builder {0:?} found")]
    UnknownBuilder(String),
    /// The command printed its own outcome and exits with this status, with no error message
    /// (`build --check` that found violations: the frontend's `result.statuscode`).
    #[error("exit status {0}")]
    Status(u8),
}

impl Error {
    pub(crate) fn msg(text: impl Into<String>) -> Self {
        Error::Message(text.into())
    }

    /// The process exit code for this error (see [`EXIT_CODES_HELP`]). Every failure of a
    /// command exits with 1, as buildx's do, so scripts written for buildx keep working.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Error::Message(_)
            | Error::Options(_)
            | Error::InvalidValue { .. }
            | Error::Manifest(_)
            | Error::Store(_)
            | Error::Kube(_)
            | Error::Balance(_)
            | Error::Registry(_)
            | Error::Buildkit(_)
            | Error::BuildkitUnreachable { .. }
            | Error::PodLost { .. }
            | Error::DockerUnreachable { .. }
            | Error::DockerHost { .. }
            | Error::Credentials(_)
            | Error::Descriptor { .. }
            | Error::Json(_)
            | Error::Node { .. }
            | Error::RemoveNode { .. }
            | Error::Task(_)
            | Error::Read { .. }
            | Error::Io { .. }
            | Error::Summary(_)
            | Error::UnknownBuilder(_) => EXIT_FAILURE,
            Error::Status(code) => *code,
        }
    }

    /// Whether `Display` already ends with the causes, `: `-separated, as BuildKit and buildx
    /// print wrapped errors; otherwise each cause gets a `caused by:` line.
    fn inline_causes(&self) -> bool {
        match self {
            Error::InvalidValue { .. }
            | Error::BuildkitUnreachable { .. }
            | Error::DockerHost { .. }
            | Error::Credentials(_)
            | Error::Descriptor { .. }
            | Error::RemoveNode { .. }
            | Error::Task(_) => true,
            Error::Message(_)
            | Error::Buildkit(_)
            | Error::Options(_)
            | Error::Manifest(_)
            | Error::Store(_)
            | Error::Kube(_)
            | Error::Balance(_)
            | Error::Registry(_)
            | Error::DockerUnreachable { .. }
            | Error::PodLost { .. }
            | Error::Json(_)
            | Error::Node { .. }
            | Error::Read { .. }
            | Error::Io { .. }
            | Error::Summary(_)
            | Error::UnknownBuilder(_)
            | Error::Status(_) => false,
        }
    }
}

impl Error {
    /// The library error a transparent variant wraps (whose `source` is the wrapped error's
    /// own source, so a walk along `source` would skip it).
    fn wrapped(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Options(e) => Some(e),
            Error::Manifest(e) => Some(e),
            Error::Store(e) => Some(e),
            Error::Kube(e) => Some(e),
            Error::Balance(e) => Some(e),
            Error::Registry(e) => Some(e),
            Error::Buildkit(e) => Some(e),
            Error::Json(e) => Some(e),
            _ => None,
        }
    }
}

/// The Docker CLI's message for an Engine it cannot reach: a socket it may not open names the
/// OS error, anything else asks whether the daemon runs.
fn docker_unreachable(host: &str, denied: bool, source: &kbx_buildkit::Error) -> String {
    match permission_denied(source).filter(|_| denied) {
        Some(io) => format!(
            "permission denied while trying to connect to the Docker daemon socket at {host}: {io}"
        ),
        None => {
            format!("Cannot connect to the Docker daemon at {host}. Is the docker daemon running?")
        }
    }
}

/// The OS error of a connection the OS refused for lack of permission.
fn permission_denied(err: &kbx_buildkit::Error) -> Option<&std::io::Error> {
    causes(err).find_map(|e| match buildkit(e) {
        Some(kbx_buildkit::Error::Connect { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Some(source)
        }
        _ => None,
    })
}

/// A BuildKit error, plain or boxed (`EngineLoad` boxes its source).
fn buildkit<'e>(err: &'e (dyn StdError + 'static)) -> Option<&'e kbx_buildkit::Error> {
    err.downcast_ref::<kbx_buildkit::Error>().or_else(|| {
        err.downcast_ref::<Box<kbx_buildkit::Error>>()
            .map(AsRef::as_ref)
    })
}

/// Prints an error with its whole cause chain, and every problem of a multi-problem error.
pub(crate) fn report(err: &Error) {
    if matches!(err, Error::Status(_)) {
        return;
    }
    let mut lines = Vec::new();
    collect(err, &mut lines);
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            eprintln!("ERROR: {line}");
        } else {
            eprintln!("  {line}");
        }
    }
    if let Some(hint) = hint(err) {
        eprintln!("hint: {hint}");
    }
    for hint in option_hints(err) {
        eprintln!("hint: {hint}");
    }
}

/// Our own error, plain or boxed.
fn ours<'e>(err: &'e (dyn StdError + 'static)) -> Option<&'e Error> {
    err.downcast_ref::<Error>()
        .or_else(|| err.downcast_ref::<Box<Error>>().map(|b| &**b))
}

/// The cause shown after `err`: none after the Docker CLI's own message or a message that
/// names its causes itself, else the source.
fn shown_source<'e>(err: &'e (dyn StdError + 'static)) -> Option<&'e (dyn StdError + 'static)> {
    match ours(err) {
        Some(Error::DockerUnreachable { .. }) => None,
        Some(e) if e.inline_causes() => None,
        _ => err.source(),
    }
}

/// Every error of the chain, `err` first, looking inside IO errors that wrap another error
/// (an `io::Error`'s own `source` skips the error it wraps).
fn causes<'e>(
    err: &'e (dyn StdError + 'static),
) -> impl Iterator<Item = &'e (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e: &&'e (dyn StdError + 'static)| {
        if let Some(ours) = ours(e) {
            return ours.wrapped().or_else(|| e.source());
        }
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        }
    })
}

/// The driver-option error anywhere in the cause chain.
fn options_error<'e>(err: &'e (dyn StdError + 'static)) -> Option<&'e kbx_opts::Error> {
    match ours(err) {
        Some(Error::Options(o)) => Some(o),
        _ => err.downcast_ref::<kbx_opts::Error>(),
    }
}

/// For each invalid driver option: its name and what it takes (buildx's texts above name
/// neither).
fn option_hints(err: &(dyn StdError + 'static)) -> Vec<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(opts) = options_error(e) {
            return opts
                .iter()
                .filter_map(|o| match o {
                    kbx_opts::Error::BuildFlag { flag, .. } => {
                        Some(format!("{flag}: expected {}", o.expected()?))
                    }
                    _ => Some(format!(
                        "--driver-opt {}: expected {}",
                        o.key()?,
                        o.expected()?
                    )),
                })
                .collect();
        }
        next = e.source();
    }
    Vec::new()
}

fn collect(err: &(dyn StdError + 'static), lines: &mut Vec<String>) {
    // Errors that carry several problems list each on its own line.
    let opts = options_error(err);
    let manifest = match ours(err) {
        Some(Error::Manifest(m)) => Some(m),
        _ => err.downcast_ref::<kbx_manifest::Error>(),
    };
    let prefix = if lines.is_empty() { "" } else { "caused by: " };
    if let Some(opts) = opts
        && opts.iter().count() > 1
    {
        lines.push(format!(
            "{prefix}{} driver options are invalid:",
            opts.iter().count()
        ));
        lines.extend(opts.iter().map(|e| format!("- {e}")));
        return;
    }
    if let Some(m) = manifest
        && m.errors().len() > 1
    {
        lines.push(format!(
            "{prefix}{} problems would make the API server reject the objects:",
            m.errors().len()
        ));
        lines.extend(m.errors().iter().map(|e| format!("- {e}")));
        return;
    }
    let inline = ours(err).is_some_and(|e| matches!(e, Error::Buildkit(_)) || e.inline_causes())
        || buildkit(err).is_some();
    let text = if inline { chain(err) } else { err.to_string() };
    // hyper's and kube's errors repeat their cause's text (`ServiceError: client error
    // (Connect)`, then `client error (Connect)` twice): once is enough.
    let line = format!("{prefix}{text}");
    let repeated = lines
        .last()
        .is_some_and(|l| l.strip_prefix("caused by: ").unwrap_or(l).ends_with(&text));
    if !text.is_empty() && !repeated {
        lines.push(line);
    }
    if inline {
        return;
    }
    if let Some(source) = shown_source(err) {
        collect(source, lines);
    }
}

/// A hint when the cause is obvious: from the variants of the chain first, then from what the
/// BuildKit daemon or the Docker Engine said.
pub(crate) fn hint(err: &Error) -> Option<&'static str> {
    let chain: Vec<&(dyn StdError + 'static)> = causes(err).collect();
    let has = |pred: &dyn Fn(&(dyn StdError + 'static)) -> bool| chain.iter().any(|e| pred(*e));
    let registry = |pred: &dyn Fn(&kbx_registry::Error) -> bool| {
        has(&|e| e.downcast_ref::<kbx_registry::Error>().is_some_and(pred))
    };
    let kube = |pred: &dyn Fn(&kbx_kube::Error) -> bool| {
        has(&|e| e.downcast_ref::<kbx_kube::Error>().is_some_and(pred))
    };
    let daemon = daemon_text(&chain);
    let daemon_lower = daemon.to_ascii_lowercase();

    if has(&|e| matches!(ours(e), Some(Error::UnknownBuilder(_)))) {
        Some("run `kbx ls` to see the available builders")
    } else if has(&|e| matches!(ours(e), Some(Error::PodLost { cut_off: true, .. }))) {
        Some(
            "kbx reaches the pod through the API server and the kubelet of the pod's node; check that the node is Ready (`kubectl get nodes`), then run the build again",
        )
    } else if has(&|e| matches!(ours(e), Some(Error::PodLost { .. }))) {
        Some(
            "run the build again: it goes to a pod that is ready; `kbx inspect --bootstrap` waits until the builder's pods are back",
        )
    } else if has(&|e| {
        matches!(ours(e), Some(Error::DockerUnreachable { source, denied, .. })
            if !denied || permission_denied(source).is_none())
    }) {
        Some(
            "the `default` builder and --load use the Docker Engine; start Docker, set DOCKER_HOST, pick another builder with --builder NAME or `kbx use NAME`, or write the image with -o type=docker,dest=FILE",
        )
    } else if forbidden_anywhere(err) {
        Some(
            "the Kubernetes user lacks a permission; kbx needs get/list/watch/create/patch/delete on deployments, statefulsets, configmaps and pods, and get and create on pods/exec (Kubernetes before 1.30 checks get, later versions create), in the builder's namespace",
        )
    } else if registry(&|e| matches!(e, kbx_registry::Error::Unauthorized { .. })) {
        Some(
            "log in with `docker login REGISTRY`: kbx reads the Docker CLI's config.json ($DOCKER_CONFIG or ~/.docker) and its credential helpers",
        )
    } else if registry(&|e| matches!(e, kbx_registry::Error::Unreachable { .. })) {
        Some(
            "check the registry's address and that it is running; only localhost, 127.0.0.0/8 and ::1 are spoken to over plain HTTP, other registries over HTTPS",
        )
    } else if has(&|e| {
        matches!(
            buildkit(e),
            Some(kbx_buildkit::Error::Unsupported { what, .. }) if what == "exporter \"image\""
        )
    }) {
        Some(
            "pushing and image exports need buildkitd's image exporter (builder pods running moby/buildkit, or a remote buildkitd); Docker's embedded BuildKit exports with the docker driver (--push pushes through the Engine), or use -o type=local/tar",
        )
    } else if daemon_lower.contains("unauthorized") || daemon.contains("authentication required") {
        Some(
            "registry credentials come from ~/.docker/config.json (or $DOCKER_CONFIG) and its credential helpers; log in with `docker login HOST`",
        )
    } else if (daemon.contains("push ") || daemon.contains("failed to do request"))
        && (daemon.contains("connection refused")
            || daemon.contains("no such host")
            || daemon.contains("i/o timeout"))
    {
        Some(
            "the registry is not reachable from the builder (on the docker driver the Docker Engine pushes); check the image name's registry host and that the registry runs",
        )
    } else if kube(&|e| matches!(e, kbx_kube::Error::NoApiAccess { .. })) {
        Some("set KUBECONFIG or create ~/.kube/config")
    } else if kube(&|e| causes(e).any(connection_refused)) {
        Some(
            "the API server is not reachable; check the cluster and the kubeconfig's server address",
        )
    } else {
        None
    }
}

/// Whether the API server refused something in `err`'s chain (403 Forbidden), looking inside
/// IO and transport errors too.
pub(crate) fn forbidden_anywhere(err: &Error) -> bool {
    causes(err).any(|e| {
        e.downcast_ref::<kube::Error>().is_some_and(forbidden)
            || e.downcast_ref::<kube::core::Status>()
                .is_some_and(|s| s.code == 403)
            || e.downcast_ref::<kbx_kube::ApiAnswer>()
                .is_some_and(|a| a.status().code == 403)
    })
}

fn forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 403)
}

/// Whether a connection was refused.
fn connection_refused(err: &(dyn StdError + 'static)) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// What the BuildKit daemon and the Docker Engine said in the chain (their messages and the
/// calls they answered), one message a line.
fn daemon_text(chain: &[&(dyn StdError + 'static)]) -> String {
    let mut text = String::new();
    for &e in chain {
        if let Some(
            bk @ (kbx_buildkit::Error::Rpc { .. }
            | kbx_buildkit::Error::Solve { .. }
            | kbx_buildkit::Error::Engine { .. }
            | kbx_buildkit::Error::Upgrade { .. }),
        ) = buildkit(e)
        {
            text.push_str(&bk.to_string());
            text.push('\n');
        }
    }
    text
}

/// An error and its causes on one line, `: `-separated.
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut last = text.clone();
    let mut source = shown_source(e);
    while let Some(s) = source {
        // A cause whose text ends its wrapper's (hyper's `client error (Connect)`) once.
        let next = s.to_string();
        if !last.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        last = next;
        source = shown_source(s);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(err: &Error) -> Vec<String> {
        let mut lines = Vec::new();
        collect(err, &mut lines);
        lines
    }

    #[test]
    fn a_refused_request_names_it_once_with_the_permission_hint() {
        let message = "deployments.apps \"k0\" is forbidden: User \"u\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"ns\"";
        let err = Error::Kube(kbx_kube::Error::Apply {
            kind: "Deployment",
            name: "k0".into(),
            source: kbx_kube::RequestError::new(
                "Patch",
                "https://127.0.0.1:6443/apis/apps/v1/namespaces/ns/deployments/k0",
                kube::Error::Api(
                    kube::core::Status::failure(message, "Forbidden")
                        .with_code(403)
                        .boxed(),
                ),
            ),
        });
        let lines = lines(&err);
        assert_eq!(
            lines.iter().filter(|l| l.contains("cannot patch")).count(),
            1,
            "{lines:#?}"
        );
        assert!(lines.iter().all(|l| !l.contains("Status {")), "{lines:#?}");
        assert!(
            lines.iter().any(|l| l.contains(
                "Patch \"https://127.0.0.1:6443/apis/apps/v1/namespaces/ns/deployments/k0\""
            )),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.ends_with(message)),
            "the answer is shown as the API server gave it, without `: Forbidden`: {lines:#?}"
        );
        assert!(hint(&err).is_some_and(|h| h.contains("pods/exec")));
    }

    /// An error whose cause reads the same (hyper's client errors).
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Twice(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Inner(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("ServiceError: {0}")]
    struct Service(#[source] Twice);

    #[test]
    fn a_cause_that_repeats_its_wrapper_is_printed_once() {
        let e = Twice(Inner(std::io::Error::other("connection refused")));
        let wrapped = Service(Twice(Inner(std::io::Error::other("refused"))));
        assert_eq!(
            chain(&wrapped),
            "ServiceError: client error (Connect): refused"
        );
        assert_eq!(chain(&e), "client error (Connect): connection refused");
        let mut out = Vec::new();
        collect(&e, &mut out);
        assert_eq!(
            out,
            ["client error (Connect)", "caused by: connection refused"]
        );
    }

    #[test]
    fn buildkit_errors_print_their_causes_on_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let bk = kbx_buildkit::Error::Connect {
            addr: "tcp://h:1".into(),
            source: io,
        };
        let err = Error::BuildkitUnreachable {
            what: "cannot connect to BuildKit at tcp://h:1".into(),
            source: Box::new(bk),
        };
        assert_eq!(
            lines(&err),
            ["cannot connect to BuildKit at tcp://h:1: connect to tcp://h:1: gone"]
        );
        assert_eq!(chain(&err), lines(&err)[0]);
        let node = Error::Node {
            builder: "b".into(),
            node: "n".into(),
            source: Box::new(err),
        };
        assert_eq!(
            lines(&node),
            [
                "failed to initialize builder b (n)",
                "caused by: cannot connect to BuildKit at tcp://h:1: connect to tcp://h:1: gone"
            ]
        );
        assert_eq!(hint(&node), None);
    }

    #[test]
    fn the_docker_cli_message_hides_its_cause_and_gets_a_hint() {
        let refused = Error::DockerUnreachable {
            host: "unix:///x.sock".into(),
            denied: false,
            source: Box::new(kbx_buildkit::Error::Connect {
                addr: "unix:///x.sock".into(),
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            }),
        };
        let text =
            "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?";
        assert_eq!(lines(&refused), [text]);
        assert_eq!(chain(&refused), text);
        assert!(hint(&refused).is_some_and(|h| h.contains("Docker Engine")));
        let denied = Error::DockerUnreachable {
            host: "unix:///x.sock".into(),
            denied: true,
            source: Box::new(kbx_buildkit::Error::EngineLoad {
                addr: "docker-unix:///x.sock".into(),
                source: Box::new(kbx_buildkit::Error::Connect {
                    addr: "unix:///x.sock".into(),
                    source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no"),
                }),
            }),
        };
        assert_eq!(
            chain(&denied),
            "permission denied while trying to connect to the Docker daemon socket at unix:///x.sock: no"
        );
        assert_eq!(hint(&denied), None);
    }

    #[test]
    fn hints_come_from_variants_and_daemon_messages() {
        let unauthorized = Error::Registry(kbx_registry::Error::Unauthorized {
            registry: "r".into(),
            credentials_sent: false,
            detail: "no".into(),
        });
        assert!(hint(&unauthorized).is_some_and(|h| h.starts_with("log in with")));
        let engine = Error::Buildkit(kbx_buildkit::Error::Engine {
            call: "push r/app:1".into(),
            message: "unauthorized: authentication required".into(),
        });
        assert!(hint(&engine).is_some_and(|h| h.starts_with("registry credentials")));
        let push = Error::Buildkit(kbx_buildkit::Error::Engine {
            call: "push r/app:1".into(),
            message: "dial tcp 127.0.0.1:5000: connect: connection refused".into(),
        });
        assert!(hint(&push).is_some_and(|h| h.starts_with("the registry is not reachable")));
        // Our own words are not daemon messages.
        assert_eq!(hint(&Error::msg("unauthorized connection refused")), None);
        let no_access = Error::Kube(kbx_kube::Error::NoApiAccess { tried: "x".into() });
        assert_eq!(
            hint(&no_access),
            Some("set KUBECONFIG or create ~/.kube/config")
        );
    }

    #[test]
    fn every_failure_exits_with_one() {
        assert_eq!(Error::msg("x").exit_code(), EXIT_FAILURE);
        assert_eq!(
            Error::Summary("failed to remove one or more builders".into()).exit_code(),
            1
        );
    }
}
