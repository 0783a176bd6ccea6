//! `kbx-bench-cluster`: kbx against the raw exec API and the real Buildx on a real cluster.
//!
//! On the local conformance cluster (booted here, root) or the cluster of `--kubeconfig`, with
//! one builder pod of `moby/buildkit:buildx-stable-1`, `--runs` rounds, each path in turn
//! (forward on odd rounds, reversed on even ones), BuildKit's state pruned before every upload:
//!
//! - **upload** of the same context (by default 2,000 files of 2 KiB and one 200 MB file of
//!   random data):
//!   - `raw`: the context's bytes through `pods/exec` into `head -c N | wc -c >&2` in the pod,
//!     with kube-rs's `AttachedProcess` and its default `AttachParams` (as
//!     `kbx_conformance::scenario::exec_stream` uses it);
//!   - `raw-ws`: the same bytes through `kbx_kube::ExecStream` (kbx's own exec WebSocket);
//!   - `kbx`: `kbx build --progress rawjson`, timed by the `[internal] load build context` vertex
//!     (first `started` to last `completed`, BuildKit's own clock);
//!   - `buildx`: the real `docker-buildx build --progress rawjson` on the same builder, timed the
//!     same way;
//! - **download** of as many bytes:
//!   - `raw` and `raw-ws`: `head -c N /dev/zero` in the pod, read to the end;
//!   - `kbx` and `buildx`: a cached build of the context exported with `-o type=local`, timed by
//!     the `exporting to client directory` vertex (each tool first builds once without output,
//!     so that its own context cache is warm);
//! - **bootstrap**: `create --bootstrap` of a new one-replica builder by kbx and by Buildx, wall
//!   time, and how long the command ran on after its pod's container was seen running and after
//!   the pod was seen Ready (a watch on the namespace); each builder is removed by the tool that
//!   made it before the next round.
//!
//! While each upload and download path runs, every process's CPU time is polled from `/proc`
//! and summed by part of the machine (client, API server, kubelet, containerd, buildkitd,
//! `buildctl`, etcd, other): where the time goes. Then one `kbx build` of a context with a
//! 1 GiB file, for kbx's peak RSS. Prints the results
//! as markdown tables on standard output; progress goes to standard error.
//!
//! ```text
//! kbx-bench-cluster [--runs N] [--kbx PATH] [--buildx PATH] [--kubeconfig PATH]
//!                   [--small-files N] [--small-bytes N] [--big-mb N] [--rss-mib N] [--work DIR]
//!                   [--only upload,download,bootstrap] [--write FILE.md]
//! ```
//!
//! With `--write`, the tables also replace what stands between the lines
//! `<!-- bench-cluster:begin -->` and `<!-- bench-cluster:end -->` of `FILE.md`
//! (`docs/benchmarks.md`), under a line naming the date, the machine and the commit.
//!
//! Buildx and kbx run with private `HOME`, `DOCKER_CONFIG` and `BUILDX_CONFIG` directories (one
//! builder store, shared), the cluster's `KUBECONFIG` and `AWS_EC2_METADATA_DISABLED=true`;
//! Buildx also with `HTTP(S)_PROXY` pointing at a closed loopback port, so nothing leaves the
//! machine (Go skips the proxy for the loopback API server by itself). kbx gets no proxy
//! variables: it honours them for the API server too, and speaks to nothing else.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kbx_conformance::local::config::no_egress_env;
use kube::Api;
use kube::api::{AttachParams, ListParams};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

/// The name of the builder the benchmark creates.
const BUILDER: &str = "kbxbench";
/// The vertex whose duration is the context transfer.
const CONTEXT_VERTEX: &str = "[internal] load build context";
/// The vertex whose duration is the export to a local directory.
const EXPORT_VERTEX: &str = "exporting to client directory";
/// How long one build, exec or prune may take.
const STEP_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
struct Args {
    runs: usize,
    kbx: PathBuf,
    buildx: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
    small_files: usize,
    small_bytes: usize,
    big_bytes: u64,
    rss_bytes: u64,
    work: Option<PathBuf>,
    phases: Vec<Phase>,
    write: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            runs: 3,
            kbx: PathBuf::from("target/release/kbx"),
            buildx: None,
            kubeconfig: None,
            small_files: 2000,
            small_bytes: 2048,
            big_bytes: 200_000_000,
            rss_bytes: 1 << 30,
            work: None,
            phases: vec![Phase::Upload, Phase::Download, Phase::Bootstrap],
            write: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Err(USAGE.into());
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = || -> Result<u64> {
                value
                    .parse::<u64>()
                    .map_err(|e| format!("{flag} {value}: {e}").into())
            };
            match flag.as_str() {
                "--runs" => args.runs = number()?.max(1) as usize,
                "--kbx" => args.kbx = PathBuf::from(&value),
                "--buildx" => args.buildx = (!value.is_empty()).then(|| PathBuf::from(&value)),
                "--kubeconfig" => args.kubeconfig = Some(PathBuf::from(&value)),
                "--small-files" => args.small_files = number()? as usize,
                "--small-bytes" => args.small_bytes = number()? as usize,
                "--big-mb" => args.big_bytes = number()? * 1_000_000,
                "--rss-mib" => args.rss_bytes = number()? << 20,
                "--work" => args.work = Some(PathBuf::from(&value)),
                "--write" => args.write = Some(PathBuf::from(&value)),
                "--only" => {
                    args.phases = value
                        .split(',')
                        .map(|p| match p {
                            "upload" => Ok(Phase::Upload),
                            "download" => Ok(Phase::Download),
                            "bootstrap" => Ok(Phase::Bootstrap),
                            _ => Err(format!(
                                "--only {value}: expected upload, download or bootstrap"
                            )),
                        })
                        .collect::<std::result::Result<_, _>>()?;
                }
                _ => return Err(format!("unknown argument {flag}\n{USAGE}").into()),
            }
        }
        Ok(args)
    }
}

const USAGE: &str = "usage: kbx-bench-cluster [--runs N] [--kbx PATH] [--buildx PATH] [--kubeconfig PATH] [--small-files N] [--small-bytes N] [--big-mb N] [--rss-mib N (0: skip)] [--work DIR] [--only upload,download,bootstrap] [--write FILE.md]";

fn log(message: &str) {
    let _ = writeln!(std::io::stderr(), "[bench-cluster] {message}");
}

