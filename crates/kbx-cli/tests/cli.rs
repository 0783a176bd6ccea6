//! The `kbx` binary as a user runs it: bad input, exact texts, exit codes, the store it writes
//! and `--dry-run` output. Cluster scenarios live in the conformance suite, Docker Engine and
//! remote BuildKit scenarios in `tests/drivers.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A home whose `~/.kube/config` names an API server nobody listens on (see
    /// [`Env::kubeconfig`]): `create` accepts it, and every cluster request is refused.
    fn new() -> Self {
        let env = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let kube = env.dir.path().join(".kube");
        std::fs::create_dir_all(&kube).expect("create ~/.kube");
        std::fs::copy(env.kubeconfig(), kube.join("config")).expect("write ~/.kube/config");
        env
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("buildx")
    }

    /// `unix://…` of a socket nobody listens on: no Docker Engine is reachable.
    fn docker_host(&self) -> String {
        format!("unix://{}/no-docker.sock", self.dir.path().display())
    }

    /// A kubeconfig whose API server (`https://127.0.0.1:9`) nobody listens on: kbx can build
    /// a client from it, and every request fails with "connection refused".
    fn kubeconfig(&self) -> String {
        let path = self.dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:9\"}\ncontexts:\n- name: c\n  context: {cluster: c, user: u, namespace: ns}\nusers:\n- name: u\n  user: {token: x}\ncurrent-context: c\n",
        )
        .expect("write kubeconfig");
        path.to_str().expect("utf-8 path").to_owned()
    }

    /// `kbx` with `KUBECONFIG` set to [`Env::kubeconfig`].
    fn kbx_kube(&self, args: &[&str]) -> Output {
        let kubeconfig = self.kubeconfig();
        self.kbx_env(args, &[("KUBECONFIG", &kubeconfig)])
    }

    fn kbx(&self, args: &[&str]) -> Output {
        self.kbx_env(args, &[])
    }

    /// `kbx` with extra environment variables.
    fn kbx_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kbx"))
            .args(args)
            .env_clear()
            .env("HOME", self.dir.path())
            .env("BUILDX_CONFIG", self.store())
            .env("DOCKER_HOST", self.docker_host())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(vars.iter().copied())
            .output()
            .expect("kbx runs")
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails_with(o: &Output, text: &str) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    assert_eq!(stderr(o), text);
}

#[test]
fn bad_driver_options_are_all_reported() {
    let env = Env::new();
    let o = env.kbx(&[
        "create",
        "--name",
        "kube",
        "--driver",
        "kubernetes",
        "--driver-opt",
        "replicas=x,foo=1",
        "--driver-opt",
        "timeout=5",
    ]);
    fails_with(
        &o,
        concat!(
            "ERROR: 3 driver options are invalid:\n  - strconv.ParseInt: parsing \"x\": invalid syntax\n  - invalid driver option foo for driver kubernetes\n  - cannot parse timeout: time: missing unit in duration \"5\"\n",
            "hint: --driver-opt replicas: expected a whole number such as 1 or 3\n",
            "hint: --driver-opt foo: expected one of image, namespace, context, replicas, requests.cpu, requests.memory, requests.ephemeral-storage, limits.cpu, limits.memory, limits.ephemeral-storage, persistent-volume-claim.requests.storage, buildkit-root-volume-memory, rootless, schedulername, serviceaccount, nodeselector, annotations, labels, tolerations, loadbalance, qemu.install, qemu.image, default-load, timeout, env.<NAME>\n",
            "hint: --driver-opt timeout: expected a positive duration with a unit, such as 300s, 1m30s, 1.5h or 500ms\n",
        ),
    );
    assert!(
        !env.store().join("instances/kube").exists(),
        "nothing saved"
    );

    let o = env.kbx(&[
        "create",
        "--name",
        "kube",
        "--driver-opt",
        "nodeselector=\"a=b,c=d\"",
    ]);
    fails_with(
        &o,
        "ERROR: parse error on line 1, column 14: bare \" in non-quoted-field\n",
    );
}

#[test]
fn objects_the_api_server_would_reject_fail_before_saving() {
    let env = Env::new();
    let o = env.kbx(&[
        "create",
        "--name",
        "kube",
        "--driver-opt",
        "labels=app=x,namespace=Bad_NS",
    ]);
    fails_with(
        &o,
        "ERROR: failed to initialize builder kube (kube0)\n  caused by: 2 problems would make the API server reject the objects:\n  - invalid namespace name \"Bad_NS\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character\n  - the label \"app\" is reserved and cannot be customized\n",
    );
    assert!(!env.store().join("instances/kube").exists());
}

