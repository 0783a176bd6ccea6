//! `kbx-bench-upload`: how fast a build context reaches a BuildKit pod on a real cluster.
//!
//! On the local conformance cluster (booted here, root) or the cluster of `--kubeconfig`, with
//! one builder pod of `moby/buildkit:buildx-stable-1`, it sends the same context (by default
//! 2,000 files of 2 KiB and one 200 MB file of random data) through three paths, alternating,
//! `--runs` times each, BuildKit's state pruned before every build:
//!
//! - `raw`: the context's bytes through `pods/exec` into `head -c N > /dev/null` in the pod, with
//!   kube-rs as `kbx_conformance::scenario::exec_stream` uses it (default `AttachParams`, whose
//!   stdin pipe holds 1,024 bytes), and again with a 64 KiB stdin pipe (`raw-64k`);
//! - `kbx`: `kbx build --progress rawjson`, timed by the `[internal] load build context` vertex
//!   (first `started` to last `completed`, BuildKit's own clock);
//! - `buildx`: the real `docker-buildx build --progress rawjson` on the same builder, timed the
//!   same way.
//!
//! Then one `kbx build` of a context with a 1 GiB file, for kbx's peak RSS. Prints the results
//! as markdown tables on standard output; progress goes to standard error.
//!
//! ```text
//! kbx-bench-upload [--runs N] [--kbx PATH] [--buildx PATH] [--kubeconfig PATH]
//!                  [--small-files N] [--small-bytes N] [--big-mb N] [--rss-mib N] [--work DIR]
//! ```
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
                _ => return Err(format!("unknown argument {flag}\n{USAGE}").into()),
            }
        }
        Ok(args)
    }
}

const USAGE: &str = "usage: kbx-bench-upload [--runs N] [--kbx PATH] [--buildx PATH] [--kubeconfig PATH] [--small-files N] [--small-bytes N] [--big-mb N] [--rss-mib N (0: skip)] [--work DIR]";

fn log(message: &str) {
    let _ = writeln!(std::io::stderr(), "[bench-upload] {message}");
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
    match runtime.block_on(run(args)) {
        Ok(report) => {
            let _ = std::io::stdout().write_all(report.as_bytes());
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
                    .find(|l| l.contains("BuildKit version"))
                    .unwrap_or("(no BuildKit version)")
                    .trim()
            ));
        }

        let mut samples: BTreeMap<Mode, Vec<Sample>> = BTreeMap::new();
        let mut modes = vec![Mode::Raw, Mode::Raw64k, Mode::Kbx];
        if buildx.is_some() {
            modes.push(Mode::Buildx);
        }
        for run in 0..args.runs {
            // Alternate the order so that no path always runs first after a prune.
            let mut order = modes.clone();
            if run % 2 == 1 {
                order.reverse();
            }
            for mode in order {
                let sample = match mode {
                    Mode::Raw => raw_exec(&client, ns.name(), &pod, stats, None).await?,
                    Mode::Raw64k => {
                        raw_exec(&client, ns.name(), &pod, stats, Some(64 << 10)).await?
                    }
                    Mode::Kbx => {
                        prune(&user, kbx).await?;
                        build(&user, kbx, "kbx", ctx).await?
                    }
                    Mode::Buildx => {
                        prune(&user, kbx).await?;
                        build(
                            &user,
                            buildx.expect("buildx mode only with a binary"),
                            "docker-buildx",
                            ctx,
                        )
                        .await?
                    }
                };
                log(&format!(
                    "run {}/{} {:<7} {:>7.2} s  {:>6.1} MB/s  peak RSS {}  CPU {}",
                    run + 1,
                    args.runs,
                    mode.name(),
                    sample.seconds,
                    stats.bytes as f64 / sample.seconds / 1e6,
                    sample
                        .peak_rss_kib
                        .map_or("-".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                    sample
                        .cpu_seconds
                        .map_or("-".to_owned(), |c| format!("{c:.2} s"))
                ));
                samples.entry(mode).or_default().push(sample);
            }
        }
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

/// One of the measured paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Raw,
    Raw64k,
    Kbx,
    Buildx,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::Raw64k => "raw-64k",
            Mode::Kbx => "kbx",
            Mode::Buildx => "buildx",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    seconds: f64,
    peak_rss_kib: Option<u64>,
    /// The client's user + system CPU time for the whole command (with `/usr/bin/time`).
    cpu_seconds: Option<f64>,
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

/// Sends every file of the context through `pods/exec` into `head -c N > /dev/null` and
/// times it from the exec request to the command's exit status.
async fn raw_exec(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    stats: &ContextStats,
    stdin_pipe: Option<usize>,
) -> Result<Sample> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let mut params = AttachParams::default()
        .container("buildkitd")
        .stdin(true)
        .stdout(false)
        .stderr(true);
    if let Some(size) = stdin_pipe {
        params = params.max_stdin_buf_size(size);
    }
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
                    peak_rss_kib: None,
                    cpu_seconds: None,
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
    let seconds = context_seconds(&out.stderr)
        .ok_or_else(|| format!("{what} build printed no completed {CONTEXT_VERTEX:?} vertex"))?;
    Ok(Sample {
        seconds,
        peak_rss_kib: out.peak_rss_kib,
        cpu_seconds: out.cpu_seconds,
    })
}

