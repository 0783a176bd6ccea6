//! The CLI's error type and exit codes.

/// Exit code for a failed command (bad input, failed operation).
pub(crate) const EXIT_FAILURE: u8 = 1;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A plain message in buildx's words.
    #[error("{0}")]
    Message(String),
    /// Bad `--driver-opt`, `--platform`, `--buildkitd-flags` or config file.
    #[error(transparent)]
    Options(#[from] kbx_opts::Error),
    /// Objects that would be rejected by the API server.
    #[error(transparent)]
    Manifest(#[from] kbx_manifest::Error),
    /// The builder store.
    #[error(transparent)]
    Store(#[from] kbx_store::Error),
    /// The cluster.
    #[error(transparent)]
    Kube(#[from] kbx_kube::Error),
    /// A registry (`imagetools`).
    #[error(transparent)]
    Registry(#[from] kbx_registry::Error),
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
    /// Reading a file given on the command line.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Several independent failures (e.g. removing several builders).
    #[error("{0}")]
    Summary(String),
}

impl Error {
    pub(crate) fn msg(text: impl Into<String>) -> Self {
        Error::Message(text.into())
    }
}

/// Prints an error with its whole cause chain, and every problem of a multi-problem error.
pub(crate) fn report(err: &Error) {
    let mut lines = Vec::new();
    collect(err, &mut lines);
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            eprintln!("ERROR: {line}");
        } else {
            eprintln!("  {line}");
        }
    }
    if let Some(hint) = hint(&lines.join("\n")) {
        eprintln!("hint: {hint}");
    }
    for hint in option_hints(err) {
        eprintln!("hint: {hint}");
    }
}

/// Our own error, plain or boxed.
fn ours<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e Error> {
    err.downcast_ref::<Error>()
        .or_else(|| err.downcast_ref::<Box<Error>>().map(|b| &**b))
}

/// The driver-option error anywhere in the cause chain.
fn options_error<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e kbx_opts::Error> {
    match ours(err) {
        Some(Error::Options(o)) => Some(o),
        _ => err.downcast_ref::<kbx_opts::Error>(),
    }
}

/// For each invalid driver option: its name and what it takes (buildx's texts above name
/// neither).
fn option_hints(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(opts) = options_error(e) {
            return opts
                .iter()
                .filter_map(|o| {
                    Some(format!(
                        "--driver-opt {}: expected {}",
                        o.key()?,
                        o.expected()?
                    ))
                })
                .collect();
        }
        next = e.source();
    }
    Vec::new()
}

fn collect(err: &(dyn std::error::Error + 'static), lines: &mut Vec<String>) {
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
    let text = err.to_string();
    if !text.is_empty() && lines.last() != Some(&text) {
        lines.push(if lines.is_empty() {
            text
        } else {
            format!("caused by: {text}")
        });
    }
    if let Some(source) = err.source() {
        collect(source, lines);
    }
}

/// A hint when the cause is obvious.
fn hint(text: &str) -> Option<&'static str> {
    if text.contains("Cannot connect to the Docker daemon") {
        Some(
            "the `default` builder and --load use the Docker Engine; start Docker, set DOCKER_HOST, pick another builder with --builder NAME or `kbx use NAME`, or write the image with -o type=docker,dest=FILE",
        )
    } else if text.contains("forbidden") {
        Some(
            "the Kubernetes user lacks a permission; kbx needs get/list/watch/create/patch/delete on deployments, statefulsets, configmaps and pods, and create on pods/exec, in the builder's namespace",
        )
    } else if text.contains("refused access") {
        Some(
            "log in with `docker login REGISTRY`: kbx reads the Docker CLI's config.json ($DOCKER_CONFIG or ~/.docker) and its credential helpers",
        )
    } else if text.contains("is unreachable") {
        Some(
            "check the registry's address and that it is running; only localhost, 127.0.0.0/8 and ::1 are spoken to over plain HTTP, other registries over HTTPS",
        )
    } else if text.contains("exporter \"image\" is not supported") {
        Some(
            "pushing and image exports need buildkitd's image exporter (builder pods running moby/buildkit, or a remote buildkitd); Docker's embedded BuildKit exports with the docker driver (--push pushes through the Engine), or use -o type=local/tar",
        )
    } else if text.to_ascii_lowercase().contains("unauthorized")
        || text.contains("authentication required")
    {
        Some(
            "registry credentials come from ~/.docker/config.json (or $DOCKER_CONFIG) and its credential helpers; log in with `docker login HOST`",
        )
    } else if (text.contains("push ") || text.contains("failed to do request"))
        && (text.contains("connection refused")
            || text.contains("no such host")
            || text.contains("i/o timeout"))
    {
        Some(
            "the registry is not reachable from the builder (on the docker driver the Docker Engine pushes); check the image name's registry host and that the registry runs",
        )
    } else if text.contains("requires kubernetes API access") {
        Some("set KUBECONFIG or create ~/.kube/config")
    } else if text.contains("Connection refused") || text.contains("connection refused") {
        Some(
            "the API server is not reachable; check the cluster and the kubeconfig's server address",
        )
    } else {
        None
    }
}

/// An error and its causes on one line, `: `-separated.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
