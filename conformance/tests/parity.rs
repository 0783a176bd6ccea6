//! Parity with the real Buildx CLI where no cluster is needed: every `build` flag value in the
//! tables below is given to Buildx (Debian's `docker-buildx`, every version in
//! [`kbx_conformance::buildx::VERSIONS`]) and to kbx's grammar (`kbx-opts`), and the results
//! must be equal: the parsed entries (Buildx's own JSON, from `bake --print`; Buildx 0.29 only,
//! as 0.13 prints the values unparsed) or the error text (Buildx's `ERROR:` line, from `build`
//! with no Engine, which parses its flags first; both versions).
//!
//! kbx prefixes its errors with the flag and the value (deviation C9); the text after that
//! prefix is compared. A case where kbx differs on purpose names its deviation ID.
//!
//! Under `CI=true` a missing Buildx cache is a failure; elsewhere the tests skip with a message.

use std::collections::BTreeMap;
use std::path::Path;

use kbx_conformance::buildx::Buildx;
use kbx_opts::{BuildContext, CacheEntry, ExportEntry, SecretSpec};
use serde_json::{Value, json};

/// Writes a line to stderr (what nextest shows for a test).
fn note(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Every cached Buildx, or `None` (skip) outside CI.
fn buildxes() -> Option<Vec<Buildx>> {
    match Buildx::all() {
        Ok(all) => Some(all),
        Err(e) if !in_ci() => {
            note(&format!("skipping: {e} (CI=true makes this a failure)"));
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// The `build` flags compared, with the bake attribute that holds the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    Output,
    CacheFrom,
    CacheTo,
    Secret,
    BuildContext,
    ShmSize,
    Ulimit,
}

impl Flag {
    fn cli(self) -> &'static str {
        match self {
            Flag::Output => "--output",
            Flag::CacheFrom => "--cache-from",
            Flag::CacheTo => "--cache-to",
            Flag::Secret => "--secret",
            Flag::BuildContext => "--build-context",
            Flag::ShmSize => "--shm-size",
            Flag::Ulimit => "--ulimit",
        }
    }

    fn kbx_name(self) -> &'static str {
        match self {
            Flag::CacheFrom | Flag::CacheTo => "--cache-from/--cache-to",
            other => other.cli(),
        }
    }

    fn bake_key(self) -> &'static str {
        match self {
            Flag::Output => "output",
            Flag::CacheFrom => "cache-from",
            Flag::CacheTo => "cache-to",
            Flag::Secret => "secret",
            Flag::BuildContext => "contexts",
            Flag::ShmSize => "shm-size",
            Flag::Ulimit => "ulimits",
        }
    }

    /// kbx's result for `value`: entries as Buildx's bake JSON writes them, or the error text
    /// after kbx's `FLAG "VALUE": ` prefix.
    fn kbx(self, value: &str) -> Result<Value, String> {
        let strip = |e: kbx_opts::Error| {
            let text = e.to_string();
            let prefix = format!("{} {value:?}: ", self.kbx_name());
            text.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{text:?} does not start with {prefix:?}"))
                .to_owned()
        };
        let attrs = |kind: &str, dest: Option<&str>, attrs: &BTreeMap<String, String>| {
            let mut m: BTreeMap<String, String> = attrs.clone();
            m.insert("type".into(), kind.into());
            if let Some(d) = dest.filter(|d| !d.is_empty()) {
                m.insert("dest".into(), d.into());
            }
            json!(m)
        };
        match self {
            Flag::Output => ExportEntry::parse(value)
                .map(|e| json!([attrs(&e.kind, e.dest.as_deref(), &e.attrs)]))
                .map_err(strip),
            Flag::CacheFrom | Flag::CacheTo => CacheEntry::parse_list(value)
                .map(|list| {
                    Value::Array(
                        list.iter()
                            .map(|e| attrs(&e.kind, None, &e.attrs))
                            .collect(),
                    )
                })
                .map_err(strip),
            Flag::Secret => SecretSpec::parse(value)
                .map(|s| {
                    let mut m = BTreeMap::from([("id".to_owned(), s.id.clone())]);
                    if let Some(src) = &s.src {
                        m.insert("src".into(), src.clone());
                    }
                    if let Some(env) = &s.env {
                        m.insert("env".into(), env.clone());
                    }
                    json!([m])
                })
                .map_err(strip),
            Flag::BuildContext => BuildContext::parse(value)
                .map(|c| json!({ c.name: value.split_once('=').map(|(_, v)| v) }))
                .map_err(strip),
            Flag::ShmSize => kbx_opts::parse_mem_bytes("--shm-size", value)
                .map(|n| json!(n))
                .map_err(strip),
            Flag::Ulimit => kbx_opts::Ulimit::parse(value)
                .map(|u| json!([u.to_string()]))
                .map_err(strip),
        }
    }
}

