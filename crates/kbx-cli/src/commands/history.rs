//! `kbx history ls|inspect|logs|rm`: the build records BuildKit keeps (v0.11+), with buildx's
//! formats. Records come from every node of the builder; a reference is a record's ID as
//! `history ls` shows it, or `^N`, the N-th newest record (`^0` the newest). Without a
//! reference, `inspect` and `logs` take the newest.
//!
//! # Deviation
//! - `ls --filter` keys `ref`, `status`, `repository`, `duration`, `startedAt` and
//!   `completedAt` are matched by kbx itself (buildx also sends them to daemons that filter,
//!   BuildKit v0.19+; the records listed are the same). `--local` is not supported.
//! - `inspect` prints times in UTC (buildx: the local zone) and, for a failed build, only the
//!   `Error:` line (buildx adds the failing step's source lines and logs, read from the
//!   record's external error); `inspect attachment`, `history export|import|open|trace` are
//!   not implemented.
//! - `logs --progress tty` draws kbx's tty view (K8).

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::time::{Duration, SystemTime};

use kbx_buildkit::{BlobDescriptor, Client, HistoryRecord};
use kbx_opts::GoDuration;
use kbx_store::{BuildState, NodeGroup, Store};

use crate::builders;
use crate::cli::{
    HistoryArgs, HistoryCommand, HistoryInspectArgs, HistoryLogsArgs, HistoryLsArgs, HistoryRmArgs,
    ProgressMode,
};
use crate::driver;
use crate::error::Error;
use crate::output::out;
use crate::progress::{self, Printer};
use crate::tabwriter::TabWriter;
use crate::template::{Format, Row, Value, go_json_string};

/// Runs `kbx history …` on `builder` (the current one when `None`).
pub(crate) async fn run(args: HistoryArgs, builder: Option<String>) -> Result<(), Error> {
    match args.command {
        HistoryCommand::Ls(a) => ls(a, builder).await,
        HistoryCommand::Inspect(a) => inspect(a, builder).await,
        HistoryCommand::Logs(a) => logs(a, builder).await,
        HistoryCommand::Rm(a) => rm(a, builder).await,
    }
}

/// A record and where it is: the builder, the node and a client for that node.
struct Found {
    builder: String,
    node: String,
    client: Client,
    record: HistoryRecord,
}

impl Found {
    fn full_ref(&self) -> String {
        format!("{}/{}/{}", self.builder, self.node, self.record.build_ref)
    }
}

/// A client for each node of `ng`, with the node's name.
async fn node_clients(ng: &NodeGroup) -> Result<Vec<(String, Client)>, Error> {
    let mut out = Vec::new();
    for n in ng.nodes() {
        out.push((
            n.name.clone(),
            driver::connect(ng, n, b"", None).await?.client,
        ));
    }
    Ok(out)
}

/// buildx's `queryRecords`: the records of every node (the one named `reference` only,
/// unless it is an offset), newest first; `^N` keeps the N-th.
async fn query(ng: &NodeGroup, reference: Option<&str>) -> Result<Vec<Found>, Error> {
    let (exact, offset) = match reference {
        Some(r) if r.starts_with('^') => {
            let n = r[1..].parse::<i64>().map_err(|_| {
                Error::msg(format!(
                    "invalid offset {r:?}: strconv.Atoi: parsing {:?}: invalid syntax",
                    &r[1..]
                ))
            })?;
            (None, Some(n))
        }
        Some(r) => (Some(r), None),
        None => (None, None),
    };
    let mut out = Vec::new();
    for (node, client) in node_clients(ng).await? {
        let records = client.history(exact).await.map_err(history_error)?;
        for record in records {
            out.push(Found {
                builder: ng.name.clone(),
                node: node.clone(),
                client: client.clone(),
                record,
            });
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.record.created_at));
    if let Some(mut offset) = offset {
        // As buildx: the offset counts down while skipping, and what is left is reported.
        let mut kept = None;
        for (i, _) in out.iter().enumerate() {
            if offset > 0 {
                offset -= 1;
                continue;
            }
            kept = Some(i);
            break;
        }
        if offset > 0 {
            return Err(Error::msg(format!(
                "no completed build found with offset {offset}"
            )));
        }
        out = match kept {
            Some(i) => vec![out.swap_remove(i)],
            None => Vec::new(),
        };
    }
    Ok(out)
}

/// A daemon error in its own words, as buildx prints it.
fn history_error(e: kbx_buildkit::Error) -> Error {
    match e {
        kbx_buildkit::Error::Rpc { status, .. } => Error::msg(status.message().to_owned()),
        other => Error::Buildkit(other),
    }
}

/// The one record `reference` names (the newest without one).
async fn one(ng: &NodeGroup, reference: Option<&str>) -> Result<Found, Error> {
    let mut found = query(ng, reference).await?;
    if found.is_empty() {
        return Err(Error::msg(match reference {
            None => "no records found".to_owned(),
            Some(r) => format!("no record found for ref {r:?}"),
        }));
    }
    Ok(found.swap_remove(0))
}

// ---------------------------------------------------------------------------------------------
// ls

/// `history ls`'s default table.
const LS_TABLE: &str =
    "table {{.Ref}}\t{{.Name}}\t{{.Status}}\t{{.CreatedAt}}\t{{.Duration}}\t{{.Link}}";

/// `history ls`'s column titles.
const LS_HEADER: &[(&str, &str)] = &[
    ("Ref", "BUILD ID"),
    ("Name", "NAME"),
    ("Status", "STATUS"),
    ("CreatedAt", "CREATED AT"),
    ("Duration", "DURATION"),
    ("Link", ""),
];

/// One row of `history ls`.
struct LsRow<'a> {
    found: &'a Found,
    name: String,
    table: bool,
    trunc: bool,
    now: SystemTime,
}

/// `Completed`, `Error` or `Running`, as `history ls` shows a record.
fn ls_status(r: &HistoryRecord) -> &'static str {
    match (r.completed_at, &r.error) {
        (Some(_), Some(_)) => "Error",
        (Some(_), None) => "Completed",
        (None, _) => "Running",
    }
}

/// buildx's `formatDuration`: `0.4s` under a minute, else `2m 5s`.
fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m {:2}s", s / 60, s % 60)
    }
}

fn since(now: SystemTime, then: Option<SystemTime>) -> Duration {
    then.and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default()
}