fn debug(message: &str) {
    if std::env::var_os("KBX_BENCH_DEBUG").is_some() {
        log(message);
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            log(&e.to_string());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log(&format!("error: starting the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let write = args.write.clone();
    match runtime.block_on(run(args)) {
        Ok(report) => {
            let _ = std::io::stdout().write_all(report.as_bytes());
            if let Some(path) = write {
                if let Err(e) = write_report(&path, &report) {
                    log(&format!("error: writing {}: {e}", path.display()));
                    return ExitCode::FAILURE;
                }
                log(&format!("wrote {}", path.display()));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut chain = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                chain.push_str(&format!(": {s}"));
                source = s.source();
            }
            log(&format!("error: {chain}"));
            ExitCode::FAILURE
        }
    }
}

/// The cluster: one this process booted, or the one of `--kubeconfig`.
enum Target {
    Local(kbx_conformance::LocalCluster),
    Existing(PathBuf, kube::Client),
}

impl Target {
    fn kubeconfig(&self) -> PathBuf {
        match self {
            Target::Local(c) => c.kubeconfig(),
            Target::Existing(p, _) => p.clone(),
        }
    }

    fn client(&self) -> Result<kube::Client> {
        Ok(match self {
            Target::Local(c) => c.client()?.clone(),
            Target::Existing(_, c) => c.clone(),
        })
    }
}

async fn run(args: Args) -> Result<String> {
    let kbx = std::fs::canonicalize(&args.kbx)
        .map_err(|e| format!("kbx binary {}: {e}", args.kbx.display()))?;
    let buildx = match &args.buildx {
        Some(p) => Some(
            std::fs::canonicalize(p).map_err(|e| format!("buildx binary {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let work = match &args.work {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new()
                .prefix("kbx-bench-")
                .tempdir_in(dir)?
        }
        None => tempfile::Builder::new().prefix("kbx-bench-").tempdir()?,
    };

    let started = Instant::now();
    let load_before = load_average();
    log("writing the contexts");
    let ctx = work.path().join("context");
    let stats = write_context(&ctx, args.small_files, args.small_bytes, args.big_bytes, 1)?;
    let rss_ctx = work.path().join("context-rss");
    let rss_stats = if args.rss_bytes > 0 {
        Some(write_context(
            &rss_ctx,
            args.small_files,
            args.small_bytes,
            args.rss_bytes,
            2,
        )?)
    } else {
        None
    };

    let target = match &args.kubeconfig {
        Some(path) => {
            let client = kbx_conformance::client_from_kubeconfig(path).await?;
            Target::Existing(path.clone(), client)
        }
        None => {
            log("booting the local cluster");
            let cluster =
                kbx_conformance::LocalCluster::start(&kbx_conformance::LocalOptions::new()).await?;
            Target::Local(cluster)
        }
    };
    let outcome = bench(
        &args,
        &kbx,
        buildx.as_deref(),
        &target,
        &ctx,
        &stats,
        rss_stats.as_ref().map(|s| (rss_ctx.as_path(), s)),
        work.path(),
    )
    .await;
    if let Target::Local(cluster) = target {
        log("tearing the cluster down");
        let left = cluster.teardown();
        if !left.is_empty() {
            log(&format!("teardown left {left}"));
        }
    }
    let mut report = outcome?;
    report.push_str(&format!(
        "\nWhole benchmark: {:.0} s. Load average before: {load_before}; after: {}.\n",
        started.elapsed().as_secs_f64(),
        load_average()
    ));
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn bench(
    args: &Args,
    kbx: &Path,
    buildx: Option<&Path>,
    target: &Target,
    ctx: &Path,
    stats: &ContextStats,
    rss: Option<(&Path, &ContextStats)>,
    work: &Path,
) -> Result<String> {
    let client = target.client()?;
    let ns = kbx_conformance::scenario::TestNamespace::create(&client, "bench").await?;
    let user = User::new(work, target.kubeconfig());
    let result = async {
        log(&format!("creating builder {BUILDER} in {}", ns.name()));
        let opts = format!(
            "namespace={},replicas=1,image={},timeout=240s",
            ns.name(),
            kbx_conformance::image::BUILDER_IMAGE
        );
        user.run(
            kbx,
            &[
                "create",
                "--name",
                BUILDER,
                "--driver",
                "kubernetes",
                "--driver-opt",
                &opts,
                "--bootstrap",
            ],
            None,
        )
        .await?
        .ok("kbx create")?;
        let pod = builder_pod(&client, ns.name()).await?;
        log(&format!("builder pod {pod}"));
        if let Some(buildx) = buildx {
            let out = user
                .run(buildx, &["inspect", "--bootstrap", BUILDER], None)
                .await?
                .ok("docker-buildx inspect")?;
            log(&format!(
                "buildx sees the builder: {}",
                out.stdout
                    .lines()
                    .find(|l| l.trim_start().to_ascii_lowercase().starts_with("buildkit"))
                    .unwrap_or("(no BuildKit version)")
                    .trim()
            ));
        }

        let mut samples: BTreeMap<Mode, Vec<Sample>> = BTreeMap::new();
        let mut modes = Vec::new();
        for phase in &args.phases {
            modes.extend(
                Mode::ALL
                    .iter()
                    .copied()
                    .filter(|m| m.phase() == *phase && (buildx.is_some() || !m.is_buildx())),
            );
        }
        let watch = PodWatch::start(&client, ns.name());
        let export_dir = work.join("export");
        for run in 0..args.runs {
            // Alternate the order so that no path always runs first after a prune.
            let mut order = modes.clone();
            if run % 2 == 1 {
                order.reverse();
            }
            for mode in order {
                let buildx_bin = || buildx.expect("buildx modes only with a binary");
                match mode {
                    Mode::Kbx | Mode::Buildx => prune(&user, kbx).await?,
                    Mode::KbxExport => warm(&user, kbx, "kbx", ctx).await?,
                    Mode::BuildxExport => warm(&user, buildx_bin(), "docker-buildx", ctx).await?,
                    _ => {}
                }
                let probe = (mode.phase() != Phase::Bootstrap).then(CpuProbe::start);
                let mut sample = match mode {
                    Mode::Raw => raw_exec(&client, ns.name(), &pod, stats).await?,
                    Mode::RawWs => raw_ws_upload(&client, ns.name(), &pod, stats).await?,
                    Mode::Kbx => build(&user, kbx, "kbx", ctx).await?,
                    Mode::Buildx => build(&user, buildx_bin(), "docker-buildx", ctx).await?,
                    Mode::RawDown => raw_download(&client, ns.name(), &pod, stats.bytes).await?,
                    Mode::RawWsDown => {
                        raw_ws_download(&client, ns.name(), &pod, stats.bytes).await?
                    }
                    Mode::KbxExport => export(&user, kbx, "kbx", ctx, &export_dir, stats).await?,
                    Mode::BuildxExport => {
                        export(
                            &user,
                            buildx_bin(),
                            "docker-buildx",
                            ctx,
                            &export_dir,
                            stats,
                        )
                        .await?
                    }
                    Mode::KbxBoot => {
                        bootstrap(&user, kbx, "kbx", ns.name(), run, &watch, &client).await?
                    }
                    Mode::BuildxBoot => {
                        bootstrap(
                            &user,
                            buildx_bin(),
                            "buildx",
                            ns.name(),
                            run,
                            &watch,
                            &client,
                        )
                        .await?
                    }
                };
                sample.profile = probe.map(CpuProbe::stop);
                let rate = match mode.phase() {
                    Phase::Bootstrap => String::new(),
                    _ => format!("{:>6.1} MB/s", stats.bytes as f64 / sample.seconds / 1e6),
                };
                log(&format!(
                    "run {}/{} {:<13} {:>7.2} s  {rate}  peak RSS {}  CPU {}{}",
                    run + 1,
                    args.runs,
                    mode.name(),
                    sample.seconds,
                    sample
                        .peak_rss_kib
                        .map_or("-".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                    sample
                        .cpu_seconds
                        .map_or("-".to_owned(), |c| format!("{c:.2} s")),
                    sample.boot.map_or(String::new(), |b| format!(
                        "  after running {:+.2} s, after Ready {}",
                        b.after_running,
                        b.after_ready
                            .map_or("-".to_owned(), |r| format!("{r:+.2} s"))
                    ))
                ));
                samples.entry(mode).or_default().push(sample);
            }
        }
        drop(watch);
        let rss_sample = match rss {
            Some((rss_ctx, rss_stats)) => {
                prune(&user, kbx).await?;
                let s = build(&user, kbx, "kbx", rss_ctx).await?;
                log(&format!(
                    "kbx with {:.0} MiB: {:.2} s, {:.1} MB/s, peak RSS {}",
                    rss_stats.bytes as f64 / 1048576.0,
                    s.seconds,
                    rss_stats.bytes as f64 / s.seconds / 1e6,
                    s.peak_rss_kib
                        .map_or("-".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
                ));
                Some((rss_stats, s))
            }
            None => None,
        };
        let _ = user.run(kbx, &["rm", BUILDER], None).await;
        Ok::<_, BoxError>(report(args, stats, &samples, rss_sample))
    }
    .await;
    if let Err(e) = ns.delete().await {
        log(&format!("deleting the namespace: {e}"));
    }
    result
}

/// What a path measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Bytes to the pod.
    Upload,
    /// Bytes from the pod.
    Download,
    /// `create --bootstrap`.
    Bootstrap,
}

/// One of the measured paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Raw,
    RawWs,
    Kbx,
    Buildx,
    RawDown,
    RawWsDown,
    KbxExport,
    BuildxExport,
    KbxBoot,
    BuildxBoot,
}

impl Mode {
    const ALL: [Mode; 10] = [
        Mode::Raw,
        Mode::RawWs,
        Mode::Kbx,
        Mode::Buildx,
        Mode::RawDown,
        Mode::RawWsDown,
        Mode::KbxExport,
        Mode::BuildxExport,
        Mode::KbxBoot,
        Mode::BuildxBoot,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::RawWs => "raw-ws",
            Mode::Kbx => "kbx",
            Mode::Buildx => "buildx",
            Mode::RawDown => "raw-down",
            Mode::RawWsDown => "raw-ws-down",
            Mode::KbxExport => "kbx-export",
            Mode::BuildxExport => "buildx-export",
            Mode::KbxBoot => "kbx-boot",
            Mode::BuildxBoot => "buildx-boot",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Raw | Mode::RawDown => "raw `pods/exec` (kube-rs `AttachedProcess`, defaults)",
            Mode::RawWs | Mode::RawWsDown => "raw `pods/exec` (`kbx_kube::ExecStream`)",
            Mode::Kbx => "`kbx build` (context vertex)",
            Mode::Buildx => "Buildx 0.29.1 `build` (context vertex)",
            Mode::KbxExport => "`kbx build -o type=local` (export vertex)",
            Mode::BuildxExport => "Buildx 0.29.1 `build -o type=local` (export vertex)",
            Mode::KbxBoot => "`kbx create --bootstrap`",
            Mode::BuildxBoot => "Buildx 0.29.1 `create --bootstrap`",
        }
    }

    fn phase(self) -> Phase {
        match self {
            Mode::Raw | Mode::RawWs | Mode::Kbx | Mode::Buildx => Phase::Upload,
            Mode::RawDown | Mode::RawWsDown | Mode::KbxExport | Mode::BuildxExport => {
                Phase::Download
            }
            Mode::KbxBoot | Mode::BuildxBoot => Phase::Bootstrap,
        }
    }

    fn is_buildx(self) -> bool {
        matches!(self, Mode::Buildx | Mode::BuildxExport | Mode::BuildxBoot)
    }

    fn is_raw(self) -> bool {
        matches!(
            self,
            Mode::Raw | Mode::RawWs | Mode::RawDown | Mode::RawWsDown
        )
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    seconds: f64,
    peak_rss_kib: Option<u64>,
    /// The client's user + system CPU time for the whole command (with `/usr/bin/time`).
    cpu_seconds: Option<f64>,
    /// For a bootstrap: when the command ended, relative to its pod.
    boot: Option<BootSample>,
    /// CPU seconds each part of the machine spent while the path ran ([`CPU_GROUPS`]).
    profile: Option<[f64; CPU_GROUPS.len()]>,
}

/// When `create --bootstrap` ended, in seconds after its pod's container was first seen
/// running and after the pod was first seen Ready (negative: before).
#[derive(Debug, Clone, Copy)]
struct BootSample {
    after_running: f64,
    after_ready: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// The context

#[derive(Debug, Clone)]
struct ContextStats {
    /// Regular files, the Dockerfile included.
    files: usize,
    /// Their bytes.
    bytes: u64,
    /// Every file, in the order the raw path sends them.
    paths: Vec<PathBuf>,
}

/// Writes `Dockerfile` (`FROM scratch` + `COPY . /ctx/`, so that BuildKit needs every byte),
/// `small/fNNNN` and `big.bin`, all of pseudo-random (incompressible) bytes.
fn write_context(
    dir: &Path,
    small_files: usize,
    small_bytes: usize,
    big_bytes: u64,
    seed: u64,
) -> Result<ContextStats> {
    let mut rng = SplitMix64(seed);
    std::fs::create_dir_all(dir.join("small"))?;
    let mut paths = vec![dir.join("Dockerfile")];
    std::fs::write(&paths[0], "FROM scratch\nCOPY . /ctx/\n")?;
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..small_files {
        let path = dir.join(format!("small/f{i:05}"));
        rng.fill(&mut buf[..small_bytes]);
        std::fs::write(&path, &buf[..small_bytes])?;
        paths.push(path);
    }
    let big = dir.join("big.bin");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&big)?);
    let mut left = big_bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    paths.push(big);
    let mut bytes = 0;
    for p in &paths {
        bytes += std::fs::metadata(p)?.len();
    }
    Ok(ContextStats {
        files: paths.len(),
        bytes,
        paths,
    })
}

/// A small, fast generator of incompressible bytes (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The paths

/// The name of the one Running builder pod in `ns`.
async fn builder_pod(client: &kube::Client, ns: &str) -> Result<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    let running: Vec<String> = pods
        .items
        .into_iter()
        .filter(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.metadata.deletion_timestamp.is_none()
        })
        .filter_map(|p| p.metadata.name)
        .collect();
    match running.as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("expected one running builder pod in {ns}, found {other:?}").into()),
    }
}

/// Sends every file of the context through `pods/exec` (kube-rs's `AttachedProcess`) into
/// `head -c N | wc -c >&2` and times it from the exec request to the command's exit status.
async fn raw_exec(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    stats: &ContextStats,
) -> Result<Sample> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let params = AttachParams::default()
        .container("buildkitd")
        .stdin(true)
        .stdout(false)
        .stderr(true);
    // `wc` proves every byte arrived (and prints to stderr, which is read anyway).
    let script = format!("head -c {} | wc -c >&2", stats.bytes);
    let run = async {
        let started = Instant::now();
        let mut process = api
            .exec(pod, ["sh", "-c", script.as_str()], &params)
            .await?;
        let status = process.take_status().ok_or("exec without a status")?;
        let mut stdin = process.stdin().ok_or("exec without stdin")?;
        let mut stderr = process.stderr().ok_or("exec without stderr")?;
        let drain = tokio::spawn(async move {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s).await;
            s
        });
        let paths = stats.paths.clone();
        let mut writer = tokio::spawn(async move {
            let mut buf = vec![0u8; 256 << 10];
            for path in &paths {
                let mut file = tokio::fs::File::open(path).await?;
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    stdin.write_all(&buf[..n]).await?;
                }
            }
            stdin.flush().await?;
            Ok::<_, std::io::Error>(stdin)
        });
        // The command exits after N bytes; if it exits early (or fails), the writer would wait
        // on a full pipe forever, so the status is awaited alongside it.
        tokio::pin!(status);
        let mut written = None;
        let status = loop {
            tokio::select! {
                s = &mut status => break s,
                w = &mut writer, if written.is_none() => written = Some(w),
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        debug(&format!(
            "raw exec: status after {seconds:.3} s, writer finished: {}",
            written.is_some()
        ));
        writer.abort();
        drop(written);
        let _ = process.join().await;
        let stderr = drain.await.unwrap_or_default();
        match status {
            Some(s)
                if s.status.as_deref() == Some("Success")
                    && stderr.trim() == stats.bytes.to_string() =>
            {
                Ok(Sample {
                    seconds,
                    ..Sample::default()
                })
            }
            other => Err(format!(
                "raw exec into {ns}/{pod} failed or lost bytes (sent {}, `wc -c` printed {stderr:?}): {other:?}",
                stats.bytes
            )
            .into()),
        }
    };
    tokio::time::timeout(STEP_LIMIT, run)
        .await
        .map_err(|_| format!("raw exec took longer than {STEP_LIMIT:?}"))?
}