/// From `--progress rawjson` lines: the first `started` to the last `completed` of the
/// context vertex, in seconds.
fn context_seconds(rawjson: &str) -> Option<f64> {
    let mut first: Option<f64> = None;
    let mut last: Option<f64> = None;
    for line in rawjson.lines() {
        if !line.contains(CONTEXT_VERTEX) {
            continue;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(vertexes) = value.get("vertexes").and_then(|v| v.as_array()) else {
            continue;
        };
        for v in vertexes {
            if v.get("name").and_then(|n| n.as_str()) != Some(CONTEXT_VERTEX) {
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
        "Context: {} files ({} × {} B + one {:.0} MB file + Dockerfile), {:.1} MB; {} cold runs per path, alternating; medians (min–max).\n\n",
        stats.files,
        args.small_files,
        args.small_bytes,
        args.big_bytes as f64 / 1e6,
        mb,
        args.runs
    ));
    out.push_str(
        "| Path | Time | Throughput | Files/s | Peak RSS | Client CPU | Ratio |\n|---|---|---|---|---|---|---|\n",
    );
    let raw = med(Mode::Raw);
    let buildx = med(Mode::Buildx);
    for (mode, list) in samples {
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
        let files = match mode {
            Mode::Raw | Mode::Raw64k => "—".to_owned(),
            _ => format!("{:.0}", stats.files as f64 / m),
        };
        let ratio = match mode {
            Mode::Raw => "baseline".to_owned(),
            Mode::Raw64k | Mode::Buildx => {
                raw.map_or("—".to_owned(), |r| format!("{:.2} × raw", r / m))
            }
            Mode::Kbx => {
                let mut parts = Vec::new();
                if let Some(r) = raw {
                    parts.push(format!("{:.2} × raw", r / m));
                }
                if let Some(r) = med(Mode::Raw64k) {
                    parts.push(format!("{:.2} × raw-64k", r / m));
                }
                if let Some(b) = buildx {
                    parts.push(format!("{:.2} × Buildx", b / m));
                }
                parts.join("; ")
            }
        };
        let label = match mode {
            Mode::Raw => "raw `pods/exec` (kube-rs defaults: 1 KiB stdin pipe)",
            Mode::Raw64k => "raw `pods/exec` (64 KiB stdin pipe)",
            Mode::Kbx => "`kbx build` (context vertex)",
            Mode::Buildx => "Buildx 0.29.1 `build` (context vertex)",
        };
        out.push_str(&format!(
            "| {label} | {m:.2} s ({lo:.2}–{hi:.2}) | {:.1} MB/s ({:.1}–{:.1}) | {files} | {rss} | {cpu} | {ratio} |\n",
            mb / m,
            mb / hi,
            mb / lo
        ));
    }
    out.push_str(
        "\nTime and throughput: the context vertex on BuildKit's clock for the builds, exec request \
         to exit status for raw. Client CPU: user + system time of the whole `build` command \
         (median).\n",
    );
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
    fn context_seconds_spans_the_vertex() {
        let lines = r#"{"vertexes":[{"digest":"a","name":"[internal] load build context","started":"2026-12-04T21:11:07.182467885Z","completed":"2026-12-04T21:11:07.182492752Z"}]}
{"vertexes":[{"digest":"b","name":"[1/1] COPY . /ctx/","started":"2026-12-04T21:11:26.030001788Z"}]}
{"vertexes":[{"digest":"a","name":"[internal] load build context","started":"2026-12-04T21:11:07.184008954Z"}]}
{"vertexes":[{"digest":"a","name":"[internal] load build context","started":"2026-12-04T21:11:07.184008954Z","completed":"2026-12-04T21:11:26.027442511Z"}]}"#;
        let s = context_seconds(lines).unwrap();
        assert!((s - 18.844974626).abs() < 1e-6, "{s}");
        assert_eq!(context_seconds("{}"), None);
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