/// `X ago` as Docker's `units.HumanDuration` says it.
fn ago(now: SystemTime, then: Option<SystemTime>) -> String {
    let nanos = i64::try_from(since(now, then).as_nanos()).unwrap_or(i64::MAX);
    format!(
        "{} ago",
        kbx_opts::human_duration(GoDuration::from_nanos(nanos))
    )
}

/// `s` cut to its last `n` bytes behind `..`, as buildx's `trimBeginning`.
fn trim_beginning(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut start = s.len() - n + 2;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("..{}", &s[start..])
}

/// The link buildx shows for a record (Docker Desktop's build view).
fn desktop_url(full_ref: &str) -> String {
    format!("docker-desktop://dashboard/build/{full_ref}")
}

impl LsRow<'_> {
    fn duration(&self) -> String {
        let r = &self.found.record;
        let last = r.completed_at.or(r.current_timestamp);
        let Some(last) = last else {
            return String::new();
        };
        let mut v = format_duration(since(last, r.created_at));
        if r.completed_at.is_none() {
            v.push('+');
        }
        v
    }
}

impl Row for LsRow<'_> {
    fn field(&self, name: &str) -> Option<Value> {
        let r = &self.found.record;
        Some(Value::Str(match name {
            "Ref" => r.build_ref.clone(),
            "FullRef" => self.found.full_ref(),
            "Name" if self.trunc && self.table => trim_beginning(&self.name, 36),
            "Name" => self.name.clone(),
            "Status" => ls_status(r).to_owned(),
            "CreatedAt" => ago(self.now, r.created_at),
            "Duration" => self.duration(),
            // buildx prints a terminal hyperlink in a table on a terminal; kbx never does.
            "Link" if self.table => String::new(),
            "Link" => desktop_url(&self.found.full_ref()),
            _ => return None,
        }))
    }

    fn json(&self) -> String {
        let r = &self.found.record;
        let time = |t: Option<SystemTime>| {
            go_json_string(&crate::progress::json::rfc3339_nano(
                t.unwrap_or(SystemTime::UNIX_EPOCH),
            ))
        };
        let mut fields = vec![("cached_steps", r.num_cached_steps.to_string())];
        if r.completed_at.is_some() {
            fields.push(("completed_at", time(r.completed_at)));
        }
        fields.extend([
            ("completed_steps", r.num_completed_steps.to_string()),
            ("created_at", time(r.created_at)),
            ("name", go_json_string(&self.name)),
            ("ref", go_json_string(&self.found.full_ref())),
            ("status", go_json_string(ls_status(r))),
            ("total_steps", r.num_total_steps.to_string()),
        ]);
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// A `--filter` of `history ls`, matched against each record.
type Matcher = Box<dyn Fn(&HistoryRecord) -> bool>;

/// buildx's `dockerFiltersToBuildkit`, as local matchers.
fn parse_filter(f: &str, now: SystemTime) -> Result<Matcher, Error> {
    let seps = ["!=", "=", "<=", "<", ">=", ">"];
    let Some((key, value, sep)) = seps
        .iter()
        .find_map(|sep| f.split_once(sep).map(|(k, v)| (k, v, *sep)))
    else {
        return Err(Error::msg(format!("invalid filter {f:?}")));
    };
    let value = value.to_owned();
    match key {
        "ref" | "repository" | "status" => {
            if sep != "=" && sep != "!=" {
                return Err(Error::msg(format!(
                    "invalid separator for {f:?}, expected = or !="
                )));
            }
            let key = key.to_owned();
            let eq = sep == "=";
            Ok(Box::new(move |r: &HistoryRecord| {
                let actual = match key.as_str() {
                    "ref" => r.build_ref.clone(),
                    "repository" => r
                        .frontend_attrs
                        .get("vcs:source")
                        .cloned()
                        .unwrap_or_default(),
                    _ => match (r.completed_at, &r.error) {
                        (Some(_), Some((_, m))) if m.contains("context canceled") => {
                            "canceled".to_owned()
                        }
                        (Some(_), Some(_)) => "error".to_owned(),
                        (Some(_), None) => "completed".to_owned(),
                        (None, _) => "running".to_owned(),
                    },
                };
                match (eq, key.as_str()) {
                    (true, "status") => actual == value,
                    (true, _) => actual.contains(&value),
                    (false, _) => actual != value,
                }
            }))
        }
        "startedAt" | "completedAt" | "duration" => {
            if sep == "=" || sep == "!=" {
                return Err(Error::msg(format!(
                    "invalid separator for {f:?}, expected <=, <, >= or >"
                )));
            }
            let cmp: i128 = if key == "duration" {
                GoDuration::parse(&value)
                    .map_err(|_| Error::msg(format!("invalid duration {value}")))?
                    .as_nanos()
                    .into()
            } else if let Ok(d) = GoDuration::parse(&value) {
                let ago = d.to_std().unwrap_or_default();
                unix_secs(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH)).into()
            } else {
                let t: jiff::Timestamp = value
                    .parse()
                    .map_err(|_| Error::msg(format!("invalid time {value}")))?;
                t.as_second().into()
            };
            let key = key.to_owned();
            let sep = sep.to_owned();
            Ok(Box::new(move |r: &HistoryRecord| {
                let val: i128 = match key.as_str() {
                    "startedAt" => r.created_at.map_or(0, |t| unix_secs(t).into()),
                    "completedAt" => r.completed_at.map_or(0, |t| unix_secs(t).into()),
                    _ => match (r.created_at, r.completed_at) {
                        (Some(a), Some(b)) => {
                            i128::try_from(b.duration_since(a).unwrap_or_default().as_nanos())
                                .unwrap_or(i128::MAX)
                        }
                        _ => 0,
                    },
                };
                match sep.as_str() {
                    ">=" => val >= cmp,
                    "<=" => val <= cmp,
                    ">" => val > cmp,
                    _ => val < cmp,
                }
            }))
        }
        _ => Err(Error::msg(format!("unsupported filter {f:?}"))),
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// buildx's `BuildName`: the build-arg `BUILDKIT_BUILD_NAME`, else a name made of the context
/// (or Dockerfile) directory and the target.
pub(crate) fn build_name(attrs: &BTreeMap<String, String>, st: Option<&BuildState>) -> String {
    if let Some(v) = attrs.get("build-arg:BUILDKIT_BUILD_NAME")
        && !v.is_empty()
    {
        return v.clone();
    }
    let target = attrs.get("target").cloned().unwrap_or_default();
    let context_path = match (attrs.get("context"), attrs.get("vcs:localdir:context")) {
        (Some(v), _) => v.clone(),
        (None, Some(v)) if v != "." => v.clone(),
        _ => String::new(),
    };
    let vcs_source = attrs.get("vcs:source").cloned().unwrap_or_default();
    let mut dockerfile_path = match attrs.get("filename") {
        Some(v) if v != "Dockerfile" => v.clone(),
        _ => String::new(),
    };
    if let Some(v) = attrs.get("vcs:localdir:dockerfile")
        && v != "."
    {
        dockerfile_path = go_join(v, &dockerfile_path);
    }
    let mut local_path = String::new();
    if let Some(st) = st
        && !is_remote_url(&st.local_path)
    {
        if !st.local_path.is_empty() && st.local_path != "-" {
            local_path = st.local_path.clone();
        }
        if !st.dockerfile_path.is_empty()
            && st.dockerfile_path != "-"
            && st.dockerfile_path != "Dockerfile"
        {
            dockerfile_path = st.dockerfile_path.clone();
        }
    }
    const DEFAULT: &str = "/Dockerfile";
    let has_default = dockerfile_path.ends_with(DEFAULT) || dockerfile_path.is_empty();
    let dockerfile_path = dockerfile_path
        .strip_suffix(DEFAULT)
        .unwrap_or(&dockerfile_path)
        .to_owned();
    let mut res = String::new();
    if dockerfile_path.starts_with(&local_path) && dockerfile_path.len() > local_path.len() {
        let cut = local_path.rfind('/').map_or(0, |i| i + 1);
        res = dockerfile_path[cut..].to_owned();
    } else {
        let bpath = if dockerfile_path.is_empty() {
            &local_path
        } else {
            &dockerfile_path
        };
        if !bpath.is_empty() {
            let lidx = bpath.rfind('/');
            res = bpath[lidx.map_or(0, |i| i + 1)..].to_owned();
            if !has_default {
                let dir = match lidx {
                    Some(i) => go_base(&bpath[..i]),
                    None => go_base(bpath),
                };
                res = go_join(&dir, &res);
            }
        }
    }
    if !context_path.is_empty() {
        res = context_path;
    }
    if !target.is_empty() {
        res = if res.is_empty() {
            target
        } else {
            format!("{res} ({target})")
        };
    }
    if res.is_empty() && !vcs_source.is_empty() {
        return vcs_source;
    }
    res
}

fn is_remote_url(s: &str) -> bool {
    ["http://", "https://", "git://", "git@", "github.com/"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// Go's `filepath.Base`.
fn go_base(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return if p.is_empty() { ".".into() } else { "/".into() };
    }
    t.rsplit('/').next().unwrap_or(t).to_owned()
}

/// Go's `filepath.Join` of two elements (cleaned).
fn go_join(a: &str, b: &str) -> String {
    let joined = match (a.is_empty(), b.is_empty()) {
        (true, true) => return String::new(),
        (true, false) => b.to_owned(),
        (false, true) => a.to_owned(),
        (false, false) => format!("{a}/{b}"),
    };
    go_clean(&joined)
}

/// Go's `path.Clean`.
fn go_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

/// Go's `filepath.Rel` for two absolute paths; `None` when either is relative.
fn go_rel(base: &Path, target: &Path) -> Option<String> {
    if !base.is_absolute() || !target.is_absolute() {
        return None;
    }
    let norm = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(s) => v.push(s.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    v.pop();
                }
                _ => {}
            }
        }
        v
    };
    let (b, t) = (norm(base), norm(target));
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); b.len() - common];
    parts.extend(t[common..].iter().cloned());
    Some(if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    })
}