/// A callback for an exec stream's stderr lines.
type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A stderr callback that keeps the lines.
fn collect_lines() -> (LineSink, Arc<Mutex<String>>) {
    let lines = Arc::new(Mutex::new(String::new()));
    let sink = lines.clone();
    (
        Arc::new(move |line: &str| {
            if let Ok(mut l) = sink.lock() {
                l.push_str(line);
                l.push('\n');
            }
        }),
        lines,
    )
}

/// The same bytes as [`raw_exec`] through `kbx_kube::ExecStream`, kbx's own exec WebSocket:
/// from the exec request to the end of the session.
async fn raw_ws_upload(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    stats: &ContextStats,
) -> Result<Sample> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let script = format!("head -c {} | wc -c >&2", stats.bytes);
    let (stderr, lines) = collect_lines();
    let run = async {
        let started = Instant::now();
        let stream =
            kbx_kube::ExecStream::spawn(&api, pod, "buildkitd", &["sh", "-c", &script], stderr)
                .await?;
        let (mut out, mut stdin) = tokio::io::split(stream);
        let paths = stats.paths.clone();
        let writer = tokio::spawn(async move {
            let mut buf = vec![0u8; 256 << 10];
            for path in &paths {
                let mut file = tokio::fs::File::open(path).await?;
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    stdin.write_all(&buf[..n]).await?;
                }
            }
            stdin.flush().await?;
            Ok::<_, std::io::Error>(stdin)
        });
        // The session ends when the command exits, after N bytes.
        let mut rest = Vec::new();
        out.read_to_end(&mut rest).await?;
        let seconds = started.elapsed().as_secs_f64();
        writer.abort();
        let printed = lines
            .lock()
            .map(|l| l.trim().to_owned())
            .unwrap_or_default();
        if printed != stats.bytes.to_string() {
            return Err(format!(
                "raw-ws exec into {ns}/{pod} lost bytes (sent {}, `wc -c` printed {printed:?})",
                stats.bytes
            )
            .into());
        }
        Ok(Sample {
            seconds,
            ..Sample::default()
        })
    };
    tokio::time::timeout(STEP_LIMIT, run)
        .await
        .map_err(|_| format!("raw-ws exec took longer than {STEP_LIMIT:?}"))?
}