/// Buildx's error for `flag value`: the last `ERROR:` line of `build` without an Engine.
fn buildx_error(bx: &Buildx, home: &Path, flag: Flag, value: &str) -> Option<String> {
    let out = bx
        .command(home)
        .args(["build", "--progress", "plain", flag.cli(), value, "."])
        .output()
        .expect("run docker-buildx build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("ERROR: "))?;
    // Past the flags, Buildx goes looking for the Engine: that is not a parse error.
    let parse_error = !line.starts_with("Cannot connect to the Docker daemon")
        && !line.contains("no-engine.sock");
    // pflag wraps the errors of typed flags (`--shm-size`, `--ulimit`); kbx's prefix stands
    // in for that (C9).
    let pflag = format!("invalid argument {value:?} for \"{}\" flag: ", flag.cli());
    parse_error.then(|| line.strip_prefix(&pflag).unwrap_or(line).to_owned())
}

/// Buildx's parsed entries for `flag value`, from `bake --print` (the same parsers as `build`).
fn buildx_entries(bx: &Buildx, home: &Path, flag: Flag, value: &str) -> Result<Value, String> {
    let values = match flag {
        Flag::BuildContext => {
            let (k, v) = value
                .split_once('=')
                .expect("contexts in the table have '='");
            json!({ k: v })
        }
        _ => json!([value]),
    };
    let def = json!({ "target": { "t": { "context": ".", flag.bake_key(): values } } });
    std::fs::write(home.join("docker-bake.json"), def.to_string()).expect("write bake file");
    let out = bx
        .command(home)
        .args(["bake", "--progress", "quiet", "--print", "t"])
        .output()
        .expect("run docker-buildx bake");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let printed: Value = serde_json::from_str(&stdout).expect("bake --print gives JSON");
    Ok(printed["target"]["t"][flag.bake_key()].clone())
}

/// Values both tools accept: the entries must be equal.
const ACCEPTED: &[(Flag, &str)] = &[
    (
        Flag::Output,
        r#"type=image,"name=reg/app:1,reg/app:latest",push=true"#,
    ),
    (Flag::Output, " Type=local, DEST= out ,name=a,name=b"),
    (Flag::Output, "out"),
    (Flag::Output, "-"),
    (Flag::Output, "dest=x"),
    (Flag::Output, "type=tar,dest=o.tar"),
    (
        Flag::Output,
        "type=oci,dest=o.tar,compression=zstd,annotation.a=b,oci-mediatypes=true",
    ),
    (Flag::Output, r#"type=local,"dest=a,b""#),
    (Flag::Output, r#"type=image,"name=a""b""#),
    (Flag::CacheFrom, "r/a,r/b"),
    (Flag::CacheFrom, r#"type=local,"src=/c,d",Mode=max"#),
    (Flag::CacheFrom, "type=registry,ref=r/c"),
    (Flag::CacheFrom, r#""r/a""#),
    (Flag::CacheTo, "type=inline"),
    (
        Flag::CacheTo,
        "type=registry,ref=r/c,mode=max,image-manifest=true",
    ),
    (Flag::Secret, "id=a,src=SRC_COMMA"),
    (Flag::Secret, "ID=t,Source=SRC_PLAIN"),
    (Flag::Secret, "id=t,type=env,src=GH_TOKEN"),
    (Flag::Secret, "id=t,env=V"),
    (Flag::BuildContext, "base=docker-image://busybox:1.36"),
    (Flag::BuildContext, "lib=../lib"),
];

/// What kbx's text is expected to be, next to Buildx's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The same as every Buildx version's.
    Same,
    /// Different on purpose: the deviation ID in `docs/deviations.md`.
    Deviation(&'static str),
    /// The same as Buildx 0.29's; Buildx 0.13 (Go's `encoding/csv` before `go-csvvalue`)
    /// counts CSV error columns differently or lets an empty cache reference through.
    AsNewest,
}

/// Values both tools refuse: the texts must be equal, or the case says why not.
const REFUSED: &[(Flag, &str, Expect)] = &[
    (Flag::Output, "dest=x,push=true", Expect::Same),
    (Flag::Output, "type=local,dest", Expect::Same),
    (Flag::Output, r#"type=local,dest="x"#, Expect::Same),
    (Flag::Output, r#""abc"#, Expect::AsNewest),
    (Flag::Output, r#""a"b"#, Expect::Same),
    (Flag::CacheFrom, "type=local,x", Expect::Same),
    (Flag::CacheFrom, "r/a,", Expect::AsNewest),
    // Buildx formats the value through its HCL type ("form> …"); kbx writes `for "…"`.
    (Flag::CacheFrom, "ref=r/a", Expect::Deviation("C9")),
    (Flag::CacheTo, "mode=max,ref=r/a", Expect::Deviation("C9")),
    (Flag::Secret, "id=a,type=ssh", Expect::Same),
    (Flag::Secret, "id=a,src", Expect::Same),
    (Flag::Secret, r#"id=a,"src"#, Expect::AsNewest),
    (Flag::Secret, "id=a,mode=0400", Expect::Same),
    (Flag::BuildContext, "noequals", Expect::Same),
    (Flag::BuildContext, "Alpine=x", Expect::Same),
    (Flag::BuildContext, "docker.io/Me/App:1=x", Expect::Same),
    (Flag::BuildContext, "ghcr.io/O/r=x", Expect::Same),
    // go-units' sizes and ulimits, behind pflag's `invalid argument "V" for "--F" flag: `
    // (Buildx 0.13 links an older go-units whose sizes fail with `invalid size` only).
    (Flag::ShmSize, "64q", Expect::AsNewest),
    (Flag::ShmSize, "m", Expect::Same),
    (Flag::ShmSize, "-5", Expect::Same),
    (Flag::ShmSize, "1.2.3", Expect::AsNewest),
    (Flag::ShmSize, "5kibb", Expect::AsNewest),
    (Flag::ShmSize, "1e999", Expect::AsNewest),
    (Flag::Ulimit, "nofile", Expect::Same),
    (Flag::Ulimit, "files=1", Expect::Same),
    (Flag::Ulimit, "nofile=x", Expect::Same),
    (Flag::Ulimit, "nofile=infinity", Expect::Same),
    (Flag::Ulimit, "nofile=1:2:3", Expect::Same),
    (Flag::Ulimit, "nofile=2048:1024", Expect::Same),
    (Flag::Ulimit, "nofile=-1:5", Expect::Same),
];

/// The placeholders in [`ACCEPTED`] are secret files Buildx must be able to stat.
fn with_files(value: &str, home: &Path) -> String {
    let comma = home.join("dir,with,comma");
    std::fs::create_dir_all(&comma).expect("mkdir");
    std::fs::write(comma.join("s"), "x").expect("write");
    std::fs::write(home.join("plain"), "x").expect("write");
    value
        .replace(
            "src=SRC_COMMA",
            &format!("\"src={}\"", comma.join("s").display()),
        )
        .replace("SRC_PLAIN", &home.join("plain").display().to_string())
}

#[test]
fn accepted_flag_values_parse_as_buildx_parses_them() {
    let Some(all) = buildxes() else { return };
    let mut differences = Vec::new();
    // Buildx 0.13's `bake --print` shows the values as typed, before parsing them.
    for bx in all.iter().filter(|b| b.version != "0.13.1") {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::write(home.path().join("Dockerfile"), "FROM scratch\n").expect("Dockerfile");
        for &(flag, value) in ACCEPTED {
            let value = with_files(value, home.path());
            let theirs = buildx_entries(bx, home.path(), flag, &value);
            let ours = flag.kbx(&value);
            match (&theirs, &ours) {
                (Ok(t), Ok(o)) if t == o => {}
                _ => differences.push(format!(
                    "buildx {} {} {value:?}:\n  buildx: {theirs:?}\n  kbx:    {ours:?}",
                    bx.version,
                    flag.cli()
                )),
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn refused_flag_values_give_buildx_errors() {
    let Some(all) = buildxes() else { return };
    let mut differences = Vec::new();
    for bx in &all {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::write(home.path().join("Dockerfile"), "FROM scratch\n").expect("Dockerfile");
        for &(flag, value, expect) in REFUSED {
            let theirs = buildx_error(bx, home.path(), flag, value);
            let ours = flag.kbx(value).err();
            let same = theirs.is_some() && theirs == ours;
            let newest = bx.version == kbx_conformance::buildx::VERSIONS[0];
            let ok = match expect {
                Expect::Same => same,
                Expect::AsNewest => same || (!newest && ours.is_some()),
                Expect::Deviation(id) => {
                    if !same && theirs.is_some() && ours.is_some() {
                        note(&format!(
                            "{} {} {value:?}: differs as deviation {id} says\n  buildx: {theirs:?}\n  kbx:    {ours:?}",
                            bx.version,
                            flag.cli()
                        ));
                    }
                    !same && theirs.is_some() && ours.is_some()
                }
            };
            if !ok {
                differences.push(format!(
                    "buildx {} {} {value:?} ({expect:?}):\n  buildx: {theirs:?}\n  kbx:    {ours:?}",
                    bx.version,
                    flag.cli()
                ));
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// A kubeconfig that names a namespace and a server nothing listens on: enough for `create`
/// without `--bootstrap`, which checks its options and stores the builder.
fn offline_kubeconfig(home: &Path) -> std::path::PathBuf {
    let path = home.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:9\"}}]\n\
         users: [{name: u, user: {token: x}}]\n\
         contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]\ncurrent-context: x\n",
    )
    .expect("write kubeconfig");
    path
}

/// Why kbx's error for a corpus case may differ from Buildx 0.29.1's: a text that starts kbx's
/// message, or one that starts Buildx's, and the deviation ID in `docs/deviations.md`.
const CORPUS_DEVIATIONS: &[(Side, &str, &str)] = &[
    // v0.34 (which kbx follows) parses replicas with ParseInt(…, 32); 0.29.1 with Atoi.
    (Side::Kbx, "strconv.ParseInt: parsing ", "V1"),
    (Side::Kbx, "invalid toleration ", "O3"),
    (Side::Kbx, "invalid replicas ", "O5"),
    (Side::Kbx, "invalid timeout ", "O6"),
    // Options newer than 0.29.1.
    (
        Side::Buildx,
        "invalid driver option persistent-volume-claim.",
        "V2",
    ),
];

/// Which tool's message a [`CORPUS_DEVIATIONS`] entry looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Kbx,
    Buildx,
}

/// Every bad-input case of the `create` corpus that expects exactly one error: Buildx's error
/// for the same arguments (without its `failed to initialize builder NAME (NODE): ` prefix)
/// equals kbx's, which `kbx-opts`' corpus test pins.
#[test]
fn create_corpus_errors_are_buildx_errors() {
    let Some(all) = buildxes() else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/driver-opts");
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/driver-opts")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read corpus");
        let mut input: Option<String> = None;
        let mut errors: Vec<String> = Vec::new();
        let mut accepted = false;
        let mut flush =
            |input: &mut Option<String>, errors: &mut Vec<String>, accepted: &mut bool| {
                if let (Some(i), [one], false) = (input.take(), errors.as_slice(), *accepted) {
                    cases.push((i, one.clone()));
                }
                errors.clear();
                *accepted = false;
            };
        for line in text.lines() {
            if let Some(e) = line.strip_prefix("  error: ") {
                errors.push(e.to_owned());
            } else if line.starts_with("  ") {
                accepted = true; // `ok:`/`platforms:` lines: part of it was accepted
            } else {
                flush(&mut input, &mut errors, &mut accepted);
                if !line.trim().is_empty() && !line.starts_with('#') {
                    input = Some(line.to_owned());
                }
            }
        }
        flush(&mut input, &mut errors, &mut accepted);
    }
    assert!(
        cases.len() > 20,
        "only {} single-error cases found",
        cases.len()
    );
    let mut differences = Vec::new();
    let mut compared = 0;
    for bx in all
        .iter()
        .filter(|b| b.version == kbx_conformance::buildx::VERSIONS[0])
    {
        for (input, ours) in &cases {
            let home = tempfile::tempdir().expect("tempdir");
            let kubeconfig = offline_kubeconfig(home.path());
            let words = kbx_opts::split_shell_words(input).expect("corpus lines are shell words");
            let out = bx
                .command(home.path())
                .env("KUBECONFIG", &kubeconfig)
                .args(["create", "--name", "t", "--driver", "kubernetes"])
                .args(&words)
                .output()
                .expect("run docker-buildx create");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let theirs = stderr
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("ERROR: "))
                .map(|l| {
                    l.strip_prefix("failed to initialize builder t (t0): ")
                        .unwrap_or(l)
                        .to_owned()
                });
            compared += 1;
            let deviation = CORPUS_DEVIATIONS
                .iter()
                .find(|(side, prefix, _)| match side {
                    Side::Kbx => ours.starts_with(prefix),
                    Side::Buildx => theirs.as_deref().is_some_and(|t| t.starts_with(prefix)),
                })
                .map(|(_, _, id)| *id);
            match (theirs.as_deref() == Some(ours.as_str()), deviation) {
                (true, None) => {}
                (false, Some(id)) => note(&format!(
                    "{input}: differs as deviation {id} says\n  buildx: {theirs:?}\n  kbx:    {ours:?}"
                )),
                (same, _) => differences.push(format!(
                    "buildx {} create {input} ({}):\n  buildx: {theirs:?}\n  kbx:    {ours:?}",
                    bx.version,
                    if same {
                        "same, but listed as a deviation"
                    } else {
                        "differs"
                    }
                )),
            }
        }
    }
    note(&format!("{compared} single-error create cases compared"));
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// A builder record kbx writes with its own options (`context=`, `loadbalance=rendezvous`) is
/// one Buildx lists without `invalid driver option` (those options are kept where Buildx does
/// not read them), for every Buildx version.
#[test]
fn buildx_lists_a_builder_with_kbx_only_options() {
    let Some(all) = buildxes() else { return };
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/store/buildx-kube.json");
    let mut ng = kbx_store::NodeGroup::from_json(&std::fs::read(fixture).expect("fixture"))
        .expect("fixture parses");
    ng.name = "kbxonly".into();
    let opts = ng.nodes.as_mut().expect("nodes")[0]
        .driver_opts
        .get_or_insert_with(Default::default);
    opts.insert("context".into(), "x".into());
    opts.insert("loadbalance".into(), "rendezvous".into());
    for bx in &all {
        let home = tempfile::tempdir().expect("tempdir");
        let kubeconfig = offline_kubeconfig(home.path());
        let instances = home.path().join("buildx/instances");
        std::fs::create_dir_all(&instances).expect("mkdir");
        std::fs::write(instances.join("kbxonly"), ng.to_json()).expect("write record");
        let out = bx
            .command(home.path())
            .env("KUBECONFIG", &kubeconfig)
            .arg("ls")
            .output()
            .expect("run docker-buildx ls");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("kbxonly"),
            "buildx {} ls:\n{text}",
            bx.version
        );
        assert!(
            !text.contains("invalid driver option"),
            "buildx {} ls:\n{text}",
            bx.version
        );
    }
}