async fn ls(args: HistoryLsArgs, builder: Option<String>) -> Result<(), Error> {
    if args.local {
        return Err(Error::msg("--local is not supported by kbx"));
    }
    let now = SystemTime::now();
    let matchers = args
        .filters
        .iter()
        .map(|f| parse_filter(f, now))
        .collect::<Result<Vec<_>, _>>()?;
    let ng = builders::load(builder.as_deref())?;
    let mut found = query(&ng, None).await?;
    found.retain(|f| matchers.iter().all(|m| m(&f.record)));
    // As buildx: running builds first, then newest first.
    found.sort_by(|a, b| {
        let (ra, rb) = (&a.record, &b.record);
        rb.completed_at
            .is_none()
            .cmp(&ra.completed_at.is_none())
            .then(rb.created_at.cmp(&ra.created_at))
    });
    let store = Store::open_default()?;
    let given = if args.format == "table" {
        LS_TABLE
    } else {
        args.format.as_str()
    };
    let format = Format::parse(given)?;
    let rows: Vec<LsRow<'_>> = found
        .iter()
        .map(|f| LsRow {
            found: f,
            name: build_name(
                &f.record.frontend_attrs,
                store
                    .build_state(&f.builder, &f.node, &f.record.build_ref)
                    .as_ref(),
            ),
            table: format.is_table(),
            trunc: !args.no_trunc,
            now,
        })
        .collect();
    let refs: Vec<&dyn Row> = rows.iter().map(|r| r as &dyn Row).collect();
    out!("{}", format.render(LS_HEADER, &refs)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// inspect

/// What `history inspect` shows of a record (buildx's `inspectOutput`).
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectOutput {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(rename = "Ref")]
    build_ref: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    context: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    dockerfile: String,
    #[serde(rename = "VCSRepository", skip_serializing_if = "String::is_empty")]
    vcs_repository: String,
    #[serde(rename = "VCSRevision", skip_serializing_if = "String::is_empty")]
    vcs_revision: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    target: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    platform: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    keep_git_dir: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    named_contexts: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    duration: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorOutput>,
    num_completed_steps: i32,
    num_total_steps: i32,
    num_cached_steps: i32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    build_args: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<KeyValue>,
    config: ConfigOutput,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    materials: Vec<Material>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<Attachment>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyValue {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    value: String,
}

#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorOutput {
    #[serde(skip_serializing_if = "is_zero_i32")]
    code: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

#[derive(Debug, Default, serde::Serialize)]
struct ConfigOutput {
    #[serde(rename = "Network", skip_serializing_if = "String::is_empty")]
    network: String,
    #[serde(rename = "ExtraHosts", skip_serializing_if = "Vec::is_empty")]
    extra_hosts: Vec<String>,
    #[serde(rename = "Hostname", skip_serializing_if = "String::is_empty")]
    hostname: String,
    #[serde(rename = "CgroupParent", skip_serializing_if = "String::is_empty")]
    cgroup_parent: String,
    #[serde(rename = "ImageResolveMode", skip_serializing_if = "String::is_empty")]
    image_resolve_mode: String,
    #[serde(rename = "MultiPlatform", skip_serializing_if = "std::ops::Not::not")]
    multi_platform: bool,
    #[serde(rename = "NoCache", skip_serializing_if = "std::ops::Not::not")]
    no_cache: bool,
    #[serde(rename = "NoCacheFilter", skip_serializing_if = "Vec::is_empty")]
    no_cache_filter: Vec<String>,
    #[serde(rename = "ShmSize", skip_serializing_if = "String::is_empty")]
    shm_size: String,
    #[serde(rename = "Ulimit", skip_serializing_if = "String::is_empty")]
    ulimit: String,
    #[serde(rename = "Memory", skip_serializing_if = "String::is_empty")]
    memory: String,
    #[serde(rename = "MemorySwap", skip_serializing_if = "String::is_empty")]
    memory_swap: String,
    #[serde(rename = "CPUShares", skip_serializing_if = "String::is_empty")]
    cpu_shares: String,
    #[serde(rename = "CPUPeriod", skip_serializing_if = "String::is_empty")]
    cpu_period: String,
    #[serde(rename = "CPUQuota", skip_serializing_if = "String::is_empty")]
    cpu_quota: String,
    #[serde(rename = "CPUSetCPUs", skip_serializing_if = "String::is_empty")]
    cpuset_cpus: String,
    #[serde(rename = "CPUSetMems", skip_serializing_if = "String::is_empty")]
    cpuset_mems: String,
    #[serde(rename = "CacheMountNS", skip_serializing_if = "String::is_empty")]
    cache_mount_ns: String,
    #[serde(
        rename = "DockerfileCheckConfig",
        skip_serializing_if = "String::is_empty"
    )]
    dockerfile_check_config: String,
    #[serde(rename = "SourceDateEpoch", skip_serializing_if = "String::is_empty")]
    source_date_epoch: String,
    #[serde(rename = "SandboxHostname", skip_serializing_if = "String::is_empty")]
    sandbox_hostname: String,
    #[serde(rename = "RestRaw", skip_serializing_if = "Vec::is_empty")]
    rest_raw: Vec<KeyValue>,
}