/// `head -c N /dev/zero` in the pod, read to the end through kube-rs's `AttachedProcess`.
async fn raw_download(client: &kube::Client, ns: &str, pod: &str, bytes: u64) -> Result<Sample> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let params = AttachParams::default()
        .container("buildkitd")
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let script = format!("head -c {bytes} /dev/zero");
    let run = async {
        let started = Instant::now();
        let mut process = api
            .exec(pod, ["sh", "-c", script.as_str()], &params)
            .await?;
        let mut stdout = process.stdout().ok_or("exec without stdout")?;
        let received = count_to_end(&mut stdout).await?;
        let seconds = started.elapsed().as_secs_f64();
        let _ = process.join().await;
        if received != bytes {
            return Err(
                format!("raw download from {ns}/{pod}: {received} of {bytes} bytes").into(),
            );
        }
        Ok(Sample {
            seconds,
            ..Sample::default()
        })
    };
    tokio::time::timeout(STEP_LIMIT, run)
        .await
        .map_err(|_| format!("raw download took longer than {STEP_LIMIT:?}"))?
}

/// [`raw_download`] through `kbx_kube::ExecStream`.
async fn raw_ws_download(client: &kube::Client, ns: &str, pod: &str, bytes: u64) -> Result<Sample> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let script = format!("head -c {bytes} /dev/zero");
    let (stderr, _) = collect_lines();
    let run = async {
        let started = Instant::now();
        let mut stream =
            kbx_kube::ExecStream::spawn(&api, pod, "buildkitd", &["sh", "-c", &script], stderr)
                .await?;
        let received = count_to_end(&mut stream).await?;
        let seconds = started.elapsed().as_secs_f64();
        if received != bytes {
            return Err(
                format!("raw-ws download from {ns}/{pod}: {received} of {bytes} bytes").into(),
            );
        }
        Ok(Sample {
            seconds,
            ..Sample::default()
        })
    };
    tokio::time::timeout(STEP_LIMIT, run)
        .await
        .map_err(|_| format!("raw-ws download took longer than {STEP_LIMIT:?}"))?
}