#[test]
fn create_flag_errors_use_buildx_texts() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["create", "--append"],
            "ERROR: append requires a builder name\n",
        ),
        (
            &[
                "create",
                "--name",
                "kube",
                "--driver",
                "kubernetes",
                "tcp://1.2.3.4:1234",
            ],
            "ERROR: kubernetes driver does not support endpoint args \"tcp://1.2.3.4:1234\"\n",
        ),
        (
            &["create", "--name", "default"],
            "ERROR: default is a reserved name and cannot be used to identify builder instance\n",
        ),
        (
            &["create", "--name", "1kube"],
            "ERROR: invalid name 1kube, name needs to start with a letter and may not contain symbols, except ._-\n",
        ),
        (
            &["create", "--name", "kube", "--append"],
            "ERROR: failed to find instance \"kube\" for append\n",
        ),
        (
            &["create", "--leave", "--node", "n"],
            "ERROR: leave requires instance name\n",
        ),
        (
            &["create", "--leave", "--name", "kube"],
            "ERROR: leave requires node name\n",
        ),
        (
            &["create", "--leave", "--name", "kube", "--node", "n"],
            "ERROR: failed to find instance \"kube\" for leave\n",
        ),
        (
            &["create", "--name", "kube", "--platform", "linux/amd64/v2/x"],
            "ERROR: \"linux/amd64/v2/x\": cannot parse platform specifier: invalid argument\n",
        ),
        (
            &["create", "--name", "kube", "--buildkitd-flags", "foo'"],
            "ERROR: failed to parse buildkit flags: EOF found when expecting closing quote\n",
        ),
    ];
    for (args, text) in cases {
        fails_with(&env.kbx(args), text);
    }
    let o = env.kbx(&["create", "--name", "kube", "--driver", "docker-container"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("driver \"docker-container\" is not supported"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    let o = env.kbx(&["create", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let o = env.kbx(&["create", "--timeout", "10"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("missing unit in duration"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn create_writes_a_buildx_record_and_manages_nodes() {
    let env = Env::new();
    let o = env.kbx(&[
        "create",
        "--name",
        "kube",
        "--node",
        "kube_amd64",
        "--platform",
        "linux/amd64",
        "--driver-opt",
        "namespace=buildkit,replicas=2",
        "--use",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "kube\n");
    let record = std::fs::read_to_string(env.store().join("instances/kube")).unwrap();
    assert_eq!(
        record,
        "{\"Name\":\"kube\",\"Driver\":\"kubernetes\",\"Nodes\":[{\"Name\":\"kube_amd64\",\"Endpoint\":\"kubernetes:///kube?deployment=kube_amd64\\u0026kubeconfig=\",\"Platforms\":[{\"architecture\":\"amd64\",\"os\":\"linux\"}],\"DriverOpts\":{\"namespace\":\"buildkit\",\"replicas\":\"2\"},\"Flags\":[\"--allow-insecure-entitlement=network.host\"],\"Files\":null}],\"Dynamic\":false}"
    );
    let current = std::fs::read_to_string(env.store().join("current")).unwrap();
    assert_eq!(
        current,
        format!(
            "{{\"Key\":\"{}\",\"Name\":\"kube\",\"Global\":false}}",
            env.docker_host()
        )
    );

    let o = env.kbx(&["create", "--name", "kube"]);
    fails_with(
        &o,
        "ERROR: existing instance for \"kube\" but no append mode, specify the node name to make changes for existing instances\n",
    );
    let o = env.kbx(&["create", "--name", "kube", "--node", "other"]);
    fails_with(&o, "ERROR: node other not found, did you mean to append?\n");

    let o = env.kbx(&[
        "create",
        "--name",
        "kube",
        "--append",
        "--node",
        "kube_arm64",
        "--platform",
        "linux/arm64",
        "--driver-opt",
        "namespace=buildkit,\"nodeselector=kubernetes.io/arch=arm64\"",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // `--append` naming an existing node updates it, as buildx does.
    let o = env.kbx(&[
        "create",
        "--name",
        "kube",
        "--append",
        "--node",
        "kube_arm64",
        "--platform",
        "linux/arm64,linux/arm",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("WARNING: new settings"),
        "{}",
        stderr(&o)
    );

    let o = env.kbx(&["ls", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(json["Name"], "kube");
    assert_eq!(json["Current"], true);
    assert_eq!(
        json["Nodes"][1]["Platforms"],
        serde_json::json!(["linux/arm64", "linux/arm/v7"])
    );
    assert_eq!(
        json["Nodes"][0]["Status"], "inactive",
        "no cluster listens here: {json}"
    );

    let o = env.kbx(&[
        "create",
        "--name",
        "kube",
        "--leave",
        "--node",
        "kube_arm64",
        "--keep-daemon",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.kbx(&[
        "create",
        "--name",
        "kube",
        "--leave",
        "--node",
        "kube_amd64",
        "--keep-daemon",
    ]);
    fails_with(
        &o,
        "ERROR: can not leave last node, do you want to rm instance instead?\n",
    );

    let o = env.kbx(&["use", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    let o = env.kbx(&["rm", "kube", "--keep-daemon"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "kube removed\n");
    assert!(!env.store().join("instances/kube").exists());
}

#[test]
fn rm_keeps_the_record_when_the_cluster_cannot_be_reached() {
    let env = Env::new();
    assert!(
        env.kbx(&[
            "create",
            "--name",
            "kube",
            "--driver-opt",
            "namespace=buildkit"
        ])
        .status
        .success()
    );
    let o = env.kbx(&["rm", "kube"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("failed to remove kube: failed to remove node kube0: "),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("Connection refused"), "{}", stderr(&o));
    assert!(
        env.store().join("instances/kube").exists(),
        "not orphaned: the record stays"
    );
}

#[test]
fn dry_run_prints_the_objects_and_saves_nothing() {
    let env = Env::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cli");
    std::fs::write(env.dir.path().join("buildkitd.toml"), "debug = true\n").unwrap();
    let config = env.dir.path().join("buildkitd.toml");
    let o = env.kbx(&[
        "create",
        "--name",
        "kube",
        "--node",
        "kube_amd64",
        "--platform",
        "linux/amd64",
        "--driver-opt",
        "namespace=buildkit,replicas=2,requests.cpu=500m,limits.memory=4Gi",
        "--driver-opt",
        "\"tolerations=key=dedicated,operator=Equal,value=ci,effect=NoSchedule\"",
        "--buildkitd-config",
        config.to_str().unwrap(),
        "--dry-run",
        "-o",
        "yaml",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected_path = fixtures.join("dry-run-deployment.yaml");
    if std::env::var_os("KBX_BLESS").is_some() {
        std::fs::write(&expected_path, stdout(&o)).unwrap();
    }
    let expected =
        std::fs::read_to_string(&expected_path).expect("fixture (KBX_BLESS=1 writes it)");
    assert_eq!(stdout(&o), expected);
    assert!(
        !env.store().join("instances/kube").exists(),
        "a dry run saves nothing"
    );
}

#[test]
fn version_and_completion() {
    let env = Env::new();
    let o = env.kbx(&["version"]);
    assert!(stdout(&o).starts_with("kbx 0."), "{}", stdout(&o));
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = env.kbx(&["completion", shell]);
        assert!(o.status.success(), "{shell}");
        // The script asks kbx itself for completions.
        assert!(stdout(&o).contains("COMPLETE"), "{shell}: {}", stdout(&o));
    }
}

/// Completions name the stored builders (and `default`) for `--builder`, `use`, `rm` and
/// `inspect`, and the drivers for `create --driver`, as the shell gets them from
/// `COMPLETE=SHELL kbx -- ARGS…`.
#[test]
fn completions_offer_builder_and_driver_names() {
    let env = Env::new();
    for name in ["alpha", "beta"] {
        let o = env.kbx(&["create", "--name", name, "tcp://127.0.0.1:1"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let complete = |line: &[&str]| -> Vec<String> {
        let mut args = vec!["--", "kbx"];
        args.extend_from_slice(line);
        let o = env.kbx_env(&args, &[("COMPLETE", "fish")]);
        assert!(o.status.success(), "{line:?}: {}", stderr(&o));
        stdout(&o)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
            .filter(|v| !v.starts_with('-'))
            .collect()
    };
    let builders = ["alpha", "beta", "default"];
    assert_eq!(complete(&["use", ""]), builders);
    assert_eq!(complete(&["inspect", ""]), builders);
    assert_eq!(complete(&["rm", "alpha", ""]), builders);
    assert_eq!(complete(&["--builder", ""]), builders);
    assert_eq!(complete(&["ls", "--builder", "b"]), ["beta"]);
    let o = env.kbx_env(
        &["--", "kbx", "build", "--builder="],
        &[("COMPLETE", "fish")],
    );
    assert_eq!(
        stdout(&o),
        "--builder=alpha\n--builder=beta\n--builder=default\n"
    );
    assert_eq!(
        complete(&["create", "--driver", ""]),
        ["kubernetes", "remote"]
    );
    // Without COMPLETE, `--` and the words after it are an ordinary command line.
    let o = env.kbx(&["--", "kbx", "use", ""]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `--ssh ID=KEYFILE` keys are read before the build starts: a passphrase-protected key with no
/// terminal to ask on and a file that is no key fail naming the file; a PEM key is accepted.
#[test]
fn ssh_key_files_are_read_before_the_build() {
    let have_keygen = Command::new("ssh-keygen").arg("-?").output().is_ok();
    if !have_keygen {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "openssh-client is needed (CI=true, so this is a failure)"
        );
        eprintln!("SKIP: openssh-client not installed");
        return;
    }
    let env = Env::new();
    let keygen = |name: &str, args: &[&str]| {
        let path = env.dir.path().join(name);
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-f"])
            .arg(&path)
            .args(args)
            .status()
            .expect("ssh-keygen")
            .success();
        assert!(ok, "ssh-keygen {name}");
        path.display().to_string()
    };
    let locked = keygen("id_locked", &["-N", "kbx-pass"]);
    let o = env.kbx(&["build", "--ssh", &format!("git={locked}"), "."]);
    fails_with(
        &o,
        &format!(
            "ERROR: --ssh key {locked}: the key is passphrase-protected and no passphrase was read: stdin is not a terminal to ask for the passphrase on\n"
        ),
    );
    let junk = env.dir.path().join("junk");
    std::fs::write(&junk, "not a key").expect("write");
    let o = env.kbx(&["build", "--ssh", &format!("git={}", junk.display()), "."]);
    fails_with(
        &o,
        &format!(
            "ERROR: invalid build options: --ssh key {}: not a private key file (no PEM block)\n",
            junk.display()
        ),
    );
    // A good PEM key gets the build as far as the (missing) builder.
    let pem = keygen("id_pem", &["-N", "", "-m", "PEM"]);
    let o = env.kbx(&[
        "build",
        "--ssh",
        &format!("git={pem}"),
        "--builder",
        "nope",
        ".",
    ]);
    fails_with(&o, "ERROR: no builder \"nope\" found\n");
}

/// On a terminal, `kbx build` asks for the passphrase of a protected `--ssh` key with echo
/// turned off, and uses the answer: the right one gets the build as far as the (missing)
/// builder, a wrong one fails naming the file.
#[test]
fn ssh_key_passphrases_are_asked_on_the_terminal() {
    use nix::sys::termios::{LocalFlags, tcgetattr};
    use std::io::{Read, Write};
    let have_keygen = Command::new("ssh-keygen").arg("-?").output().is_ok();
    if !have_keygen {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "openssh-client is needed (CI=true, so this is a failure)"
        );
        eprintln!("SKIP: openssh-client not installed");
        return;
    }
    let env = Env::new();
    let key = env.dir.path().join("id_locked");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "kbx-pass", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok);
    for (answer, expected) in [
        ("kbx-pass", "ERROR: no builder \"nope\" found".to_owned()),
        (
            "not-it",
            format!(
                "ERROR: invalid build options: --ssh key {}: wrong passphrase",
                key.display()
            ),
        ),
    ] {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = |p: &nix::pty::OpenptyResult| {
            std::process::Stdio::from(p.slave.try_clone().expect("dup pty"))
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_kbx"))
            .args(["build", "--builder", "nope", "--ssh"])
            .arg(format!("git={}", key.display()))
            .arg(".")
            .env_clear()
            .env("HOME", env.dir.path())
            .env("BUILDX_CONFIG", env.store())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(slave(&pty))
            .stdout(slave(&pty))
            .stderr(slave(&pty))
            .spawn()
            .expect("kbx runs");
        let nix::pty::OpenptyResult { master, slave } = pty;
        drop(slave);
        let mut term = std::fs::File::from(master);
        let mut seen = Vec::new();
        let prompt = format!("Enter passphrase for {}: ", key.display());
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains(&prompt) {
            match term.read(&mut buf) {
                Ok(0) | Err(_) => panic!("no prompt: {:?}", String::from_utf8_lossy(&seen)),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        // The prompt comes just before echo is turned off; wait for that (with a deadline),
        // since input typed before it would be flushed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while tcgetattr(&term)
            .expect("tcgetattr")
            .local_flags
            .contains(LocalFlags::ECHO)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "echo never turned off"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        term.write_all(format!("{answer}\n").as_bytes())
            .expect("type passphrase");
        // Read until kbx exits and the terminal hangs up (EIO).
        while let Ok(n) = term.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let status = child.wait().expect("wait");
        let seen = String::from_utf8_lossy(&seen);
        assert_eq!(status.code(), Some(1), "{seen}");
        assert!(seen.contains(&expected), "{seen}");
        assert!(!seen.contains(answer), "the passphrase was echoed: {seen}");
    }
}

#[test]
fn build_input_errors() {
    let env = Env::new();
    // --push joins the outputs (with --load, or next to -o) as in buildx; it needs a tag.
    let o = env.kbx(&["build", "--push", "--load", "."]);
    fails_with(&o, "ERROR: tag is needed when pushing to registry\n");
    let o = env.kbx(&["build", "-o", "type=local,dest=out", "--push", "."]);
    fails_with(&o, "ERROR: tag is needed when pushing to registry\n");
    let o = env.kbx(&[
        "build",
        "--build-arg",
        "NOT_SET_ANYWHERE",
        "-o",
        "type=local,dest=out",
        ".",
    ]);
    fails_with(
        &o,
        "ERROR: invalid --build-arg \"NOT_SET_ANYWHERE\": expected KEY=VALUE\n",
    );
    // No builder selected: the Docker Engine's `default` builder, which is not running here.
    let o = env.kbx(&["build", "-o", "type=local,dest=out", "."]);
    fails_with(
        &o,
        &format!(
            "ERROR: Cannot connect to the Docker daemon at {}. Is the docker daemon running?\nhint: the `default` builder and --load use the Docker Engine; start Docker, set DOCKER_HOST, pick another builder with --builder NAME or `kbx use NAME`, or write the image with -o type=docker,dest=FILE\n",
            env.docker_host()
        ),
    );
    let o = env.kbx(&[
        "build",
        "--builder",
        "nope",
        "-o",
        "type=local,dest=out",
        ".",
    ]);
    fails_with(&o, "ERROR: no builder \"nope\" found\n");
}

#[test]
fn build_progress_modes_and_buildkit_progress() {
    let env = Env::new();
    let no_builder = &format!(
        "ERROR: Cannot connect to the Docker daemon at {}. Is the docker daemon running?\nhint: the `default` builder and --load use the Docker Engine; start Docker, set DOCKER_HOST, pick another builder with --builder NAME or `kbx use NAME`, or write the image with -o type=docker,dest=FILE\n",
        env.docker_host()
    );
    // Every buildx mode parses; the build then stops at the unreachable default builder.
    for mode in ["auto", "plain", "rawjson", "quiet", "none"] {
        let o = env.kbx(&[
            "build",
            "--progress",
            mode,
            "-o",
            "type=local,dest=out",
            ".",
        ]);
        fails_with(&o, no_builder);
    }
    // stderr is a pipe here: an explicit tty fails before anything else, as buildx.
    let not_console = "ERROR: failed to get console: provided file is not a console\n";
    let o = env.kbx(&["build", "--progress", "tty", "."]);
    fails_with(&o, not_console);
    // BUILDKIT_PROGRESS is the default ...
    let o = env.kbx_env(&["build", "."], &[("BUILDKIT_PROGRESS", "tty")]);
    fails_with(&o, not_console);
    // ... and the flag wins over it.
    let o = env.kbx_env(
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            "type=local,dest=out",
            ".",
        ],
        &[("BUILDKIT_PROGRESS", "tty")],
    );
    fails_with(&o, no_builder);
    let o = env.kbx_env(
        &["build", "-o", "type=local,dest=out", "."],
        &[("BUILDKIT_PROGRESS", "rawjson")],
    );
    fails_with(&o, no_builder);
    // Unknown values are usage errors naming the valid ones, from the flag or the variable.
    for o in [
        env.kbx(&["build", "--progress", "fancy", "."]),
        env.kbx_env(&["build", "."], &[("BUILDKIT_PROGRESS", "fancy")]),
    ] {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("invalid value 'fancy'"), "{err}");
        assert!(
            err.contains("[possible values: auto, tty, plain, rawjson, quiet, none]"),
            "{err}"
        );
    }
}

#[test]
fn create_driver_errors_use_buildx_texts() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["create", "--driver", "docker"],
            "ERROR: additional instances of driver \"docker\" cannot be created\n",
        ),
        (
            &["create", "--name", "b", "--driver", "nope"],
            "ERROR: failed to find driver \"nope\"\n",
        ),
        (
            &["create", "--name", "b", "--driver", "remote"],
            "ERROR: no remote endpoint provided\n",
        ),
        (
            &["create", "--name", "b", "--driver", "remote", "ftp://x"],
            "ERROR: unrecognized url scheme ftp\n",
        ),
        (
            &[
                "create",
                "--name",
                "b",
                "--driver",
                "remote",
                "ssh://me@host",
            ],
            "ERROR: remote endpoint scheme \"ssh\" is not supported by kbx (supported: tcp, unix)\n",
        ),
        (
            &[
                "create",
                "--name",
                "b",
                "--driver",
                "remote",
                "--driver-opt",
                "foo=1",
                "tcp://127.0.0.1:1234",
            ],
            "ERROR: failed to initialize builder b (b0)\n  caused by: invalid driver option foo for remote driver\n",
        ),
        (
            &[
                "create",
                "--name",
                "b",
                "--driver",
                "remote",
                "--driver-opt",
                "cacert=ca.pem",
                "tcp://127.0.0.1:1234",
            ],
            "ERROR: failed to initialize builder b (b0)\n  caused by: non-absolute path 'ca.pem' provided for cacert\n",
        ),
        (
            &[
                "create",
                "--name",
                "b",
                "--driver",
                "remote",
                "--driver-opt",
                "cert=/c.pem",
                "tcp://127.0.0.1:1234",
            ],
            "ERROR: failed to initialize builder b (b0)\n  caused by: tls enabled, but missing keys cacert, key\n",
        ),
        (
            &[
                "create",
                "--name",
                "b",
                "--driver",
                "remote",
                "--buildkitd-flags=--debug",
                "tcp://127.0.0.1:1234",
            ],
            "ERROR: failed to initialize builder b (b0)\n  caused by: setting buildkit flags is not supported for remote driver\n",
        ),
    ];
    for (args, text) in cases {
        fails_with(&env.kbx(args), text);
    }
    assert!(
        !env.store().join("instances/b").exists(),
        "nothing saved for rejected builders"
    );
    // An existing remote builder keeps its driver.
    assert!(
        env.kbx(&["create", "--name", "r", "tcp://127.0.0.1:1"])
            .status
            .success()
    );
    fails_with(
        &env.kbx(&[
            "create",
            "--name",
            "r",
            "--append",
            "--driver",
            "kubernetes",
        ]),
        "ERROR: existing instance for \"r\" but has mismatched driver \"remote\"\n",
    );
    // Appending inherits the driver; leaving a remote node touches nothing remote.
    let o = env.kbx(&["create", "--name", "r", "--append", "tcp://127.0.0.1:3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let record = std::fs::read_to_string(env.store().join("instances/r")).unwrap();
    assert!(
        record.contains("{\"Name\":\"r1\",\"Endpoint\":\"tcp://127.0.0.1:3\""),
        "{record}"
    );
    fails_with(
        &env.kbx(&["create", "--name", "r", "--append", "tcp://127.0.0.1:3"]),
        "ERROR: invalid duplicate endpoint tcp://127.0.0.1:3\n",
    );
    let o = env.kbx(&["create", "--name", "r", "--leave", "--node", "r1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let record = std::fs::read_to_string(env.store().join("instances/r")).unwrap();
    assert!(!record.contains("\"r1\""), "{record}");
}

#[test]
fn remote_builders_are_stored_listed_and_removed_without_touching_the_daemon() {
    let env = Env::new();
    // An endpoint only the remote driver understands picks it, as buildx's driver priority does.
    let o = env.kbx(&["create", "--name", "plain", "--use", "tcp://127.0.0.1:1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "plain\n");
    assert_eq!(
        std::fs::read_to_string(env.store().join("instances/plain")).unwrap(),
        "{\"Name\":\"plain\",\"Driver\":\"remote\",\"Nodes\":[{\"Name\":\"plain0\",\"Endpoint\":\"tcp://127.0.0.1:1\",\"Platforms\":null,\"DriverOpts\":null,\"Flags\":null,\"Files\":null}],\"Dynamic\":false}"
    );
    // BUILDKIT_HOST without an endpoint argument means remote too.
    let o = env.kbx_env(
        &[
            "create",
            "--name",
            "tls",
            "--driver-opt",
            "cacert=/nonexistent/ca.pem,servername=buildkit.example",
        ],
        &[("BUILDKIT_HOST", "tcp://127.0.0.1:2")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(env.store().join("instances/tls")).unwrap(),
        "{\"Name\":\"tls\",\"Driver\":\"remote\",\"Nodes\":[{\"Name\":\"tls0\",\"Endpoint\":\"tcp://127.0.0.1:2\",\"Platforms\":null,\"DriverOpts\":{\"cacert\":\"/nonexistent/ca.pem\",\"servername\":\"buildkit.example\"},\"Flags\":null,\"Files\":null}],\"Dynamic\":false}"
    );

    // Nothing listens on port 1, and the CA file of the other does not exist: both inactive,
    // as buildx shows a remote daemon it cannot reach; kbx adds the reason.
    let o = env.kbx(&["ls", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "no Docker Engine, so no default: {lines:?}");
    assert_eq!(lines[0]["Name"], "plain");
    assert_eq!(lines[0]["Driver"], "remote");
    assert_eq!(lines[0]["Current"], true);
    assert_eq!(lines[0]["Nodes"][0]["Status"], "inactive");
    assert_eq!(lines[1]["Name"], "tls");
    assert_eq!(lines[1]["Nodes"][0]["Status"], "inactive");
    assert_eq!(
        lines[1]["Nodes"][0]["StatusReason"],
        "TLS: read CA certificate /nonexistent/ca.pem: I/O error: No such file or directory (os error 2)"
    );
    let o = env.kbx(&["ls"]);
    let table = stdout(&o);
    assert!(
        table.contains("\nplain*       remote ")
            && table.contains(" \\_ plain0    \\_ tcp://127.0.0.1:1   inactive "),
        "{table}"
    );

    let o = env.kbx(&[
        "build",
        "--builder",
        "tls",
        "-o",
        "type=local,dest=out",
        ".",
    ]);
    // Missing TLS files fail at once (no connection retries).
    fails_with(
        &o,
        "ERROR: TLS: read CA certificate /nonexistent/ca.pem: I/O error: No such file or directory (os error 2)\n",
    );
    let o = env.kbx(&["du", "--builder", "tls"]);
    assert_eq!(o.status.code(), Some(1));

    // rm forgets the builders; nothing remote is contacted (port 1 would refuse).
    let o = env.kbx(&["rm", "plain", "tls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "plain removed\ntls removed\n");
    assert!(!env.store().join("instances/plain").exists());
}

#[test]
fn default_builder_is_the_docker_engine() {
    let env = Env::new();
    // `use default` selects the Docker Engine's builder; it cannot be removed or created.
    let o = env.kbx(&["use", "default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.kbx(&["rm", "default"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "failed to remove default: context builder cannot be removed, run `docker context rm default` to remove this context\nERROR: failed to remove one or more builders\n"
    );
    let o = env.kbx(&["inspect", "default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("Name:          default\nDriver:        docker\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Status:                error\nError:                 Cannot connect to the Docker daemon at {}. Is the docker daemon running?\n",
            env.docker_host()
        )),
        "{text}"
    );
    let o = env.kbx(&["du"]);
    fails_with(
        &o,
        &format!(
            "ERROR: Cannot connect to the Docker daemon at {}. Is the docker daemon running?\nhint: the `default` builder and --load use the Docker Engine; start Docker, set DOCKER_HOST, pick another builder with --builder NAME or `kbx use NAME`, or write the image with -o type=docker,dest=FILE\n",
            env.docker_host()
        ),
    );
}

#[test]
fn du_and_prune_input_errors() {
    let env = Env::new();
    fails_with(
        &env.kbx(&["du", "--filter", "nope"]),
        "ERROR: invalid argument \"nope\" for \"--filter\" flag: bad format of filter (expected name=value)\n",
    );
    fails_with(
        &env.kbx(&["du", "--filter", "until=1h", "--filter", "unused-for=2h"]),
        "ERROR: conflicting filters \"until\" and \"unused-for\"\n",
    );
    fails_with(
        &env.kbx(&["prune", "-f", "--filter", "until=soon"]),
        "ERROR: \"until\" filter expects a duration (e.g., '24h'): time: invalid duration \"soon\"\n",
    );
    fails_with(
        &env.kbx(&["prune", "-f", "--filter", "type=a", "--filter", "type=b"]),
        "ERROR: \"type\" filter expects only one value\n",
    );
    fails_with(
        &env.kbx(&["prune", "-f", "--keep-storage", "lots"]),
        "Flag --keep-storage has been deprecated, keep-storage flag has been changed to reserved-space\nERROR: invalid argument \"lots\" for \"--keep-storage\" flag: invalid size: 'lots'\n",
    );
    fails_with(
        &env.kbx(&["prune", "-f", "--builder", "nope"]),
        "ERROR: no builder \"nope\" found\n",
    );
    // Without --force the question comes first; no answer (stdin closed) means no.
    let o = env.kbx(&["prune", "--all", "--builder", "nope"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "WARNING! This will remove all build cache. Are you sure you want to continue? [y/N] "
    );
    let o = env.kbx(&["prune"]);
    assert_eq!(
        stdout(&o),
        "WARNING! This will remove all dangling build cache. Are you sure you want to continue? [y/N] "
    );
}

#[test]
fn proxy_variables_are_honoured_not_refused() {
    // A user behind a proxy: kbx must build its Kubernetes client (NO_PROXY exempts the API
    // server here) and then fail only because nothing listens at the server's address.
    let env = Env::new();
    let kubeconfig = env.dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:9\"}\ncontexts:\n- name: c\n  context: {cluster: c, user: u, namespace: ns}\nusers:\n- name: u\n  user: {token: x}\ncurrent-context: c\n",
    )
    .expect("write kubeconfig");
    let kubeconfig = kubeconfig.to_str().expect("utf-8 path");
    for proxy in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY"] {
        let o = env.kbx_env(
            &[
                "create",
                "--name",
                "p",
                "--driver",
                "kubernetes",
                "--bootstrap",
            ],
            &[
                ("KUBECONFIG", kubeconfig),
                (proxy, "http://127.0.0.1:9"),
                ("NO_PROXY", "127.0.0.1"),
            ],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{proxy}: {err}");
        assert!(!err.contains("disabled feature"), "{proxy}: {err}");
        assert!(err.contains("Connection refused"), "{proxy}: {err}");
        env.kbx(&["rm", "--keep-daemon", "p"]);
    }
}

#[test]
fn buildkitd_flags_take_values_that_start_with_a_dash() {
    let env = Env::new();
    for (name, args) in [
        (
            "spaced",
            &[
                "--buildkitd-flags",
                "--allow-insecure-entitlement security.insecure",
            ][..],
        ),
        (
            "joined",
            &["--buildkitd-flags=--allow-insecure-entitlement security.insecure"][..],
        ),
    ] {
        let o = env.kbx_kube(&[&["create", "--name", name][..], args].concat());
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let record = std::fs::read_to_string(env.store().join("instances").join(name)).unwrap();
        assert!(
            record.contains("\"Flags\":[\"--allow-insecure-entitlement\",\"security.insecure\"]"),
            "{name}: {record}"
        );
    }
}

#[test]
fn ls_lists_records_with_missing_fields_and_survives_a_corrupt_one() {
    let env = Env::new();
    let instances = env.store().join("instances");
    std::fs::create_dir_all(&instances).unwrap();
    std::fs::write(
        instances.join("old"),
        r#"{"Name":"old","Driver":"kubernetes","Nodes":[{"Name":"old0","Endpoint":"kubernetes:///old?deployment=old0&kubeconfig=","Platforms":[{"os":"linux"}],"Flags":null}]}"#,
    )
    .unwrap();
    std::fs::write(
        instances.join("remote"),
        r#"{"Name":"remote","Driver":"remote","Nodes":[{"Name":"remote0","Endpoint":"tcp://127.0.0.1:9"}]}"#,
    )
    .unwrap();
    std::fs::write(instances.join("bad"), r#"{"Name":"bad", garbage"#).unwrap();

    let o = env.kbx(&["ls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert!(rows.contains(&vec!["remote", "remote"]), "{table}");
    assert!(
        rows.contains(&vec!["\\_ remote0", "\\_ tcp://127.0.0.1:9", "inactive"]),
        "{table}"
    );
    assert!(rows.contains(&vec!["old", "kubernetes"]), "{table}");
    assert!(
        rows.iter()
            .any(|r| r.first() == Some(&"\\_ old0") && r.last() == Some(&"linux*")),
        "{table}"
    );
    assert!(rows.contains(&vec!["bad", "error"]), "{table}");
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "Cannot load builder bad: invalid builder record {}: key must be a string at line 1 column 16\n",
            instances.join("bad").display()
        )),
        "{err}"
    );

    let o = env.kbx(&["ls", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{}", stdout(&o));
    let bad = lines
        .iter()
        .find(|l| l["Name"] == "bad")
        .expect("bad is listed");
    assert!(
        bad["Err"]
            .as_str()
            .unwrap()
            .starts_with("invalid builder record")
    );
}

/// `kbx … | head -1`: a reader that goes away ends kbx quietly with the status a shell gives a
/// process killed by SIGPIPE (141), as buildx (a Go program, killed by the signal) ends.
#[test]
fn a_closed_stdout_ends_quietly_with_status_141() {
    let env = Env::new();
    let kubeconfig = env.kubeconfig();
    let run = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        Command::new(env!("CARGO_BIN_EXE_kbx"))
            .args(args)
            .env_clear()
            .env("HOME", env.dir.path())
            .env("BUILDX_CONFIG", env.store())
            .env("DOCKER_HOST", env.docker_host())
            .env("KUBECONFIG", &kubeconfig)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("kbx runs")
    };
    let cases: &[&[&str]] = &[
        &["create", "--name", "kube", "--driver-opt", "namespace=ns"],
        &["create", "--name", "dry", "--dry-run"],
        &["ls"],
        &["ls", "--format", "json"],
        &["inspect", "kube"],
        &["version"],
        &["completion", "bash"],
    ];
    for args in cases {
        let o = run(args);
        assert_eq!(o.status.code(), Some(141), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
    assert!(
        env.store().join("instances/kube").exists(),
        "the builder was saved before its name was printed"
    );
}

/// The builder a command works on, as buildx picks it: a name given to the command, else
/// `--builder` (a flag of every command, before or after it), else `BUILDX_BUILDER`, else the
/// current builder.
#[test]
fn buildx_builder_and_the_global_builder_flag_pick_the_builder() {
    let env = Env::new();
    let kubeconfig = env.kubeconfig();
    let kbx = |args: &[&str], builder: Option<&str>| {
        let mut vars = vec![("KUBECONFIG", kubeconfig.as_str())];
        vars.extend(builder.map(|b| ("BUILDX_BUILDER", b)));
        env.kbx_env(args, &vars)
    };
    assert!(
        kbx(&["create", "--name", "alpha", "--use"], None)
            .status
            .success()
    );
    assert!(kbx(&["create", "--name", "beta"], None).status.success());
    let inspected = |args: &[&str], builder: Option<&str>| {
        let o = kbx(args, builder);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o).lines().next().unwrap_or_default().to_owned()
    };
    assert_eq!(inspected(&["inspect"], None), "Name:          alpha");
    assert_eq!(inspected(&["inspect"], Some("beta")), "Name:          beta");
    assert_eq!(inspected(&["inspect"], Some("")), "Name:          alpha");
    assert_eq!(
        inspected(&["--builder", "beta", "inspect"], None),
        "Name:          beta"
    );
    assert_eq!(
        inspected(&["inspect", "--builder", "beta"], None),
        "Name:          beta"
    );
    assert_eq!(
        inspected(&["--builder", "alpha", "inspect"], Some("beta")),
        "Name:          alpha"
    );
    assert_eq!(
        inspected(&["inspect", "alpha"], Some("beta")),
        "Name:          alpha"
    );

    fails_with(
        &kbx(&["du"], Some("nope")),
        "ERROR: no builder \"nope\" found\n",
    );
    fails_with(
        &kbx(&["--builder", "nope", "prune", "-f"], Some("beta")),
        "ERROR: no builder \"nope\" found\n",
    );

    // `use` without a name takes BUILDX_BUILDER; an unknown name fails, then hints.
    assert!(kbx(&["use"], Some("beta")).status.success());
    let current = std::fs::read_to_string(env.store().join("current")).unwrap();
    assert!(current.contains("\"Name\":\"beta\""), "{current}");
    fails_with(
        &kbx(&["use", "nosuch"], None),
        "ERROR: no builder \"nosuch\" found\nhint: run `kbx ls` to see the available builders\n",
    );
    assert!(kbx(&["use", "alpha"], Some("beta")).status.success());

    // `stop` has nothing to stop on a kubernetes builder, as buildx; an unknown one fails.
    let o = kbx(&["stop"], Some("beta"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!((stdout(&o), stderr(&o)), (String::new(), String::new()));
    assert!(kbx(&["stop", "alpha"], None).status.success());
    fails_with(
        &kbx(&["stop", "nosuch"], None),
        "ERROR: no builder \"nosuch\" found\n",
    );

    // `rm` without a name removes BUILDX_BUILDER's builder, not the current one.
    let o = kbx(&["rm", "--keep-daemon"], Some("beta"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "beta removed\n");
    assert!(env.store().join("instances/alpha").exists());
    assert!(!env.store().join("instances/beta").exists());
}

/// A builder whose kubeconfig cannot give a client and a namespace is refused and not saved,
/// as buildx refuses it (`cannot determine Kubernetes namespace`); kbx names the file or the
/// context. `--dry-run` needs no cluster and still renders.
#[test]
fn create_refuses_a_kubeconfig_that_cannot_work() {
    let env = Env::new();
    let dir = env.dir.path();
    std::fs::write(dir.join("garbage"), "garbage: [\n").unwrap();
    std::fs::write(dir.join("empty"), "").unwrap();
    let path = |f: &str| dir.join(f).display().to_string();
    let good = env.kubeconfig();
    let failed = |kubeconfig: &str, extra: &[&str], expected: &[&str]| {
        let args = [&["create", "--name", "kube"][..], extra].concat();
        let o = env.kbx_env(&args, &[("KUBECONFIG", kubeconfig)]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{kubeconfig}: {err}");
        assert!(
            err.starts_with("ERROR: failed to initialize builder kube (kube0)\n  caused by: "),
            "{err}"
        );
        for text in expected {
            assert!(err.contains(text), "{kubeconfig}: {text:?} in {err}");
        }
        assert!(!env.store().join("instances/kube").exists(), "{kubeconfig}");
    };
    failed(
        &path("garbage"),
        &[],
        &[&format!("cannot load kubeconfig {}\n", path("garbage"))],
    );
    failed(
        &path("empty"),
        &[],
        &[&format!("invalid kubeconfig {}\n", path("empty"))],
    );
    failed(
        &path("missing"),
        &[],
        &[
            &format!("kubeconfig {} (from ", path("missing")),
            "does not exist",
        ],
    );
    failed(
        &good,
        &["--driver-opt", "context=nosuch"],
        &[&format!(
            "invalid kubeconfig {good} for context \"nosuch\"\n"
        )],
    );
    std::fs::remove_file(dir.join(".kube/config")).unwrap();
    let o = env.kbx(&["create", "--name", "kube"]);
    fails_with(
        &o,
        "ERROR: failed to initialize builder kube (kube0)\n  caused by: kubernetes driver requires kubernetes API access: no kubeconfig found (KUBECONFIG and ~/.kube/config) and not running in a cluster\nhint: set KUBECONFIG or create ~/.kube/config\n",
    );
    assert!(!env.store().join("instances/kube").exists());

    let o = env.kbx(&["create", "--name", "kube", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("kind: Deployment"), "{}", stdout(&o));
}

#[test]
fn an_empty_name_is_generated_as_no_name_is() {
    let env = Env::new();
    let o = env.kbx(&["create", "--name", "", "--use"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let name = stdout(&o).trim().to_owned();
    assert!(!name.is_empty() && name.contains('_'), "{name:?}");
    assert!(env.store().join("instances").join(&name).exists(), "{name}");
    fails_with(
        &env.kbx(&["create", "--name", "", "--append"]),
        "ERROR: append requires a builder name\n",
    );
    fails_with(
        &env.kbx(&["create", "--name", "", "--leave", "--node", "x"]),
        "ERROR: leave requires instance name\n",
    );
}

/// `ls` asks every node at once: with five remote builders whose daemon accepts connections
/// and never answers, all five connections are open together (asked one after the other, each
/// would be dropped at its timeout before the next opened).
#[test]
fn ls_asks_every_node_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let env = Env::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    for i in 0..5 {
        let o = env.kbx(&[
            "create",
            "--name",
            &format!("slow{i}"),
            "--driver",
            "remote",
            &format!("tcp://{addr}"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(Mutex::new(Vec::new()));
    {
        let (open, most, held) = (open.clone(), most.clone(), held.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let open = open.clone();
                let mut c = conn.try_clone().expect("clone");
                held.lock().expect("lock").push(conn);
                // Count the connection closed when the client drops it.
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while matches!(std::io::Read::read(&mut c, &mut buf), Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }
    let o = env.kbx(&["ls", "--timeout", "3s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for i in 0..5 {
        assert!(out.contains(&format!("slow{i}")), "{out}");
    }
    assert_eq!(most.load(Ordering::SeqCst), 5, "{out}");
}

/// A bad `--output` value is reported once, naming the flag, the value and buildx's text.
#[test]
fn bad_build_flag_values_are_reported_once() {
    let env = Env::new();
    let o = env.kbx(&["build", "-o", r#"type=image,"name=a,b"#, "."]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "ERROR: invalid build options: --output \"type=image,\\\"name=a,b\": parse error on line 1, column 13: extraneous or missing \" in quoted-field\n"
    );
}

#[test]
fn ci_build_flag_values_use_buildx_texts() {
    let env = Env::new();
    // Each bad value is refused before the builder is looked up, naming flag and value.
    for (args, text) in [
        (
            &["--add-host", "db:10.0.0.300"][..],
            r#"--add-host "db:10.0.0.300": invalid host db:10.0.0.300"#,
        ),
        (
            &["--add-host", "a=1.1.1.1,nocolon"][..],
            r#"--add-host "nocolon": invalid host nocolon"#,
        ),
        (
            &["--allow", "network.host,security.insecure"][..],
            r#"--allow "network.host,security.insecure": unknown entitlement network.host,security.insecure"#,
        ),
        (
            &["--ulimit", "nofile=infinity"][..],
            r#"--ulimit "nofile=infinity": strconv.ParseInt: parsing "infinity": invalid syntax"#,
        ),
        (
            &["--annotation", "blob:a=b"][..],
            r#"--annotation "blob:a=b": unknown annotation type "blob""#,
        ),
        (
            &["--annotation", "novalue"][..],
            r#"--annotation "novalue": invalid annotation "novalue", expected key=value"#,
        ),
        (
            &["--shm-size", "64q"][..],
            r#"--shm-size "64q": invalid suffix: 'q'"#,
        ),
        (
            &["--ulimit", "nofile=2048:1024"][..],
            r#"--ulimit "nofile=2048:1024": ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"#,
        ),
        (
            &["--ulimit", "files=1"][..],
            r#"--ulimit "files=1": invalid ulimit type: files"#,
        ),
    ] {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        all.push(".");
        let o = env.kbx(&all);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("ERROR: {text}\n")),
            "{args:?}: {err}"
        );
        let flag = args[0];
        assert!(
            err.contains(&format!("\nhint: {flag}: expected ")),
            "{args:?}: {err}"
        );
    }
    // -q conflicts with an explicit --progress other than auto or quiet (not with the variable).
    let o = env.kbx(&["build", "-q", "--progress", "plain", "."]);
    fails_with(
        &o,
        "ERROR: progress=plain and quiet cannot be used together\n",
    );
    let o = env.kbx_env(
        &["build", "-q", "-o", "type=local,dest=out", "."],
        &[("BUILDKIT_PROGRESS", "tty")],
    );
    assert!(
        !stderr(&o).contains("cannot be used together") && !stderr(&o).contains("console"),
        "{}",
        stderr(&o)
    );
    // An image ID file needs an image: local and tar exports have none.
    for out in ["type=local,dest=out", "type=tar,dest=o.tar"] {
        let o = env.kbx(&["build", "--iidfile", "iid", "-o", out, "."]);
        fails_with(
            &o,
            "ERROR: local and tar exporters are incompatible with image ID file\n",
        );
    }
    // -q goes with --progress none.
    let o = env.kbx(&[
        "build",
        "-q",
        "--progress",
        "none",
        "-o",
        "type=local,dest=out",
        ".",
    ]);
    assert!(
        !stderr(&o).contains("cannot be used together"),
        "{}",
        stderr(&o)
    );
    // --no-cache and --no-cache-filter are exclusive.
    let o = env.kbx(&["build", "--no-cache", "--no-cache-filter", "a", "."]);
    fails_with(
        &o,
        "ERROR: --no-cache and --no-cache-filter cannot currently be used together\n",
    );
}

#[test]
fn build_alias_debug_flag_and_the_ci_flags_parse() {
    let env = Env::new();
    // `b` is `build`, and every CI flag parses; the build then stops at the builder.
    let args = [
        "b",
        "--pull",
        "--add-host",
        "db:10.0.0.5,v6=[::1]",
        "--allow",
        "network.host",
        "--allow",
        "security.insecure",
        "--annotation",
        "index,manifest[linux/amd64]:org.example=v",
        "--no-cache-filter",
        "build",
        "--shm-size",
        "128m",
        "--ulimit",
        "nofile=1024:2048",
        "--cgroup-parent",
        "/ci",
        "--iidfile",
        "iid.txt",
        "--metadata-file",
        "md.json",
        "-q",
        "-o",
        "type=oci,dest=o.tar",
        ".",
    ];
    let o = env.kbx(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("ERROR: Cannot connect to the Docker daemon"),
        "{err}"
    );
    assert!(!err.contains("debug:"), "{err}");
    // -D prints debug detail after the error.
    let mut debug = vec!["-D"];
    debug.extend_from_slice(&args);
    let o = env.kbx(&debug);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("\ndebug: "), "{}", stderr(&o));
    // So does a non-empty DEBUG.
    let o = env.kbx_env(&args, &[("DEBUG", "1")]);
    assert!(stderr(&o).contains("\ndebug: "), "{}", stderr(&o));
    let o = env.kbx(&["--help"]);
    let help = stdout(&o);
    assert!(
        help.contains("build") && help.contains("[alias: b]"),
        "{help}"
    );
    assert!(help.contains("-D, --debug"), "{help}");
}

/// Linked as `docker-kbx` into a Docker CLI plugin directory, kbx answers the real Docker CLI's
/// plugin handshake: `docker --help` lists it and `docker kbx …` runs it. Linked as
/// `kubectl-kbx`, it takes its arguments as they are.
#[test]
fn kbx_is_a_docker_cli_plugin_and_a_kubectl_plugin() {
    let has_docker = Command::new("docker").arg("--version").output().is_ok();
    if !has_docker {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "the docker CLI is missing (apt-get install docker.io); CI=true, so this is a failure"
        );
        eprintln!("SKIP: no docker CLI");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("cli-plugins")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_kbx"),
        dir.path().join("cli-plugins/docker-kbx"),
    )
    .unwrap();
    let docker = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .env("DOCKER_CONFIG", dir.path())
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap()
    };
    let help = docker(&["--help"]);
    assert!(
        stdout(&help).contains("kbx*") && stdout(&help).contains("compatible with Buildx"),
        "{}",
        stdout(&help)
    );
    let version = docker(&["kbx", "version"]);
    assert!(version.status.success(), "{}", stderr(&version));
    assert!(stdout(&version).starts_with("kbx "), "{}", stdout(&version));

    let kubectl = dir.path().join("kubectl-kbx");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kbx"), &kubectl).unwrap();
    let o = Command::new(&kubectl).arg("version").output().unwrap();
    assert!(stdout(&o).starts_with("kbx "), "{}", stdout(&o));
}

/// Errors of requests to an API server nobody listens on name the request as Buildx does
/// (`Get "https://127.0.0.1:9/apis/apps/v1/namespaces/ns/deployments/k0"`) and say why once,
/// without the HTTP client's `ServiceError: client error (Connect)` wrappers: in `inspect
/// --bootstrap`, in `inspect`'s status and in `rm`.
#[test]
fn kube_errors_name_the_request_and_the_server_once() {
    let env = Env::new();
    let o = env.kbx_kube(&["create", "--name", "k", "--driver", "kubernetes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let url = "\"https://127.0.0.1:9/apis/apps/v1/namespaces/ns/deployments/k0\"";
    let clean = |text: &str| {
        assert!(!text.contains("client error"), "{text}");
        assert!(!text.contains("ServiceError"), "{text}");
    };

    let o = env.kbx_kube(&["inspect", "k", "--bootstrap"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "ERROR: failed to initialize builder k (k0)\n  caused by: error while applying Deployment \"k0\"\n  caused by: Get {url}\n  caused by: tcp connect error\n  caused by: Connection refused"
        )),
        "{err}"
    );
    clean(&err);

    let o = env.kbx_kube(&["inspect", "k"]);
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "Status:                inactive (Get {url}: tcp connect error: Connection refused"
        )),
        "{out}"
    );
    clean(&out);

    // `ls` lists it as `inactive`, as Buildx does, and says why on stderr.
    let o = env.kbx_kube(&["ls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(" inactive "), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "Failed to get status for k (k0): Get {url}: tcp connect error: Connection refused"
        )),
        "{err}"
    );
    clean(&err);

    let o = env.kbx_kube(&["rm", "k"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "failed to remove k: failed to remove node k0: error while deleting Deployment \"k0\": Delete {url}: tcp connect error: Connection refused"
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: the API server is not reachable")
            && err.contains("`kbx rm --keep-daemon k`"),
        "{err}"
    );
    clean(&err);
}