#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Material {
    #[serde(rename = "URI", skip_serializing_if = "String::is_empty")]
    uri: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    digests: Vec<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Attachment {
    #[serde(skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    platform: String,
    #[serde(rename = "Type", skip_serializing_if = "String::is_empty")]
    kind: String,
}

/// gRPC code names, as Go's `codes.Code.String()`.
fn grpc_code_name(code: i32) -> String {
    let names = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| names.get(i))
        .map_or_else(|| format!("Code({code})"), |n| (*n).to_owned())
}

/// Go's `time.Time.Format("2006-01-02 15:04:05")` in UTC.
fn started_text(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn descr_type(d: &BlobDescriptor) -> String {
    d.annotations
        .get("in-toto.io/predicate-type")
        .cloned()
        .unwrap_or_else(|| d.media_type.clone())
}

/// buildx's `walkAttachments`: a result blob the daemon still has, and the manifests of an
/// index, attestation manifests left out.
async fn walk_attachments(
    client: &Client,
    d: &BlobDescriptor,
    platform: Option<String>,
    out: &mut Vec<(Option<String>, BlobDescriptor)>,
) {
    let mut stack = vec![(d.clone(), platform)];
    while let Some((d, platform)) = stack.pop() {
        let Ok(blob) = client.read_blob(&d.digest).await else {
            continue;
        };
        if d.annotations
            .get("vnd.docker.reference.type")
            .map(String::as_str)
            != Some("attestation-manifest")
        {
            out.push((platform.clone(), d.clone()));
        }
        if d.media_type != "application/vnd.oci.image.index.v1+json"
            && d.media_type != "application/vnd.docker.distribution.manifest.list.v2+json"
        {
            continue;
        }
        let Ok(index) = serde_json::from_slice::<serde_json::Value>(&blob) else {
            continue;
        };
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        // Pushed in reverse so they are visited in the index's order.
        for m in manifests.iter().rev() {
            let p = m.get("platform").map(|p| {
                let mut s = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap_or_default(),
                    p["architecture"].as_str().unwrap_or_default()
                );
                if let Some(v) = p["variant"].as_str().filter(|v| !v.is_empty()) {
                    s.push('/');
                    s.push_str(v);
                }
                s
            });
            let desc = BlobDescriptor {
                media_type: m["mediaType"].as_str().unwrap_or_default().to_owned(),
                digest: m["digest"].as_str().unwrap_or_default().to_owned(),
                size: m["size"].as_i64().unwrap_or_default(),
                annotations: m["annotations"]
                    .as_object()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            stack.push((desc, p.or_else(|| platform.clone())));
        }
    }
}

/// Removes `key` from `attrs`, returning its value.
fn take(attrs: &mut BTreeMap<String, String>, key: &str) -> Option<String> {
    attrs.remove(key)
}

/// The attributes under `prefix`, prefix removed, sorted by name.
fn key_values(attrs: &BTreeMap<String, String>, prefix: &str) -> Vec<KeyValue> {
    attrs
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(prefix).map(|name| KeyValue {
                name: name.to_owned(),
                value: v.clone(),
            })
        })
        .collect()
}

fn parse_bool(v: &str, errors: &mut Vec<String>) -> bool {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
        "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
        _ => {
            errors.push(format!(
                "failed to parse {v}: (strconv.ParseBool: parsing {v:?}: invalid syntax)"
            ));
            false
        }
    }
}