async fn count_to_end(reader: &mut (impl tokio::io::AsyncRead + Unpin)) -> Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// A cached build of `ctx` (after [`warm`]) exported with `-o type=local`, timed by the export
/// vertex; the exported tree must hold every byte of the context.
async fn export(
    user: &User,
    bin: &Path,
    what: &str,
    ctx: &Path,
    dest: &Path,
    stats: &ContextStats,
) -> Result<Sample> {
    let ctx_str = ctx.to_str().ok_or("context path is not UTF-8")?;
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    let output = format!("type=local,dest={}", dest.display());
    let out = user
        .run(
            bin,
            &[
                "build",
                "--builder",
                BUILDER,
                "--progress",
                "rawjson",
                "-o",
                &output,
                ctx_str,
            ],
            Some(what),
        )
        .await?
        .ok(&format!("{what} export"))?;
    let seconds = vertex_seconds(&out.stderr, |name| name.starts_with(EXPORT_VERTEX))
        .ok_or_else(|| format!("{what} build printed no completed {EXPORT_VERTEX:?} vertex"))?;
    let exported = tree_bytes(&dest.join("ctx"))?;
    if exported != stats.bytes {
        return Err(format!("{what} exported {exported} of {} bytes", stats.bytes).into());
    }
    std::fs::remove_dir_all(dest)?;
    Ok(Sample {
        seconds,
        peak_rss_kib: out.peak_rss_kib,
        cpu_seconds: out.cpu_seconds,
        ..Sample::default()
    })
}

/// A build without output, so that the export that follows finds the result and `bin`'s
/// context cache warm.
async fn warm(user: &User, bin: &Path, what: &str, ctx: &Path) -> Result<()> {
    let ctx_str = ctx.to_str().ok_or("context path is not UTF-8")?;
    user.run(
        bin,
        &[
            "build",
            "--builder",
            BUILDER,
            "--progress",
            "rawjson",
            ctx_str,
        ],
        None,
    )
    .await?
    .ok(&format!("{what} build"))?;
    Ok(())
}

/// The bytes of the regular files under `dir`.
fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// `create --bootstrap` of a new one-replica builder, wall time; then the same tool removes
/// it and the benchmark waits until its pod is gone.
async fn bootstrap(
    user: &User,
    bin: &Path,
    what: &str,
    ns: &str,
    run: usize,
    watch: &PodWatch,
    client: &kube::Client,
) -> Result<Sample> {
    let name = format!("boot{what}{run}");
    let node = format!("{name}0");
    let opts = format!(
        "namespace={ns},replicas=1,image={},timeout=240s",
        kbx_conformance::image::BUILDER_IMAGE
    );
    let out = user
        .run(
            bin,
            &[
                "create",
                "--name",
                &name,
                "--driver",
                "kubernetes",
                "--driver-opt",
                &opts,
                "--bootstrap",
            ],
            Some(what),
        )
        .await?
        .ok(&format!("{what} create --bootstrap"))?;
    let ended = out.ended;
    // The watch may report the pod a moment after the command ended.
    let mut seen = None;
    for _ in 0..50 {
        seen = watch.first_seen(&format!("{node}-"));
        if seen.is_some_and(|s| s.running.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen
        .and_then(|s| Some((s.running?, s.ready)))
        .ok_or_else(|| format!("{what}: no running pod of {node} was seen"))?;
    let since = |t: Instant| {
        if ended >= t {
            ended.duration_since(t).as_secs_f64()
        } else {
            -t.duration_since(ended).as_secs_f64()
        }
    };
    let boot = BootSample {
        after_running: since(seen.0),
        after_ready: seen.1.map(since),
    };
    user.run(bin, &["rm", &name], None)
        .await?
        .ok(&format!("{what} rm"))?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let gone = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let list = pods.list(&ListParams::default()).await?;
            if !list.items.iter().any(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&format!("{node}-")))
            }) {
                return Ok::<_, kube::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    match gone {
        Ok(r) => r?,
        Err(_) => {
            return Err(format!("{what}: the pods of {node} are still there after rm").into());
        }
    }
    Ok(Sample {
        seconds: out.elapsed,
        peak_rss_kib: out.peak_rss_kib,
        cpu_seconds: out.cpu_seconds,
        boot: Some(boot),
        ..Sample::default()
    })
}

/// When a pod was first seen with its containers running and first seen Ready.
#[derive(Debug, Clone, Copy, Default)]
struct PodSeen {
    running: Option<Instant>,
    ready: Option<Instant>,
}

/// A watch on the pods of the benchmark's namespace, noting when each was first seen running
/// and Ready.
struct PodWatch {
    seen: Arc<Mutex<BTreeMap<String, PodSeen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    fn start(client: &kube::Client, ns: &str) -> PodWatch {
        use futures::StreamExt as _;
        let api = Api::<Pod>::namespaced(client.clone(), ns);
        let seen: Arc<Mutex<BTreeMap<String, PodSeen>>> = Arc::default();
        let table = seen.clone();
        let task = tokio::spawn(async move {
            let events = kube::runtime::watcher(api, kube::runtime::watcher::Config::default());
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let pods = match event {
                    Ok(kube::runtime::watcher::Event::Apply(p))
                    | Ok(kube::runtime::watcher::Event::InitApply(p)) => vec![p],
                    _ => continue,
                };
                let Ok(mut table) = table.lock() else { return };
                for pod in pods {
                    let Some(name) = pod.metadata.name.clone() else {
                        continue;
                    };
                    let status = pod.status.as_ref();
                    let running = status
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|cs| {
                            !cs.is_empty()
                                && cs.iter().all(|c| {
                                    c.state.as_ref().and_then(|s| s.running.as_ref()).is_some()
                                })
                        });
                    let ready = status
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    let entry = table.entry(name).or_default();
                    if running && entry.running.is_none() {
                        entry.running = Some(now);
                    }
                    if ready && entry.ready.is_none() {
                        entry.ready = Some(now);
                    }
                }
            }
        });
        PodWatch { seen, task }
    }

    /// The first pod whose name starts with `prefix`.
    fn first_seen(&self, prefix: &str) -> Option<PodSeen> {
        let table = self.seen.lock().ok()?;
        table
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .map(|(_, s)| *s)
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `kbx prune --all --force` on the benchmark's builder: every run starts cold.
async fn prune(user: &User, kbx: &Path) -> Result<()> {
    user.run(
        kbx,
        &["prune", "--all", "--force", "--builder", BUILDER],
        None,
    )
    .await?
    .ok("kbx prune")?;
    Ok(())
}

/// `BIN build --builder B --progress rawjson CTX`, timed by the context vertex.
async fn build(user: &User, bin: &Path, what: &str, ctx: &Path) -> Result<Sample> {
    let ctx = ctx.to_str().ok_or("context path is not UTF-8")?;
    let out = user
        .run(
            bin,
            &["build", "--builder", BUILDER, "--progress", "rawjson", ctx],
            Some(what),
        )
        .await?
        .ok(&format!("{what} build"))?;
    let seconds = vertex_seconds(&out.stderr, |name| name == CONTEXT_VERTEX)
        .ok_or_else(|| format!("{what} build printed no completed {CONTEXT_VERTEX:?} vertex"))?;
    Ok(Sample {
        seconds,
        peak_rss_kib: out.peak_rss_kib,
        cpu_seconds: out.cpu_seconds,
        ..Sample::default()
    })
}

/// From `--progress rawjson` lines: the first `started` to the last `completed` of the
/// vertexes whose name `matches`, in seconds.
fn vertex_seconds(rawjson: &str, matches: impl Fn(&str) -> bool) -> Option<f64> {
    let mut first: Option<f64> = None;
    let mut last: Option<f64> = None;
    for line in rawjson.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(vertexes) = value.get("vertexes").and_then(|v| v.as_array()) else {
            continue;
        };
        for v in vertexes {
            if !v.get("name").and_then(|n| n.as_str()).is_some_and(&matches) {
                continue;
            }
            if let Some(t) = v.get("started").and_then(|s| s.as_str()).and_then(rfc3339) {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
            if let Some(t) = v
                .get("completed")
                .and_then(|s| s.as_str())
                .and_then(rfc3339)
            {
                last = Some(last.map_or(t, |l| l.max(t)));
            }
        }
    }
    Some(last? - first?).filter(|s| *s > 0.0)
}

/// Seconds since the Unix epoch of an RFC 3339 time (`2026-12-04T21:11:07.184008954Z` or with
/// a `±HH:MM` offset), as Go's `time.RFC3339Nano` prints it.
fn rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut fraction = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        fraction = format!("0.{}", &r[..digits]).parse::<f64>().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(secs as f64 + fraction)
}

// ---------------------------------------------------------------------------------------------
// Running kbx and Buildx

/// Private directories and the environment both CLIs run with.
struct User {
    home: PathBuf,
    kubeconfig: PathBuf,
    time: Option<PathBuf>,
}

struct Run {
    status: std::process::ExitStatus,
    /// Wall time from spawning the command to its exit.
    elapsed: f64,
    /// When the command was seen to exit.
    ended: Instant,
    stdout: String,
    stderr: String,
    peak_rss_kib: Option<u64>,
    cpu_seconds: Option<f64>,
}

impl Run {
    fn ok(self, what: &str) -> Result<Run> {
        if self.status.success() {
            Ok(self)
        } else {
            let tail: Vec<&str> = self.stderr.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(format!("{what} failed ({}):\n{}", self.status, tail.join("\n")).into())
        }
    }
}

impl User {
    fn new(work: &Path, kubeconfig: PathBuf) -> User {
        let time = Path::new("/usr/bin/time");
        User {
            home: work.join("home"),
            kubeconfig,
            time: time.exists().then(|| time.to_path_buf()),
        }
    }

    /// Runs `bin args…` with the private environment; with `measure`, under `/usr/bin/time -v`
    /// for the peak RSS (or polling `VmHWM` without it). Buildx runs with every proxy variable
    /// pointing at a closed port ([`no_egress_env`]; Go skips the proxy for the loopback API
    /// server by itself); kbx runs without: it would send its API requests to that proxy, and it
    /// speaks to nothing but the API server of the kubeconfig.
    async fn run(&self, bin: &Path, args: &[&str], measure: Option<&str>) -> Result<Run> {
        let proxied = bin
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("buildx"));
        for dir in ["docker", "buildx", "tmp"] {
            std::fs::create_dir_all(self.home.join(dir))?;
        }
        let time_file = self.home.join("tmp/time-v.txt");
        let mut command = match (&self.time, measure) {
            (Some(time), Some(_)) => {
                let mut c = tokio::process::Command::new(time);
                c.arg("-v").arg("-o").arg(&time_file).arg(bin);
                c
            }
            _ => tokio::process::Command::new(bin),
        };
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("TMPDIR", self.home.join("tmp"))
            .env("DOCKER_CONFIG", self.home.join("docker"))
            .env("BUILDX_CONFIG", self.home.join("buildx"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("TZ", "UTC")
            .env("NO_COLOR", "1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if proxied {
            command.envs(no_egress_env());
        }
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        let pid = child.id();
        let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let read_out = tokio::spawn(async move {
            let mut b = Vec::new();
            let _ = stdout.read_to_end(&mut b).await;
            b
        });
        let read_err = tokio::spawn(async move {
            let mut b = Vec::new();
            let _ = stderr.read_to_end(&mut b).await;
            b
        });
        // Without /usr/bin/time: the last VmHWM seen before the process exits.
        let poll_hwm = measure.is_some() && self.time.is_none();
        let mut hwm: Option<u64> = None;
        let waited = tokio::time::timeout(STEP_LIMIT, async {
            loop {
                if poll_hwm && let Some(k) = pid.and_then(vm_hwm_kib) {
                    hwm = Some(hwm.map_or(k, |h| h.max(k)));
                }
                tokio::select! {
                    status = child.wait() => break status,
                    () = tokio::time::sleep(Duration::from_millis(50)), if poll_hwm => {}
                }
            }
        })
        .await;
        let ended = Instant::now();
        let status = match waited {
            Ok(s) => s?,
            Err(_) => {
                let _ = child.kill().await;
                return Err(
                    format!("{} {args:?} took longer than {STEP_LIMIT:?}", bin.display()).into(),
                );
            }
        };
        let stdout = String::from_utf8_lossy(&read_out.await.unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&read_err.await.unwrap_or_default()).into_owned();
        let time_v = match (&self.time, measure) {
            (Some(_), Some(_)) => std::fs::read_to_string(&time_file).ok(),
            _ => None,
        };
        let peak_rss_kib = match &time_v {
            Some(t) => field_kib(t, "Maximum resident set size (kbytes):"),
            None => hwm,
        };
        let cpu_seconds = time_v.as_deref().and_then(|t| {
            let field = |label: &str| {
                t.lines()
                    .find_map(|l| l.trim().strip_prefix(label))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            };
            Some(field("User time (seconds):")? + field("System time (seconds):")?)
        });
        Ok(Run {
            status,
            elapsed: ended.duration_since(spawned).as_secs_f64(),
            ended,
            stdout,
            stderr,
            peak_rss_kib,
            cpu_seconds,
        })
    }
}

/// `/proc/loadavg`'s 1-, 5- and 15-minute figures: how busy the shared machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kib(&status, "VmHWM:")
}