/// Builds buildx's `inspectOutput` for `found`.
async fn inspect_output(found: &Found, st: Option<&BuildState>) -> Result<InspectOutput, Error> {
    let rec = &found.record;
    let mut attrs = rec.frontend_attrs.clone();
    attrs.remove("frontend.caps");
    let mut out = InspectOutput::default();
    let (mut context, mut dockerfile) = (String::new(), String::new());
    if let Some(st) = st {
        context = st.local_path.clone();
        dockerfile = st.dockerfile_path.clone();
        if !dockerfile.is_empty()
            && dockerfile != "-"
            && let Some(rel) = go_rel(Path::new(&context), Path::new(&dockerfile))
            && !rel.starts_with("../")
        {
            dockerfile = rel;
        }
        if !context.is_empty()
            && let Ok(wd) = std::env::current_dir()
            && let Some(rel) = go_rel(&wd, Path::new(&context))
            && !rel.starts_with("../")
        {
            context = rel;
        }
    }
    if context.is_empty()
        && let Some(v) = take(&mut attrs, "context")
    {
        context = v;
    }
    if dockerfile.is_empty()
        && let Some(v) = attrs.get("filename")
    {
        dockerfile = v.clone();
        if let Some(dir) = attrs.get("vcs:localdir:dockerfile") {
            dockerfile = go_join(dir, &dockerfile);
        }
    }
    attrs.remove("filename");
    // As buildx, the name is made after `filename` is gone.
    out.name = build_name(&attrs, st);
    out.build_ref = rec.build_ref.clone();
    out.context = context;
    out.dockerfile = dockerfile;
    if !attrs.contains_key("context") {
        out.vcs_repository = attrs.get("vcs:source").cloned().unwrap_or_default();
        out.vcs_revision = attrs.get("vcs:revision").cloned().unwrap_or_default();
    }
    out.target = take(&mut attrs, "target").unwrap_or_default();
    if let Some(p) = take(&mut attrs, "platform") {
        out.platform = p
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(v) = take(&mut attrs, "build-arg:BUILDKIT_CONTEXT_KEEP_GIT_DIR") {
        out.keep_git_dir = parse_bool(&v, &mut out.errors);
    }
    out.named_contexts = key_values(&attrs, "context:");
    out.started_at = rec.created_at.map(crate::progress::json::rfc3339_nano);
    out.status = "running".to_owned();
    if let Some(c) = rec.completed_at {
        out.completed_at = Some(crate::progress::json::rfc3339_nano(c));
        out.status = "completed".to_owned();
    }
    if let Some((code, message)) = &rec.error {
        // gRPC's Canceled is 1.
        out.status = if *code == 1 { "canceled" } else { "failed" }.to_owned();
        out.error = Some(ErrorOutput {
            code: *code,
            message: message.clone(),
        });
    }
    if let Some(start) = rec.created_at {
        let end = rec.completed_at.or(rec.current_timestamp).unwrap_or(start);
        out.duration = i64::try_from(end.duration_since(start).unwrap_or_default().as_nanos())
            .unwrap_or(i64::MAX);
    }
    out.num_completed_steps = rec.num_completed_steps;
    out.num_total_steps = rec.num_total_steps;
    out.num_cached_steps = rec.num_cached_steps;
    out.build_args = key_values(&attrs, "build-arg:");
    out.labels = key_values(&attrs, "label:");
    let c = &mut out.config;
    c.network = take(&mut attrs, "force-network-mode").unwrap_or_default();
    c.hostname = take(&mut attrs, "hostname").unwrap_or_default();
    c.cgroup_parent = take(&mut attrs, "cgroup-parent").unwrap_or_default();
    c.image_resolve_mode = take(&mut attrs, "image-resolve-mode").unwrap_or_default();
    if let Some(v) = take(&mut attrs, "build-arg:BUILDKIT_MULTI_PLATFORM") {
        c.multi_platform = parse_bool(&v, &mut out.errors);
    }
    if let Some(v) = take(&mut attrs, "multi-platform") {
        c.multi_platform = parse_bool(&v, &mut out.errors);
    }
    if let Some(v) = take(&mut attrs, "no-cache") {
        if v.is_empty() {
            c.no_cache = true;
        } else {
            c.no_cache_filter = v.split(',').map(str::to_owned).collect();
        }
    }
    if let Some(v) = take(&mut attrs, "add-hosts") {
        c.extra_hosts = v
            .split(',')
            .map(|s| s.trim_matches('"').to_owned())
            .collect();
    }
    c.shm_size = take(&mut attrs, "shm-size").unwrap_or_default();
    c.ulimit = take(&mut attrs, "ulimit").unwrap_or_default();
    c.memory = take(&mut attrs, "memory").unwrap_or_default();
    c.memory_swap = take(&mut attrs, "memswap").unwrap_or_default();
    c.cpu_shares = take(&mut attrs, "cpushares").unwrap_or_default();
    c.cpu_period = take(&mut attrs, "cpuperiod").unwrap_or_default();
    c.cpu_quota = take(&mut attrs, "cpuquota").unwrap_or_default();
    c.cpuset_cpus = take(&mut attrs, "cpusetcpus").unwrap_or_default();
    c.cpuset_mems = take(&mut attrs, "cpusetmems").unwrap_or_default();
    c.cache_mount_ns = take(&mut attrs, "build-arg:BUILDKIT_CACHE_MOUNT_NS").unwrap_or_default();
    c.dockerfile_check_config =
        take(&mut attrs, "build-arg:BUILDKIT_DOCKERFILE_CHECK").unwrap_or_default();
    c.source_date_epoch = take(&mut attrs, "build-arg:SOURCE_DATE_EPOCH").unwrap_or_default();
    c.sandbox_hostname = take(&mut attrs, "build-arg:SANDBOX_HOSTNAME").unwrap_or_default();
    c.rest_raw = attrs
        .iter()
        .filter(|(k, _)| {
            !["vcs:", "build-arg:", "label:", "context:", "attest:"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| KeyValue {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    // Attachments: the record's attestations, then what its results still hold.
    let mut attachments: Vec<(Option<String>, BlobDescriptor)> = Vec::new();
    if let Some(r) = &rec.result {
        attachments.extend(r.attestations.iter().map(|a| (None, a.clone())));
        for d in &r.results {
            walk_attachments(&found.client, d, None, &mut attachments).await;
        }
    }
    for (platform, r) in &rec.results {
        attachments.extend(
            r.attestations
                .iter()
                .map(|a| (Some(platform.clone()), a.clone())),
        );
        for d in &r.results {
            walk_attachments(&found.client, d, Some(platform.clone()), &mut attachments).await;
        }
    }
    attachments.sort_by(|(pa, a), (pb, b)| {
        pa.is_some()
            .cmp(&pb.is_some())
            .then(pa.cmp(pb))
            .then(descr_type(a).cmp(&descr_type(b)))
    });
    if let Some((_, prov)) = attachments
        .iter()
        .find(|(_, a)| descr_type(a).starts_with("https://slsa.dev/provenance/"))
    {
        let blob =
            found.client.read_blob(&prov.digest).await.map_err(|e| {
                Error::msg(format!("failed to read provenance {}: {e}", prov.digest))
            })?;
        let pred: serde_json::Value = serde_json::from_slice(&blob).map_err(|e| {
            Error::msg(format!(
                "failed to unmarshal provenance {}: {e}",
                prov.digest
            ))
        })?;
        // SLSA v0.2's `materials`, or v1's `buildDefinition.resolvedDependencies`.
        let deps = pred["materials"]
            .as_array()
            .or_else(|| pred["buildDefinition"]["resolvedDependencies"].as_array())
            .cloned()
            .unwrap_or_default();
        for m in deps {
            let digests = m["digest"]
                .as_object()
                .map(|d| {
                    d.iter()
                        .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            out.materials.push(Material {
                uri: m["uri"].as_str().unwrap_or_default().to_owned(),
                digests,
            });
        }
    }
    out.attachments = attachments
        .into_iter()
        .map(|(p, d)| Attachment {
            digest: d.digest.clone(),
            platform: p.unwrap_or_default(),
            kind: descr_type(&d),
        })
        .collect();
    Ok(out)
}

/// A `NAME\tVALUE` table under an upper-case title, and an empty line; nothing when empty.
fn print_table(text: &mut String, kvs: &[KeyValue], title: &str) {
    if kvs.is_empty() {
        return;
    }
    let mut tw = TabWriter::default();
    tw.line(&format!("{}\tVALUE", title.to_uppercase()));
    for kv in kvs {
        tw.line(&format!("{}\t{}", kv.name, kv.value));
    }
    text.push_str(&tw.flush());
    text.push('\n');
}

/// `history inspect`'s `pretty` text.
fn pretty(out: &InspectOutput, rec: &HistoryRecord, full_ref: &str, ref_given: bool) -> String {
    let mut text = String::new();
    let mut tw = TabWriter::default();
    if !out.name.is_empty() {
        tw.line(&format!("Name:\t{}", out.name));
    }
    if !ref_given && !out.build_ref.is_empty() {
        tw.line(&format!("Ref:\t{}", out.build_ref));
    }
    for (k, v) in [
        ("Context", &out.context),
        ("Dockerfile", &out.dockerfile),
        ("VCS Repository", &out.vcs_repository),
        ("VCS Revision", &out.vcs_revision),
        ("Target", &out.target),
    ] {
        if !v.is_empty() {
            tw.line(&format!("{k}:\t{v}"));
        }
    }
    if !out.platform.is_empty() {
        tw.line(&format!("Platforms:\t{}", out.platform.join(", ")));
    }
    if out.keep_git_dir {
        tw.line("Keep Git Dir:\ttrue");
    }
    text.push_str(&tw.flush());
    text.push('\n');
    print_table(&mut text, &out.named_contexts, "Named Context");
    let started = rec
        .created_at
        .map_or_else(|| "0001-01-01 00:00:00".to_owned(), started_text);
    tw.line(&format!("Started:\t{started}"));
    let running = if out.status == "running" {
        " (running)"
    } else {
        ""
    };
    let nanos = u64::try_from(out.duration).unwrap_or_default();
    tw.line(&format!(
        "Duration:\t{}{running}",
        format_duration(Duration::from_nanos(nanos))
    ));
    match (out.status.as_str(), &rec.error) {
        ("failed", Some((code, message))) => {
            tw.line(&format!("Error:\t{} {message}", grpc_code_name(*code)));
        }
        ("canceled", _) => tw.line("Status:\tCanceled"),
        _ => {}
    }
    // Go divides as floats: 0/0 is NaN.
    let cached = if out.num_total_steps == 0 {
        "NaN".to_owned()
    } else {
        format!(
            "{:.0}",
            f64::from(out.num_cached_steps) / f64::from(out.num_total_steps) * 100.0
        )
    };
    tw.line(&format!(
        "Build Steps:\t{}/{} ({cached}% cached)",
        out.num_completed_steps, out.num_total_steps
    ));
    text.push_str(&tw.flush());
    text.push('\n');
    let c = &out.config;
    let bool_line = |k: &str, v: bool| v.then(|| format!("{k}:\ttrue"));
    let lines = [
        (!c.network.is_empty()).then(|| format!("Network:\t{}", c.network)),
        (!c.hostname.is_empty()).then(|| format!("Hostname:\t{}", c.hostname)),
        (!c.extra_hosts.is_empty()).then(|| format!("Extra Hosts:\t{}", c.extra_hosts.join(", "))),
        (!c.cgroup_parent.is_empty()).then(|| format!("Cgroup Parent:\t{}", c.cgroup_parent)),
        (!c.image_resolve_mode.is_empty())
            .then(|| format!("Image Resolve Mode:\t{}", c.image_resolve_mode)),
        bool_line("Multi-Platform", c.multi_platform),
        bool_line("No Cache", c.no_cache),
        (!c.no_cache_filter.is_empty())
            .then(|| format!("No Cache Filter:\t{}", c.no_cache_filter.join(", "))),
        (!c.shm_size.is_empty()).then(|| format!("Shm Size:\t{}", c.shm_size)),
        (!c.ulimit.is_empty()).then(|| format!("Resource Limits:\t{}", c.ulimit)),
        (!c.memory.is_empty()).then(|| format!("Memory:\t{}", c.memory)),
        (!c.memory_swap.is_empty()).then(|| format!("Memory Swap:\t{}", c.memory_swap)),
        (!c.cpu_shares.is_empty()).then(|| format!("CPU Shares:\t{}", c.cpu_shares)),
        (!c.cpu_period.is_empty()).then(|| format!("CPU Period:\t{}", c.cpu_period)),
        (!c.cpu_quota.is_empty()).then(|| format!("CPU Quota:\t{}", c.cpu_quota)),
        (!c.cpuset_cpus.is_empty()).then(|| format!("CPUSet CPUs:\t{}", c.cpuset_cpus)),
        (!c.cpuset_mems.is_empty()).then(|| format!("CPUSet Mems:\t{}", c.cpuset_mems)),
        (!c.cache_mount_ns.is_empty())
            .then(|| format!("Cache Mount Namespace:\t{}", c.cache_mount_ns)),
        (!c.dockerfile_check_config.is_empty())
            .then(|| format!("Dockerfile Check Config:\t{}", c.dockerfile_check_config)),
        (!c.source_date_epoch.is_empty())
            .then(|| format!("Source Date Epoch:\t{}", c.source_date_epoch)),
        (!c.sandbox_hostname.is_empty())
            .then(|| format!("Sandbox Hostname:\t{}", c.sandbox_hostname)),
    ];
    for l in lines.into_iter().flatten() {
        tw.line(&l);
    }
    for kv in &c.rest_raw {
        tw.line(&format!("{}:\t{}", kv.name, kv.value));
    }
    text.push_str(&tw.flush());
    text.push('\n');
    print_table(&mut text, &out.build_args, "Build Arg");
    print_table(&mut text, &out.labels, "Label");
    if !out.materials.is_empty() {
        text.push_str("Materials:\n");
        tw.line("URI\tDIGEST");
        for m in &out.materials {
            tw.line(&format!("{}\t{}", m.uri, m.digests.join(", ")));
        }
        text.push_str(&tw.flush());
        text.push('\n');
    }
    if !out.attachments.is_empty() {
        text.push_str("Attachments:\n");
        tw.line("DIGEST\tPLATFORM\tTYPE");
        for a in &out.attachments {
            tw.line(&format!("{}\t{}\t{}", a.digest, a.platform, a.kind));
        }
        text.push_str(&tw.flush());
        text.push('\n');
    }
    text.push_str(&format!(
        "Print build logs: docker buildx history logs {}\n",
        rec.build_ref
    ));
    text.push_str(&format!(
        "View build in Docker Desktop: {}\n",
        desktop_url(full_ref)
    ));
    text
}

/// One inspected record for a `--format` template: its fields by buildx's names.
struct InspectRow(serde_json::Value);

impl Row for InspectRow {
    fn field(&self, name: &str) -> Option<Value> {
        let v = self.0.get(name);
        Some(match v {
            None => match name {
                // Fields Go always has even when `omitempty` left them out of the JSON.
                "Name" | "Context" | "Dockerfile" | "VCSRepository" | "VCSRevision" | "Target"
                | "Status" => Value::Str(String::new()),
                "Platform" => Value::List(Vec::new()),
                "KeepGitDir" => Value::Bool(false),
                "Duration" => Value::Int(0),
                _ => return None,
            },
            Some(serde_json::Value::String(s)) => Value::Str(s.clone()),
            Some(serde_json::Value::Bool(b)) => Value::Bool(*b),
            Some(serde_json::Value::Number(n)) => Value::Int(n.as_i64().unwrap_or_default()),
            Some(serde_json::Value::Array(a)) => Value::List(
                a.iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect(),
            ),
            Some(other) => Value::Str(other.to_string()),
        })
    }
    fn json(&self) -> String {
        go_html_escape(&self.0.to_string())
    }
}

/// `<`, `>` and `&` as Go's `encoding/json` writes them (they only occur inside strings).
fn go_html_escape(s: &str) -> String {
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

async fn inspect(args: HistoryInspectArgs, builder: Option<String>) -> Result<(), Error> {
    let ng = builders::load(builder.as_deref())?;
    let found = one(&ng, args.reference.as_deref()).await?;
    let store = Store::open_default()?;
    let st = store.build_state(&found.builder, &found.node, &found.record.build_ref);
    let output = inspect_output(&found, st.as_ref()).await?;
    match args.format.as_str() {
        "json" => {
            let text = serde_json::to_string_pretty(&output)
                .map_err(|e| Error::msg(format!("encoding the record: {e}")))?;
            out!("{}\n", go_html_escape(&text));
        }
        "pretty" => out!(
            "{}",
            pretty(
                &output,
                &found.record,
                &found.full_ref(),
                args.reference.is_some()
            )
        ),
        template => {
            let value = serde_json::to_value(&output)
                .map_err(|e| Error::msg(format!("encoding the record: {e}")))?;
            let t = crate::template::Template::parse(template)
                .map_err(|e| Error::msg(format!("failed to parse format template: {e}")))?;
            let text = t
                .execute(&InspectRow(value))
                .map_err(|e| Error::msg(format!("failed to execute format template: {e}")))?;
            out!("{text}\n");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// logs and rm

async fn logs(args: HistoryLogsArgs, builder: Option<String>) -> Result<(), Error> {
    let mode = match args.progress {
        ProgressMode::Auto => progress::Mode::Plain,
        other => progress::resolve_for_stderr(other)?,
    };
    let ng = builders::load(builder.as_deref())?;
    let found = one(&ng, args.reference.as_deref()).await?;
    // The daemon replays the whole record at once; buildx's printer, which draws on a timer,
    // then shows each step whole (its name, statuses, logs, `DONE`) in the order steps first
    // appeared. The events are regrouped the same way.
    let mut statuses = Vec::new();
    let mut events: Vec<kbx_buildkit::ProgressEvent> = Vec::new();
    let result = found
        .client
        .history_logs(&found.record.build_ref, |status, evs| {
            statuses.push(status.clone());
            events.extend_from_slice(evs);
        })
        .await;
    if mode == progress::Mode::Plain {
        // Steps in the order they first completed on the daemon's clock (buildx's printer sorts
        // the finished steps of one print so, and the replay reaches it as one print), steps
        // without a completion in the order they first appeared.
        let mut order: Vec<String> = Vec::new();
        let mut first_done: std::collections::HashMap<String, std::time::SystemTime> =
            std::collections::HashMap::new();
        for v in statuses.iter().flat_map(|s| &s.vertexes) {
            if !order.contains(&v.digest) {
                order.push(v.digest.clone());
            }
            if let Some(t) = v.completed {
                let e = first_done.entry(v.digest.clone()).or_insert(t);
                *e = (*e).min(t);
            }
        }
        for ev in &events {
            if !order.iter().any(|d| d == ev.digest()) {
                order.push(ev.digest().to_owned());
            }
        }
        // Stable: ties and steps without a completion keep their first appearance.
        order.sort_by(|a, b| match (first_done.get(a), first_done.get(b)) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        // One print per step, in that order: each step's events are applied together (a step
        // the daemon ran twice prints once, with both runs' time) at a moment past the
        // printer's rate limit.
        let mut renderer = kbx_buildkit::PlainRenderer::new(std::io::stderr());
        let start = std::time::Instant::now();
        let mut at = start;
        for digest in &order {
            let group: Vec<kbx_buildkit::ProgressEvent> = events
                .iter()
                .filter(|ev| ev.digest() == digest)
                .cloned()
                .collect();
            at += std::time::Duration::from_millis(200);
            let _ = renderer.update_at(&group, at);
        }
        let _ = renderer.finish();
        return result.map_err(history_error);
    }
    let mut printer = Printer::new(mode);
    {
        for s in &statuses {
            printer.update(s, &[]);
        }
    }
    printer.finish();
    result.map_err(history_error)
}

async fn rm(args: HistoryRmArgs, builder: Option<String>) -> Result<(), Error> {
    if args.refs.is_empty() && !args.all {
        return Err(Error::msg("rm requires at least one argument"));
    }
    if !args.refs.is_empty() && args.all {
        return Err(Error::msg(
            "rm requires either --all or at least one argument",
        ));
    }
    let ng = builders::load(builder.as_deref())?;
    let clients = node_clients(&ng).await?;
    if args.all {
        for (_, client) in &clients {
            for r in client.history(None).await.map_err(history_error)? {
                if r.completed_at.is_some() {
                    client
                        .delete_history(&r.build_ref)
                        .await
                        .map_err(history_error)?;
                }
            }
        }
        return Ok(());
    }
    // As buildx: a reference is removed when one node knows it; otherwise every node's
    // error is reported.
    let mut errors = Vec::new();
    for reference in &args.refs {
        let mut failed = Vec::new();
        for (_, client) in &clients {
            match client.delete_history(reference).await {
                Ok(()) => {
                    failed.clear();
                    break;
                }
                Err(e) => failed.push(history_error(e).to_string()),
            }
        }
        errors.extend(failed);
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(Error::msg(errors.remove(0))),
        n => Err(Error::msg(format!(
            "{n} errors occurred:\n\t* {}\n\n",
            errors.join("\n\t* ")
        ))),
    }
}

/// Writes the local state of a build kbx ran, as buildx does, so `history` can name it.
pub(crate) fn save_build_state(
    builder: &str,
    node: &str,
    build_ref: &str,
    context: &Path,
    dockerfile: Option<&Path>,
    target: Option<&str>,
) {
    let abs = |p: &Path| -> String {
        if p.as_os_str() == "-" {
            return "-".to_owned();
        }
        std::path::absolute(p)
            .map(|p| go_clean(&p.to_string_lossy()))
            .unwrap_or_else(|_| p.to_string_lossy().into_owned())
    };
    let state = BuildState {
        target: target.unwrap_or("default").to_owned(),
        local_path: abs(context),
        dockerfile_path: dockerfile.map(abs).unwrap_or_default(),
        group_ref: String::new(),
    };
    // The local state only names records; a build does not fail for it.
    if let Ok(store) = Store::open_default() {
        let _ = store.save_build_state(builder, node, build_ref, &state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn state(local: &str, dockerfile: &str) -> BuildState {
        BuildState {
            target: "default".into(),
            local_path: local.into(),
            dockerfile_path: dockerfile.into(),
            group_ref: String::new(),
        }
    }

    #[test]
    fn build_names_as_buildx() {
        let none = attrs(&[("filename", "Dockerfile")]);
        assert_eq!(build_name(&none, Some(&state("/tmp/ex/ctx", ""))), "ctx");
        assert_eq!(build_name(&none, None), "");
        assert_eq!(
            build_name(
                &attrs(&[("filename", "Dockerfile"), ("target", "final")]),
                Some(&state("/tmp/ex/ctx", ""))
            ),
            "ctx (final)"
        );
        assert_eq!(
            build_name(
                &attrs(&[("build-arg:BUILDKIT_BUILD_NAME", "mine")]),
                Some(&state("/tmp/ex/ctx", ""))
            ),
            "mine"
        );
        // A Dockerfile inside the context: its path from the context's parent.
        assert_eq!(
            build_name(
                &none,
                Some(&state("/tmp/ex/ctx", "/tmp/ex/ctx/sub/app.Dockerfile"))
            ),
            "ctx/sub/app.Dockerfile"
        );
        // Elsewhere: its directory's base and its name.
        assert_eq!(
            build_name(&none, Some(&state("/tmp/ex/ctx", "/srv/df/app.Dockerfile"))),
            "df/app.Dockerfile"
        );
        assert_eq!(build_name(&attrs(&[("target", "t")]), None), "t");
        assert_eq!(
            build_name(&attrs(&[("vcs:source", "https://g/r.git")]), None),
            "https://g/r.git"
        );
    }

    #[test]
    fn durations_refs_and_paths_as_go() {
        assert_eq!(format_duration(Duration::from_millis(361)), "0.4s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m  5s");
        assert_eq!(trim_beginning("abcdef", 4), "..ef");
        assert_eq!(trim_beginning("abc", 4), "abc");
        assert_eq!(
            go_rel(Path::new("/a/b"), Path::new("/a/b/c/d")).unwrap(),
            "c/d"
        );
        assert_eq!(
            go_rel(Path::new("/a/b"), Path::new("/x")).unwrap(),
            "../../x"
        );
        assert_eq!(go_rel(Path::new("/a"), Path::new("/a")).unwrap(), ".");
        assert_eq!(go_join("a/", "../b"), "b");
        assert_eq!(go_base("/x/y/"), "y");
        assert_eq!(grpc_code_name(2), "Unknown");
        assert_eq!(grpc_code_name(99), "Code(99)");
    }

    #[test]
    fn filters_as_buildx_parses_them() {
        let now = SystemTime::now();
        let rec = HistoryRecord {
            build_ref: "abc123".into(),
            frontend: String::new(),
            frontend_attrs: BTreeMap::new(),
            created_at: Some(now - Duration::from_secs(10)),
            completed_at: Some(now - Duration::from_secs(5)),
            error: None,
            num_total_steps: 1,
            num_completed_steps: 1,
            num_cached_steps: 0,
            num_warnings: 0,
            result: None,
            results: BTreeMap::new(),
            current_timestamp: None,
        };
        let m = |f: &str| parse_filter(f, now).map(|m| m(&rec));
        assert!(m("status=completed").unwrap());
        assert!(!m("status=error").unwrap());
        assert!(m("ref=bc1").unwrap());
        assert!(m("ref!=x").unwrap());
        assert!(m("duration>4s").unwrap());
        assert!(!m("duration>6s").unwrap());
        assert!(m("startedAt>1m").unwrap());
        let err = |f: &str| parse_filter(f, now).err().unwrap().to_string();
        assert_eq!(err("nope"), "invalid filter \"nope\"");
        assert_eq!(
            err("status>x"),
            "invalid separator for \"status>x\", expected = or !="
        );
        assert_eq!(
            err("duration=1s"),
            "invalid separator for \"duration=1s\", expected <=, <, >= or >"
        );
        assert_eq!(err("size=1"), "unsupported filter \"size=1\"");
        assert_eq!(err("duration<xs"), "invalid duration xs");
    }
}