/// The number after `label` on its line (`VmHWM:  1234 kB`, `Maximum resident … (kbytes): 1234`).
fn field_kib(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// The report

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn report(
    args: &Args,
    stats: &ContextStats,
    samples: &BTreeMap<Mode, Vec<Sample>>,
    rss: Option<(&ContextStats, Sample)>,
) -> String {
    let mb = stats.bytes as f64 / 1e6;
    let med = |mode: Mode| -> Option<f64> {
        let mut secs: Vec<f64> = samples.get(&mode)?.iter().map(|s| s.seconds).collect();
        (!secs.is_empty()).then(|| median(&mut secs))
    };
    let mut out = String::new();
    out.push_str(&format!(
        "Context: {} files ({} × {} B + one {:.0} MB file + Dockerfile), {:.1} MB; {} rounds, each path once per round, alternating; medians (min–max).\n",
        stats.files,
        args.small_files,
        args.small_bytes,
        args.big_bytes as f64 / 1e6,
        mb,
        args.runs
    ));
    for phase in &args.phases {
        let (title, raw, ws, kbx, buildx) = match phase {
            Phase::Upload => ("Upload", Mode::Raw, Mode::RawWs, Mode::Kbx, Mode::Buildx),
            Phase::Download => (
                "Download",
                Mode::RawDown,
                Mode::RawWsDown,
                Mode::KbxExport,
                Mode::BuildxExport,
            ),
            Phase::Bootstrap => continue,
        };
        out.push_str(&format!(
            "\n{title}:\n\n| Path | Time | Throughput | Files/s | Peak RSS | Client CPU | Ratio |\n|---|---|---|---|---|---|---|\n"
        ));
        for mode in [raw, ws, kbx, buildx] {
            let Some(list) = samples.get(&mode).filter(|l| !l.is_empty()) else {
                continue;
            };
            let mut secs: Vec<f64> = list.iter().map(|s| s.seconds).collect();
            let m = median(&mut secs);
            let (lo, hi) = (secs[0], secs[secs.len() - 1]);
            let rss: Vec<u64> = list.iter().filter_map(|s| s.peak_rss_kib).collect();
            let rss = rss.iter().max().map_or("—".to_owned(), |k| {
                format!("{:.1} MiB", *k as f64 / 1024.0)
            });
            let mut cpu: Vec<f64> = list.iter().filter_map(|s| s.cpu_seconds).collect();
            let cpu = if cpu.is_empty() {
                "—".to_owned()
            } else {
                format!("{:.2} s", median(&mut cpu))
            };
            let files = if mode.is_raw() {
                "—".to_owned()
            } else {
                format!("{:.0}", stats.files as f64 / m)
            };
            let mut ratios = Vec::new();
            if mode == raw {
                ratios.push("baseline".to_owned());
            } else {
                for (base, name) in [(raw, "raw"), (ws, "raw-ws"), (buildx, "Buildx")] {
                    if base != mode
                        && (mode == kbx || base != buildx)
                        && let Some(b) = med(base)
                    {
                        ratios.push(format!("{:.2} × {name}", b / m));
                    }
                }
            }
            out.push_str(&format!(
                "| {} | {m:.2} s ({lo:.2}–{hi:.2}) | {:.1} MB/s ({:.1}–{:.1}) | {files} | {rss} | {cpu} | {} |\n",
                mode.label(),
                mb / m,
                mb / hi,
                mb / lo,
                ratios.join("; ")
            ));
        }
    }
    out.push_str(
        "\nTime and throughput: the context (upload) or export (download) vertex on BuildKit's \
         clock for the builds, exec request to the end of the session for raw. Ratio `a × b`: \
         b's time over a's (above 1: faster than b). Client CPU: user + system time of the whole \
         command (median).\n",
    );
    out.push_str(&profile_table(samples));
    if args.phases.contains(&Phase::Bootstrap) {
        out.push_str(&boot_table(samples));
    }
    if let Some((s, sample)) = rss {
        out.push_str(&format!(
            "\nPeak RSS of `kbx build` with {} files, {:.0} MiB: {} ({:.2} s, {:.1} MB/s).\n",
            s.files,
            s.bytes as f64 / 1048576.0,
            sample
                .peak_rss_kib
                .map_or("not measured".to_owned(), |k| format!(
                    "{:.1} MiB",
                    k as f64 / 1024.0
                )),
            sample.seconds,
            s.bytes as f64 / 1e6 / sample.seconds
        ));
    }
    out
}

/// The bootstrap table: wall time, and how long each command ran on after its pod's
/// container was seen running and after the pod was seen Ready.
fn boot_table(samples: &BTreeMap<Mode, Vec<Sample>>) -> String {
    let mut out = String::from(
        "\nBootstrap (one replica):\n\n| Command | Time | After container running | After pod Ready | Peak RSS | Ratio |\n|---|---|---|---|---|---|\n",
    );
    let secs = |mode: Mode| -> Option<Vec<f64>> {
        let mut v: Vec<f64> = samples.get(&mode)?.iter().map(|s| s.seconds).collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then_some(v)
    };
    let buildx = secs(Mode::BuildxBoot).map(|mut v| median(&mut v));
    for mode in [Mode::KbxBoot, Mode::BuildxBoot] {
        let (Some(mut v), Some(list)) = (secs(mode), samples.get(&mode)) else {
            continue;
        };
        let (lo, hi) = (v[0], v[v.len() - 1]);
        let m = median(&mut v);
        let spread = |values: Vec<f64>| -> String {
            if values.is_empty() {
                return "—".to_owned();
            }
            let mut values = values;
            values.sort_by(f64::total_cmp);
            let (lo, hi) = (values[0], values[values.len() - 1]);
            format!("{:+.2} s ({lo:+.2}–{hi:+.2})", median(&mut values))
        };
        let running = spread(
            list.iter()
                .filter_map(|s| Some(s.boot?.after_running))
                .collect(),
        );
        let ready = spread(list.iter().filter_map(|s| s.boot?.after_ready).collect());
        let rss = list
            .iter()
            .filter_map(|s| s.peak_rss_kib)
            .max()
            .map_or("—".to_owned(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            });
        let ratio = match (mode, buildx) {
            (Mode::KbxBoot, Some(b)) => format!("{:.2} × Buildx's time", m / b),
            (Mode::BuildxBoot, _) => "baseline".to_owned(),
            _ => "—".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {m:.2} s ({lo:.2}–{hi:.2}) | {running} | {ready} | {rss} | {ratio} |\n",
            mode.label()
        ));
    }
    out.push_str(
        "\nAfter container running / after pod Ready: when the command ended, relative to the \
         moment a watch on the namespace first saw the pod's container running and the pod \
         Ready (negative: before).\n",
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Where the CPU goes

/// The parts of the machine a path's CPU time is split into, by process name (`comm`).
const CPU_GROUPS: [&str; 8] = [
    "client",
    "kube-apiserver",
    "kubelet",
    "containerd",
    "buildkitd",
    "buildctl",
    "etcd",
    "other",
];

/// The [`CPU_GROUPS`] index of a process name (`comm`, at most 15 bytes).
fn cpu_group(comm: &str) -> usize {
    match comm {
        "kbx" | "docker-buildx" | "kbx-bench-clust" => 0,
        "kube-apiserver" => 1,
        "kubelet" => 2,
        c if c.starts_with("containerd") || c == "runc" => 3,
        "buildkitd" => 4,
        "buildctl" => 5,
        "etcd" => 6,
        _ => 7,
    }
}

/// Polls every process's CPU time (`/proc/PID/stat`, user + system) every 50 ms while a path
/// runs, so that processes that start and end within it (the client, `buildctl dial-stdio`)
/// count too, to within one interval.
struct CpuProbe {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<[f64; CPU_GROUPS.len()]>,
}

impl CpuProbe {
    fn start() -> CpuProbe {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // pid → (group, ticks at first sight or 0 if it started later, last ticks)
            let mut seen: BTreeMap<u32, (usize, u64, u64)> = BTreeMap::new();
            let mut first = true;
            loop {
                for (pid, comm, ticks) in proc_cpu_ticks() {
                    let entry = seen.entry(pid).or_insert((
                        cpu_group(&comm),
                        if first { ticks } else { 0 },
                        ticks,
                    ));
                    entry.2 = ticks;
                }
                first = false;
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let hz = clock_ticks_per_second();
            let mut groups = [0.0; CPU_GROUPS.len()];
            for (group, start, last) in seen.into_values() {
                groups[group] += last.saturating_sub(start) as f64 / hz;
            }
            groups
        });
        CpuProbe { stop, thread }
    }

    fn stop(self) -> [f64; CPU_GROUPS.len()] {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or([0.0; CPU_GROUPS.len()])
    }
}

/// Every process's pid, name and user + system CPU ticks.
fn proc_cpu_ticks() -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let (comm, ticks) = parse_stat(&stat)?;
        Some((pid, comm, ticks))
    })
    .collect()
}

/// The name and user + system ticks of one `/proc/PID/stat` line (the name may hold spaces
/// and parentheses: it runs to the last `)`).
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // After the name: state (field 3) … utime (14), stime (15).
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// `getconf CLK_TCK`, 100 on every Linux this runs on.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Median CPU seconds per part of the machine, per path.
fn profile_table(samples: &BTreeMap<Mode, Vec<Sample>>) -> String {
    let rows: Vec<(Mode, [f64; CPU_GROUPS.len()])> = samples
        .iter()
        .filter_map(|(mode, list)| {
            let profiles: Vec<_> = list.iter().filter_map(|s| s.profile).collect();
            if profiles.is_empty() {
                return None;
            }
            let mut medians = [0.0; CPU_GROUPS.len()];
            for (g, m) in medians.iter_mut().enumerate() {
                let mut v: Vec<f64> = profiles.iter().map(|p| p[g]).collect();
                *m = median(&mut v);
            }
            Some((*mode, medians))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nWhere the CPU goes (CPU seconds on the whole machine while the path ran, median; \
         client: kbx, `docker-buildx` or, for raw, the benchmark process):\n\n| Path |",
    );
    for g in CPU_GROUPS {
        out.push_str(&format!(" {g} |"));
    }
    out.push_str(" total |\n|---|");
    for _ in 0..=CPU_GROUPS.len() {
        out.push_str("---|");
    }
    out.push('\n');
    for (mode, m) in rows {
        out.push_str(&format!("| {} |", mode.name()));
        for v in m {
            out.push_str(&format!(" {v:.2} |"));
        }
        out.push_str(&format!(" {:.2} |\n", m.iter().sum::<f64>()));
    }
    out
}

const BEGIN: &str = "<!-- bench-cluster:begin -->";
const END: &str = "<!-- bench-cluster:end -->";

/// Replaces the text between [`BEGIN`] and [`END`] in `path` with `report`, under a line naming
/// the date, the machine and the commit.
fn write_report(path: &Path, report: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let section = format!("{}\n\n{report}", provenance());
    let updated = splice(&text, &section).ok_or_else(|| {
        format!(
            "{} has no `{BEGIN}` … `{END}` section to replace",
            path.display()
        )
    })?;
    std::fs::write(path, updated)?;
    Ok(())
}

/// `text` with what stands between the marker lines replaced by `section`.
fn splice(text: &str, section: &str) -> Option<String> {
    let begin = text.find(BEGIN)? + BEGIN.len();
    let end = begin + text[begin..].find(END)?;
    Some(format!(
        "{}\n{}\n{}",
        &text[..begin],
        section.trim_end(),
        &text[end..]
    ))
}

/// `Measured 2026-12-05 on …: N CPUs (model), M GiB, kernel K; kbx at COMMIT.`
fn provenance() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let (y, m, d) = civil_from_days(days);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| field_kib(&m, "MemTotal:"))
        .map_or("?".to_owned(), |k| format!("{:.0}", k as f64 / 1048576.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "an unknown commit".to_owned());
    format!(
        "Measured {y:04}-{m:02}-{d:02} by `just bench-cluster`: {cpus} × {model}, {mem_gib} GiB, kernel {kernel}, the cluster on the same machine; kbx at {commit} (release build)."
    )
}

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_go_times() {
        let a = rfc3339("2026-12-04T21:11:07.184008954Z").unwrap();
        let b = rfc3339("2026-12-04T21:11:26.027442511Z").unwrap();
        assert!((b - a - 18.843433557).abs() < 1e-6);
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(rfc3339("1970-01-01T01:00:00+01:00"), Some(0.0));
        assert_eq!(rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(rfc3339("nonsense"), None);
    }

    #[test]
    fn vertex_seconds_spans_the_vertex() {
        let lines = r#"{"vertexes":[{"digest":"a","name":"[internal] load build context","started":"2026-12-04T21:11:07.182467885Z","completed":"2026-12-04T21:11:07.182492752Z"}]}
{"vertexes":[{"digest":"b","name":"[1/1] COPY . /ctx/","started":"2026-12-04T21:11:26.030001788Z"}]}
{"vertexes":[{"digest":"a","name":"[internal] load build context","started":"2026-12-04T21:11:07.184008954Z"}]}
{"vertexes":[{"digest":"a","name":"[internal] load build context","started":"2026-12-04T21:11:07.184008954Z","completed":"2026-12-04T21:11:26.027442511Z"}]}"#;
        let s = vertex_seconds(lines, |n| n == CONTEXT_VERTEX).unwrap();
        assert!((s - 18.844974626).abs() < 1e-6, "{s}");
        assert_eq!(vertex_seconds("{}", |n| n == CONTEXT_VERTEX), None);
        let copy = vertex_seconds(lines, |n| n.starts_with("[1/1]"));
        assert_eq!(copy, None, "a vertex that never completed has no duration");
    }

    #[test]
    fn civil_dates_round_trip_through_rfc3339() {
        for days in [0, 10_957, 11_016, 20_792, -1] {
            let (y, m, d) = civil_from_days(days);
            let t = rfc3339(&format!("{y:04}-{m:02}-{d:02}T00:00:00Z")).unwrap();
            assert_eq!(t, (days * 86_400) as f64, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn the_report_replaces_only_its_section() {
        let doc = format!("# Title\n\nprose\n\n{BEGIN}\nold table\n{END}\n\nmore prose\n");
        let out = splice(&doc, "new table\n").unwrap();
        assert_eq!(
            out,
            format!("# Title\n\nprose\n\n{BEGIN}\nnew table\n{END}\n\nmore prose\n")
        );
        assert_eq!(splice(&out, "again").unwrap().matches(BEGIN).count(), 1);
        assert_eq!(splice("no markers", "x"), None);
    }

    #[test]
    fn parse_stat_reads_names_with_spaces_and_parentheses() {
        let stat =
            "4242 (containerd-shim (x)) S 1 4242 4242 0 -1 4194560 1 0 0 0 150 25 0 0 20 0 12 0";
        assert_eq!(
            parse_stat(stat),
            Some(("containerd-shim (x)".to_owned(), 175))
        );
        assert_eq!(cpu_group("containerd-shim (x)"), 3);
        assert_eq!(parse_stat("7 (sh) S"), None);
    }

    #[test]
    fn field_kib_reads_time_and_status() {
        assert_eq!(
            field_kib(
                "\tMaximum resident set size (kbytes): 26880\n",
                "Maximum resident set size (kbytes):"
            ),
            Some(26880)
        );
        assert_eq!(
            field_kib("VmPeak:\t 1 kB\nVmHWM:\t  2048 kB\n", "VmHWM:"),
            Some(2048)
        );
    }
}
