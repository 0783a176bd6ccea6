//! The `kbx` binary against real BuildKit daemons: a private Docker Engine (Debian's docker.io)
//! as the `default` builder (docker driver), and the same engine's BuildKit exposed as a plain
//! gRPC unix socket for a `remote` builder, also behind a mutual-TLS listener on 127.0.0.1.
//!
//! Oracles are the Docker Engine's own API (`/system/df` build-cache records, `/_ping`,
//! `/images/…/json`, `/version`) and the source trees, never kbx's output alone.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

// The private-dockerd helper shared with kbx-buildkit's tests.
#[path = "../../kbx-buildkit/tests/support/mod.rs"]
mod support;

// The private-registry helper shared with kbx-registry's tests.
use support::registry as common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Dockerd, snapshot, write};

/// A `kbx` with its own store, pointed at one Docker Engine.
struct Kbx {
    home: tempfile::TempDir,
    docker_host: String,
}

impl Kbx {
    fn new(d: &Dockerd) -> Self {
        Kbx {
            home: tempfile::tempdir().unwrap(),
            docker_host: format!("unix://{}", d.sock.display()),
        }
    }

    /// `kbx ARGS` with this store and engine, not started yet.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kbx"));
        c.args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("BUILDX_CONFIG", self.home.path().join("buildx"))
            .env("DOCKER_HOST", &self.docker_host)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let o = self.command(args).output().expect("kbx runs");
        eprintln!(
            "$ kbx {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// Runs and requires success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "kbx {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

/// The body of an HTTP answer from the engine.
fn body(d: &Dockerd, path: &str) -> String {
    let raw = d.http_get(path).expect("engine answers");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    // Chunked answers: one or more `size\r\ndata\r\n` chunks.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_owned()
    }
}

/// IDs of the engine's build-cache records (`GET /system/df`).
fn engine_cache_ids(d: &Dockerd) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(&body(d, "/system/df")).unwrap();
    let mut ids: Vec<String> = json["BuildCache"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| r["ID"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A context whose `src/` is copied to the image root, with nested dirs, modes and symlinks.
fn context() -> (tempfile::TempDir, PathBuf) {
    let ctx = tempfile::tempdir().unwrap();
    let src = ctx.path().join("src");
    write(&src, "a.txt", b"alpha\n", 0o644);
    write(&src, "bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    write(&src, "deep/er/leaf.bin", &[0, 1, 2, 255], 0o600);
    write(&src, "deep/empty", b"", 0o644);
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY src/ /\n",
        0o644,
    );
    (ctx, src)
}

/// The cells of `ls`'s table (columns are at least 3 spaces apart).
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The rows of `du`'s (space-aligned) or `prune`'s (tab-aligned) table: (id, reclaimable,
/// size).
fn du_rows(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .skip(1)
        .take_while(|l| !l.starts_with("Reclaimable:") && !l.starts_with("Shared:"))
        .map(|l| {
            let sep = if l.contains('\t') { "\t" } else { "   " };
            let cells: Vec<&str> = l.split(sep).filter(|c| !c.trim().is_empty()).collect();
            (
                cells[0].trim().trim_end_matches('*').to_owned(),
                cells[1].trim().to_owned(),
                cells[2].trim().to_owned(),
            )
        })
        .collect()
}

#[test]
fn docker_driver_default_builder_ls_build_du_prune() {
    let Some(d) = Dockerd::start() else { return };
    let kbx = Kbx::new(&d);
    let version: serde_json::Value = serde_json::from_str(&body(&d, "/version")).unwrap();
    let engine = version["Version"].as_str().unwrap().to_owned();

    // ls: the engine's builder, current because nothing else is selected.
    let table = kbx.ok(&["ls"]);
    let rows = cells(&table);
    assert_eq!(
        rows[0],
        [
            "NAME/NODE",
            "DRIVER/ENDPOINT",
            "STATUS",
            "BUILDKIT",
            "PLATFORMS"
        ],
        "{table}"
    );
    assert_eq!(rows[1], ["default*", "docker"], "{table}");
    assert_eq!(
        rows[2][..3],
        ["\\_ default", "\\_ default", "running"],
        "{table}"
    );
    // BuildKit before v0.11 has no Info API: buildx shows the engine's version instead.
    assert_eq!(rows[2][3], engine, "{table}");
    assert!(
        rows[2][4].contains("linux/"),
        "platforms from the workers: {table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(kbx.ok(&["ls", "--format", "json"]).trim()).unwrap();
    // Builds stamp the builder's last activity, `default` included (checked after the builds).
    let activity_file = kbx.home.path().join("buildx/activity/default");
    assert_eq!(json["Name"], "default");
    assert_eq!(json["Driver"], "docker");
    assert_eq!(json["Current"], true);
    assert_eq!(json["Nodes"][0]["Status"], "running");

    let text = kbx.ok(&["inspect"]);
    assert!(
        text.starts_with("Name:          default\nDriver:        docker\n"),
        "{text}"
    );
    assert!(text.contains("Status:                running\n"), "{text}");

    // build -o type=local: the exported tree is the source tree.
    let (ctx, src) = context();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("local");
    let o = kbx.run(&[
        "build",
        "-o",
        &format!("type=local,dest={}", dest.display()),
        ctx.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with(
            "#0 building with \"default\" instance using docker driver\n\
             #0 building on default (docker)\n\n"
        ),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(snapshot(&dest), snapshot(&src));

    // -o type=tar: the same tree in an archive.
    let tar = out.path().join("out.tar");
    kbx.ok(&[
        "build",
        "--builder",
        "default",
        "-o",
        &format!("type=tar,dest={}", tar.display()),
        ctx.path().to_str().unwrap(),
    ]);
    let untar = out.path().join("untar");
    std::fs::create_dir_all(&untar).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&untar)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(snapshot(&untar), snapshot(&src));

    // No output flag: the docker driver loads the image into the engine (moby exporter);
    // --load does the same.
    kbx.ok(&["build", "-t", "kbx-default:1", ctx.path().to_str().unwrap()]);
    body(&d, "/images/kbx-default:1/json");
    kbx.ok(&[
        "build",
        "--load",
        "-t",
        "kbx-load:1",
        ctx.path().to_str().unwrap(),
    ]);
    body(&d, "/images/kbx-load:1/json");

    assert!(
        activity_file.exists(),
        "build stamps the default builder's activity"
    );
    let json: serde_json::Value =
        serde_json::from_str(kbx.ok(&["ls", "--format", "json"]).trim()).unwrap();
    assert!(json["LastActivity"].is_string(), "{json}");

    // The Engine's BuildKit (Docker 20.10) runs the frontend through its gateway, and its
    // Dockerfile frontend predates subrequests: its own reply is the error.
    let o = kbx.run(&["build", "--call", "targets", ctx.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unsupported request frontend.targets"),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    // du lists exactly the engine's build-cache records.
    let engine_ids = engine_cache_ids(&d);
    assert!(!engine_ids.is_empty(), "the builds left cache records");
    let du = kbx.ok(&["du"]);
    assert!(du.starts_with("ID   "), "{du}");
    let rows = du_rows(&du);
    let mut ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    ids.sort();
    assert_eq!(ids, engine_ids, "{du}");
    let summary: Vec<&str> = du.lines().rev().take(2).collect();
    assert!(summary[0].starts_with("Total:\t\t"), "{du}");
    assert_ne!(summary[0], "Total:\t\t0B", "{du}");
    assert!(summary[1].starts_with("Reclaimable:\t"), "{du}");
    let verbose = kbx.ok(&["du", "--verbose"]);
    assert_eq!(
        verbose.matches("ID:           ").count(),
        engine_ids.len(),
        "one block per record: {verbose}"
    );
    for id in &engine_ids {
        assert!(
            verbose.contains(&format!("ID:           {id}\n")),
            "{id} in {verbose}"
        );
    }

    // --filter goes to BuildKit as `type==regular`; filtered output has no summary.
    let df: serde_json::Value = serde_json::from_str(&body(&d, "/system/df")).unwrap();
    let mut regular: Vec<String> = df["BuildCache"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["Type"] == "regular")
        .map(|r| r["ID"].as_str().unwrap().to_owned())
        .collect();
    regular.sort();
    assert!(
        !regular.is_empty() && regular.len() < engine_ids.len(),
        "{df}"
    );
    let filtered = kbx.ok(&["du", "--filter", "type=regular"]);
    let mut ids: Vec<String> = du_rows(&filtered).into_iter().map(|r| r.0).collect();
    ids.sort();
    assert_eq!(ids, regular, "{filtered}");
    assert!(!filtered.contains("Total:"), "{filtered}");

    // prune -f --all frees every record, and says what it removed.
    let pruned = kbx.ok(&["prune", "-f", "--all"]);
    assert!(pruned.starts_with("ID\t"), "{pruned}");
    let mut removed: Vec<String> = du_rows(&pruned.replace("Total:", "Reclaimable:"))
        .into_iter()
        .map(|r| r.0)
        .collect();
    removed.sort();
    assert_eq!(removed, engine_ids, "{pruned}");
    assert!(
        pruned.lines().last().unwrap().starts_with("Total:\t"),
        "{pruned}"
    );
    assert!(
        engine_cache_ids(&d).is_empty(),
        "the engine has no cache left"
    );
    let du = kbx.ok(&["du"]);
    assert_eq!(
        du,
        "ID        RECLAIMABLE   SIZE      LAST ACCESSED\nReclaimable:\t0B\nTotal:\t\t0B\n"
    );
}

/// What `buildctl dial-stdio` does against a Docker Engine, for every connection to `listen`:
/// `POST /grpc` with `Upgrade: h2c` on the engine's socket, then bytes both ways. The result is
/// a plain BuildKit gRPC socket, as a standalone buildkitd would offer.
fn serve_grpc_socket(engine: PathBuf, listen: &Path) {
    let listener = UnixListener::bind(listen).unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let engine = engine.clone();
            std::thread::spawn(move || {
                let Ok(mut up) = UnixStream::connect(&engine) else {
                    return;
                };
                let req = "POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n";
                if up.write_all(req.as_bytes()).is_err() {
                    return;
                }
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match up.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                assert!(
                    head.starts_with(b"HTTP/1.1 101"),
                    "{}",
                    String::from_utf8_lossy(&head)
                );
                let (mut c_read, mut u_write) =
                    (client.try_clone().unwrap(), up.try_clone().unwrap());
                let forward = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut u_write);
                    let _ = u_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut u_read, mut c_write) = (up, client);
                let _ = std::io::copy(&mut u_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
                let _ = forward.join();
            });
        }
    });
}

#[test]
fn remote_driver_create_ls_build_du_rm() {
    let Some(d) = Dockerd::start() else { return };
    let kbx = Kbx::new(&d);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("buildkitd.sock");
    serve_grpc_socket(d.sock.clone(), &sock);
    let endpoint = format!("unix://{}", sock.display());

    assert_eq!(
        kbx.ok(&["create", "--name", "rb", "--driver", "remote", &endpoint]),
        "rb\n"
    );
    let record = std::fs::read_to_string(kbx.home.path().join("buildx/instances/rb")).unwrap();
    assert!(
        record.contains(&format!(
            "\"Driver\":\"remote\",\"Nodes\":[{{\"Name\":\"rb0\",\"Endpoint\":\"{endpoint}\""
        )),
        "{record}"
    );

    let table = kbx.ok(&["ls"]);
    let rows = cells(&table);
    assert_eq!(rows[1], ["rb", "remote"], "{table}");
    assert_eq!(
        rows[2][..3],
        [
            "\\_ rb0".to_owned(),
            format!("\\_ {endpoint}"),
            "running".to_owned()
        ],
        "{table}"
    );
    assert!(rows[2].last().unwrap().contains("linux/"), "{table}");
    // The engine's own builder is listed after the stored ones; rb is current only when used.
    assert_eq!(rows[3], ["default*", "docker"], "{table}");

    let (ctx, src) = context();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("local");
    let o = kbx.run(&[
        "build",
        "--builder",
        "rb",
        "-o",
        &format!("type=local,dest={}", dest.display()),
        ctx.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with(&format!(
            "#0 building with \"rb\" instance using remote driver\n\
                 #0 building on rb0 (remote {endpoint})\n\n"
        )),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(snapshot(&dest), snapshot(&src));

    let mut ids: Vec<String> = du_rows(&kbx.ok(&["du", "--builder", "rb"]))
        .into_iter()
        .map(|r| r.0)
        .collect();
    ids.sort();
    assert_eq!(ids, engine_cache_ids(&d));

    // rm forgets the builder and leaves the daemon alone.
    let o = kbx.run(&["rm", "rb"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr), "rb removed\n");
    assert!(!kbx.home.path().join("buildx/instances/rb").exists());
    assert!(sock.exists());
    assert_eq!(body(&d, "/_ping"), "OK");
    assert!(!kbx.ok(&["ls"]).contains("rb"));
}

/// Certificates for the TLS test: a CA, a server certificate for `buildkitd.test`, a client
/// certificate; PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki(dir: &Path, name: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let file = |f: &str, pem: String| {
        let p = dir.join(format!("{name}-{f}"));
        std::fs::write(&p, pem).unwrap();
        p
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = file("ca.pem", ca_cert.pem());
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |san: &str, usage: ExtendedKeyUsagePurpose, f: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![san.to_owned()]).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (
            file(&format!("{f}.pem"), cert.pem()),
            file(&format!("{f}-key.pem"), key.serialize_pem()),
        )
    };
    let (server_cert, server_key) = leaf(
        "buildkitd.test",
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    let (client_cert, client_key) = leaf("kbx", ExtendedKeyUsagePurpose::ClientAuth, "client");
    Pki {
        ca,
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// A TLS listener on 127.0.0.1 that requires a client certificate signed by the same CA and
/// forwards the decrypted bytes to `upstream` (a plain BuildKit gRPC socket). Returns the port.
fn serve_tls(pki: &Pki, upstream: PathBuf) -> u16 {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;
    use tokio_rustls::rustls;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(&pki.server_cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut up) = tokio::net::UnixStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
    });
    port
}

#[test]
fn remote_driver_over_mutual_tls() {
    let Some(d) = Dockerd::start() else { return };
    let kbx = Kbx::new(&d);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("buildkitd.sock");
    serve_grpc_socket(d.sock.clone(), &sock);
    let good = pki(dir.path(), "good");
    let other = pki(dir.path(), "other");
    let port = serve_tls(&good, sock);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let opts = |p: &Pki| {
        format!(
            "cacert={},cert={},key={},servername=buildkitd.test",
            p.ca.display(),
            good.client_cert.display(),
            good.client_key.display()
        )
    };
    kbx.ok(&[
        "create",
        "--name",
        "tls",
        "--driver",
        "remote",
        "--driver-opt",
        &opts(&good),
        &endpoint,
    ]);
    // A CA that did not sign the daemon's certificate: the daemon is not trusted.
    kbx.ok(&[
        "create",
        "--name",
        "untrusted",
        "--driver",
        "remote",
        "--driver-opt",
        &opts(&other),
        &endpoint,
    ]);

    let json: Vec<serde_json::Value> = kbx
        .ok(&["ls", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status = |name: &str| {
        json.iter()
            .find(|b| b["Name"] == name)
            .map(|b| b["Nodes"][0]["Status"].clone())
            .unwrap()
    };
    assert_eq!(status("tls"), "running", "{json:?}");
    assert_eq!(status("untrusted"), "inactive", "{json:?}");

    let (ctx, src) = context();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("local");
    kbx.ok(&[
        "build",
        "--builder",
        "tls",
        "-o",
        &format!("type=local,dest={}", dest.display()),
        ctx.path().to_str().unwrap(),
    ]);
    assert_eq!(snapshot(&dest), snapshot(&src));
    assert!(!du_rows(&kbx.ok(&["du", "--builder", "tls"])).is_empty());
}

/// `kbx build -` reads the context as an archive from standard input (streamed through the
/// session); `--build-context` reaches the client, which refuses it on Docker 20.10's
/// frontend before the solve.
#[test]
fn build_context_from_stdin_and_named_contexts() {
    let Some(d) = Dockerd::start() else { return };
    let kbx = Kbx::new(&d);
    let (ctx, src) = context();
    let archive = kbx.home.path().join("ctx.tar");
    let st = Command::new("tar")
        .args(["-cf"])
        .arg(&archive)
        .args(["-C"])
        .arg(ctx.path())
        .args(["Dockerfile", "src"])
        .status()
        .unwrap();
    assert!(st.success());
    let out = kbx.home.path().join("from-stdin");
    let o = kbx
        .command(&[
            "build",
            "--progress",
            "plain",
            "-o",
            &format!("type=local,dest={}", out.display()),
            "-",
        ])
        .stdin(std::fs::File::open(&archive).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(snapshot(&out), snapshot(&src));

    let o = kbx.run(&[
        "build",
        "--build-context",
        &format!("extra={}", src.display()),
        "-o",
        &format!("type=local,dest={}", out.display()),
        ctx.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("named build contexts"), "{err}");
    let o = kbx.run(&["build", "--build-context", "noequals", "."]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "--build-context \"noequals\": invalid context value: noequals, expected key=value"
        ),
        "{err}"
    );
}

/// `kbx build --push` on the docker driver: the `moby` export is pushed by the Engine (as
/// buildx does) to a real registry on 127.0.0.1, read back through the registry's HTTP API.
/// With basic auth, the right password from `config.json` pushes and a wrong one fails
/// naming the refusal, with no tag written; a registry that is down fails without hanging.
#[test]
fn docker_driver_push_to_a_registry_with_and_without_auth() {
    use common::Registry;
    let Some(d) = Dockerd::start() else { return };
    let open = Registry::start();
    let kbx = Kbx::new(&d);
    let (ctx, _src) = context();
    let ctx = ctx.path().to_str().unwrap().to_owned();
    const MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

    // No tag: buildx's error, before anything is built.
    let o = kbx.run(&["build", "--push", &ctx]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("tag is needed when pushing to registry"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let name = format!("{}/kbx/app:1", open.host());
    let out = kbx.run(&["build", "--progress", "plain", "--push", "-t", &name, &ctx]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pushing {name} with docker")),
        "{stderr}"
    );
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let m = open.get("/v2/kbx/app/manifests/1", Some(MANIFEST));
    assert_eq!(m.status, 200, "{}", String::from_utf8_lossy(&m.body));
    assert_eq!(
        m.header("docker-content-digest"),
        Some(printed.as_str()),
        "kbx prints the digest the registry stored"
    );
    let manifest = m.json();
    let config = manifest["config"]["digest"].as_str().unwrap();
    let cfg = open
        .get(&format!("/v2/kbx/app/blobs/{config}"), None)
        .json();
    assert_eq!(cfg["architecture"], "amd64");
    assert_eq!(cfg["os"], "linux");
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        assert_eq!(
            open.head(&format!("/v2/kbx/app/blobs/{digest}")).status,
            200
        );
    }
    // `type=registry` is the same push.
    let name2 = format!("{}/kbx/app:2", open.host());
    kbx.ok(&["build", "-o", &format!("type=registry,name={name2}"), &ctx]);
    assert_eq!(
        open.get("/v2/kbx/app/manifests/2", Some(MANIFEST)).status,
        200
    );

    // Basic auth: credentials come from config.json.
    let locked = Registry::start_with_htpasswd("kbx", "s3cret");
    let config_dir = kbx.home.path().join(".docker");
    std::fs::create_dir_all(&config_dir).unwrap();
    let set_password = |pw: &str| {
        let config = serde_json::json!({
            "auths": { locked.host(): { "username": "kbx", "password": pw } }
        });
        std::fs::write(config_dir.join("config.json"), config.to_string()).unwrap();
    };
    set_password("wrong");
    let bad = format!("{}/kbx/locked:bad", locked.host());
    let o = kbx.run(&["build", "--push", "-t", &bad, &ctx]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("push {bad}"))
            && (err.contains("unauthorized") || err.contains("authentication required")),
        "{err}"
    );
    assert!(
        err.contains("hint: registry credentials come from"),
        "{err}"
    );
    assert_eq!(
        locked
            .get("/v2/kbx/locked/manifests/bad", Some(MANIFEST))
            .status,
        404,
        "a refused push writes no tag"
    );
    set_password("s3cret");
    let good = format!("{}/kbx/locked:good", locked.host());
    kbx.ok(&["build", "--push", "-t", &good, &ctx]);
    assert_eq!(
        locked
            .get("/v2/kbx/locked/manifests/good", Some(MANIFEST))
            .status,
        200
    );

    // Registry down: a clear error, no hang.
    drop(open);
    let o = kbx.run(&["build", "--push", "-t", &name, &ctx]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("push {name}")) && err.contains("connection refused"),
        "{err}"
    );
    assert!(err.contains("hint: the registry is not reachable"), "{err}");
}

/// `kbx build` on a `remote` builder that is a real buildkitd v0.13.2: `-o type=oci,tar=false`,
/// `--build-context name=oci-layout://DIR`, `--cache-to`/`--cache-from type=local` across two
/// daemons, and `--provenance` on an OCI export, read back from the files themselves.
#[test]
fn remote_buildkitd_oci_layouts_local_cache_and_provenance() {
    use support::Buildkitd;
    let Some(first) = Buildkitd::start() else {
        return;
    };
    let kbx = Kbx {
        home: tempfile::tempdir().unwrap(),
        docker_host: "unix:///nonexistent/docker.sock".to_owned(),
    };
    let keep = tempfile::tempdir().unwrap();
    let build = |builder: &str, args: &[&str], ctx: &Path| {
        let mut all = vec!["build", "--builder", builder, "--progress", "plain"];
        all.extend_from_slice(args);
        all.push(ctx.to_str().unwrap());
        let o = kbx.run(&all);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    kbx.ok(&[
        "create",
        "--name",
        "bk1",
        "--driver",
        "remote",
        &first.addr(),
    ]);

    // A busybox base as an OCI layout directory.
    let base_ctx = tempfile::tempdir().unwrap();
    let Some(_) = support::busybox_rootfs(base_ctx.path()) else {
        return;
    };
    write(
        base_ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY rootfs/ /\n",
        0o644,
    );
    // --load with no Docker Engine at DOCKER_HOST: refused before the build, naming it.
    let o = kbx.run(&[
        "build",
        "--builder",
        "bk1",
        "--load",
        "-t",
        "kbx/none:1",
        base_ctx.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "ERROR: Cannot connect to the Docker daemon at unix:///nonexistent/docker.sock. Is the docker daemon running?\n"
        ),
        "{err}"
    );
    assert!(!err.contains("#1 "), "nothing was built: {err}");

    let layout = keep.path().join("layout");
    build(
        "bk1",
        &[
            "-o",
            &format!("type=oci,tar=false,dest={}", layout.display()),
        ],
        base_ctx.path(),
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "latest",
        "{index}"
    );

    // A RUN step on it, its cache exported to a local directory.
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM base\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n",
        0o644,
    );
    let cache = keep.path().join("cache");
    let base_arg = format!("base=oci-layout://{}", layout.display());
    let out1 = keep.path().join("out1");
    build(
        "bk1",
        &[
            "--build-context",
            &base_arg,
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache.display()),
            "-o",
            &format!("type=local,dest={}", out1.display()),
        ],
        ctx.path(),
    );
    assert!(cache.join("index.json").is_file());
    drop(first);

    // A fresh daemon: the step comes from the local cache, with the first stamp.
    let Some(second) = Buildkitd::start() else {
        return;
    };
    kbx.ok(&[
        "create",
        "--name",
        "bk2",
        "--driver",
        "remote",
        &second.addr(),
    ]);
    let out2 = keep.path().join("out2");
    let log = build(
        "bk2",
        &[
            "--build-context",
            &base_arg,
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
            "-o",
            &format!("type=local,dest={}", out2.display()),
        ],
        ctx.path(),
    );
    assert_eq!(
        std::fs::read(out2.join("stamp")).unwrap(),
        std::fs::read(out1.join("stamp")).unwrap(),
        "{log}"
    );
    assert!(log.contains("CACHED"), "{log}");

    // --provenance on an OCI export: an attestation manifest next to the image; none with
    // --provenance=false.
    let attestations = |provenance: &str| {
        let dir = keep.path().join(format!("oci-{provenance}"));
        build(
            "bk2",
            &[
                "--build-context",
                &base_arg,
                &format!("--provenance={provenance}"),
                "-o",
                &format!("type=oci,tar=false,dest={}", dir.display()),
            ],
            ctx.path(),
        );
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
        let blob = std::fs::read(
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap();
        let top: serde_json::Value = serde_json::from_slice(&blob).unwrap();
        top["manifests"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|m| {
                        m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(attestations("mode=max"), 1);
    assert_eq!(attestations("false"), 0);
}

/// `kbx build --load` on a `remote` builder that is a real buildkitd v0.13.2: the image lands in
/// the Docker Engine at `DOCKER_HOST` (a private dockerd) and runs there, as with buildx; the
/// progress shows buildx's `importing to docker` step. `-o type=docker` without `dest` does the
/// same, `dest=-` still writes the archive to stdout, and two platforms are refused with
/// buildx's text.
#[test]
fn remote_buildkitd_load_into_the_docker_engine() {
    use support::Buildkitd;
    let Some(d) = Dockerd::start() else { return };
    let Some(bk) = Buildkitd::start() else { return };
    let kbx = Kbx::new(&d);
    kbx.ok(&["create", "--name", "bk", "--driver", "remote", &bk.addr()]);
    let ctx = tempfile::tempdir().unwrap();
    let Some(bb) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "busybox not found: install busybox-static (CI=true, so this is a failure)"
        );
        return;
    };
    std::fs::copy(bb, ctx.path().join("busybox")).unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\", \"echo\"]\nCMD [\"hello\", \"from\", \"kbx\"]\n",
        0o644,
    );
    let dir = ctx.path().to_str().unwrap();
    let run = |image: &str, args: &[&str]| {
        let mut all = vec!["run", "--rm", "--network", "none", image];
        all.extend_from_slice(args);
        let (ok, out, err) = d.docker(&all);
        assert!(ok, "docker run {image} failed: {err}");
        out
    };

    let o = kbx.run(&[
        "build",
        "--builder",
        "bk",
        "--progress",
        "plain",
        "--load",
        "-t",
        "kbx/loaded:1",
        dir,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(" importing to docker\n"), "{err}");
    assert!(err.contains(" Loaded image: kbx/loaded:1\n"), "{err}");
    assert!(!err.contains("WARNING: No output specified"), "{err}");
    assert_eq!(run("kbx/loaded:1", &[]), "hello from kbx\n");
    assert_eq!(run("kbx/loaded:1", &["again"]), "again\n");

    // type=docker without dest loads too (names from -t); dest=- is the archive on stdout.
    kbx.ok(&[
        "build",
        "--builder",
        "bk",
        "-o",
        "type=docker",
        "-t",
        "kbx/loaded:2",
        dir,
    ]);
    assert_eq!(run("kbx/loaded:2", &[]), "hello from kbx\n");
    let o = kbx.run(&[
        "build",
        "--builder",
        "bk",
        "-o",
        "type=docker,dest=-",
        "-t",
        "kbx/stdout:1",
        dir,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stdout.len() > 512 && &o.stdout[257..262] == b"ustar",
        "a tar archive on stdout"
    );
    let (_, images, _) = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!images.contains("kbx/stdout"), "{images}");

    // --load next to a local output (as buildx 0.29): the archive (exporter 1) streams into the
    // Engine while the tree (exporter 0) is written, in one build.
    let tree = tempfile::tempdir().unwrap();
    kbx.ok(&[
        "build",
        "--builder",
        "bk",
        "--load",
        "-t",
        "kbx/loaded:3",
        "-o",
        &format!("type=local,dest={}", tree.path().display()),
        dir,
    ]);
    assert_eq!(run("kbx/loaded:3", &["three"]), "three\n");
    assert!(tree.path().join("bin/busybox").is_file());

    // Two platforms: one docker archive cannot hold them (buildx's text).
    let o = kbx.run(&[
        "build",
        "--builder",
        "bk",
        "--platform",
        "linux/amd64,linux/arm64",
        "--load",
        dir,
    ]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "ERROR: docker exporter does not currently support exporting manifest lists\n"
    );
}

/// Several `--output` flags on a `remote` builder that is a real buildkitd v0.13.2, and `-t`
/// naming image outputs as buildx does: `-t a -t b -o type=oci,name=x,dest=…` records the
/// image under `a` and `b` (not `x`), next to a `type=local` output and a `docker,tar=false`
/// layout of the same build, each read back from the files. Two outputs to stdout and an
/// untagged push are refused before anything is built, with buildx's texts.
#[test]
fn remote_buildkitd_several_outputs_and_tags_naming_them() {
    use support::Buildkitd;
    let Some(bk) = Buildkitd::start() else { return };
    let kbx = remote_kbx("bk", &bk.addr());
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY a.txt /\n",
        0o644,
    );
    write(ctx.path(), "a.txt", b"alpha\n", 0o644);
    let out = tempfile::tempdir().unwrap();
    let oci = out.path().join("o.tar");
    let local = out.path().join("local");
    let layout = out.path().join("layout");
    let o = kbx.run(&[
        "build",
        "--builder",
        "bk",
        "--progress",
        "plain",
        "-t",
        "a",
        "-t",
        "b",
        "-o",
        &format!("type=oci,name=x,dest={}", oci.display()),
        "-o",
        &format!("type=local,dest={}", local.display()),
        "-o",
        &format!("type=docker,tar=false,dest={}", layout.display()),
        ctx.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(local.join("a.txt")).unwrap(), b"alpha\n");

    // The archive's index names the image a and b, never x.
    let unpacked = out.path().join("oci");
    std::fs::create_dir(&unpacked).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&oci)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    let names = |dir: &Path| -> Vec<String> {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let mut n: Vec<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["annotations"]["io.containerd.image.name"].as_str())
            .map(str::to_owned)
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&unpacked),
        ["docker.io/library/a:latest", "docker.io/library/b:latest"]
    );
    // The layout directory (written through the session content store) names them too, and
    // holds what it names.
    assert_eq!(
        names(&layout),
        ["docker.io/library/a:latest", "docker.io/library/b:latest"]
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    for m in index["manifests"].as_array().unwrap() {
        let digest = m["digest"].as_str().unwrap();
        let blob = layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        assert!(blob.is_file(), "{digest} is in the layout: {index}");
    }

    // Refused before the build, with buildx's texts.
    for (args, text) in [
        (
            &["-o", "-", "-o", "type=oci,dest=-"][..],
            "ERROR: multiple outputs configured to write to stdout\n",
        ),
        (
            &["--push"][..],
            "ERROR: tag is needed when pushing to registry\n",
        ),
    ] {
        let mut all = vec!["build", "--builder", "bk", "--progress", "plain"];
        all.extend_from_slice(args);
        all.push(ctx.path().to_str().unwrap());
        let o = kbx.run(&all);
        assert!(!o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stderr), text);
    }
}

/// `--push` next to `-o type=local` on a `remote` builder (a real buildkitd v0.13.2 that reaches
/// a loopback registry over plain HTTP), as buildx 0.29: one build, two exporters, the tree on
/// disk and the image in the registry.
#[test]
fn remote_buildkitd_push_next_to_a_local_output() {
    use common::Registry;
    use support::Buildkitd;
    let reg = Registry::start();
    let config = format!("[registry.\"{}\"]\n  http = true\n", reg.host());
    let Some(bk) = Buildkitd::start_with_config(Some(&config)) else {
        return;
    };
    let kbx = remote_kbx("bk", &bk.addr());
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY a.txt /\n",
        0o644,
    );
    write(ctx.path(), "a.txt", b"alpha\n", 0o644);
    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("tree");
    let name = format!("{}/kbx/pushed:1", reg.host());
    kbx.ok(&[
        "build",
        "--builder",
        "bk",
        "--progress",
        "plain",
        "--push",
        "-t",
        &name,
        "-o",
        &format!("type=local,dest={}", dest.display()),
        ctx.path().to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"alpha\n");
    let m = reg.get(
        "/v2/kbx/pushed/manifests/1",
        Some("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"),
    );
    assert_eq!(m.status, 200, "{}", String::from_utf8_lossy(&m.body));
}

#[test]
fn remote_buildkitd_quiet_iidfile_metadata_file_and_annotations() {
    use support::Buildkitd;
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let kbx = remote_kbx("ci", &d.addr());
    let (ctx_dir, _) = context();
    let ctx = ctx_dir.path();
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let iid = out.path().join("iid.txt");
    let md = out.path().join("md.json");
    // A stale image ID file goes before the build.
    std::fs::write(&iid, "stale").unwrap();
    let stdout = kbx.ok(&[
        "b",
        "--builder",
        "ci",
        "-q",
        "--iidfile",
        iid.to_str().unwrap(),
        "--metadata-file",
        md.to_str().unwrap(),
        "--annotation",
        "org.example.ci=yes",
        "--provenance",
        "false",
        "-o",
        &format!("type=oci,dest={},tar=false", layout.display()),
        ctx.to_str().unwrap(),
    ]);
    // The image ID is the config digest of the exported image.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let read_blob = |digest: &str| {
        let (alg, hex) = digest.split_once(':').unwrap();
        std::fs::read(layout.join("blobs").join(alg).join(hex)).unwrap()
    };
    let manifest: serde_json::Value = serde_json::from_slice(&read_blob(manifest_digest)).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(manifest["annotations"]["org.example.ci"], "yes");
    assert_eq!(stdout, format!("{config}\n"), "-q prints the image ID only");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), config);
    // The metadata file: buildx's keys and layout.
    let text = std::fs::read_to_string(&md).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = meta
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "buildx.build.provenance",
            "buildx.build.ref",
            "containerimage.config.digest",
            "containerimage.descriptor",
            "containerimage.digest"
        ],
        "{text}"
    );
    assert_eq!(
        meta["buildx.build.provenance"]["buildType"],
        "https://mobyproject.org/buildkit@v1"
    );
    let build_ref = meta["buildx.build.ref"].as_str().unwrap();
    assert!(build_ref.starts_with("ci/ci0/"), "{build_ref}");
    assert_eq!(meta["containerimage.config.digest"], config);
    assert_eq!(meta["containerimage.digest"], manifest_digest);
    assert_eq!(meta["containerimage.descriptor"]["digest"], manifest_digest);
    assert!(
        text.starts_with("{\n  \"buildx.build.provenance\": {\n"),
        "{text}"
    );
    assert!(!text.ends_with('\n'));

    // --progress quiet prints the image ID too; --progress none prints nothing at all.
    let dest = format!(
        "type=oci,dest={},tar=false",
        out.path().join("again").display()
    );
    let quiet = kbx.ok(&[
        "build",
        "--builder",
        "ci",
        "--progress",
        "quiet",
        "--provenance",
        "false",
        "-o",
        &dest,
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(quiet, format!("{config}\n"));
    let o = kbx.run(&[
        "build",
        "--builder",
        "ci",
        "--progress",
        "none",
        "-o",
        &dest,
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");

    // In the progress, fetching the provenance is a step of its own, as in buildx.
    let o = kbx.run(&[
        "build",
        "--builder",
        "ci",
        "--progress",
        "plain",
        "--metadata-file",
        md.to_str().unwrap(),
        "-o",
        &dest,
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let step = err
        .lines()
        .find_map(|l| l.strip_suffix(" resolving provenance for metadata file"))
        .unwrap_or_else(|| panic!("no provenance step: {err}"));
    assert!(
        err.lines().any(|l| l.starts_with(&format!("{step} DONE "))),
        "{err}"
    );

    // host-gateway is the docker driver's only.
    let o = kbx.run(&[
        "build",
        "--builder",
        "ci",
        "--add-host",
        "gw:host-gateway",
        ctx.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.ends_with("\nERROR: unable to derive the IP value for host-gateway: host-gateway is not supported by the remote driver\n"),
        "{err}"
    );

    // A failed build leaves no image ID file behind.
    let bad = tempfile::tempdir().unwrap();
    write(
        bad.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY missing /\n",
        0o644,
    );
    let o = kbx.run(&[
        "build",
        "--builder",
        "ci",
        "--iidfile",
        iid.to_str().unwrap(),
        "-o",
        &format!(
            "type=oci,dest={},tar=false",
            out.path().join("bad").display()
        ),
        bad.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(!iid.exists());
}

#[test]
fn docker_driver_resolves_host_gateway_and_uses_engine_images() {
    let Some(d) = Dockerd::start() else { return };
    let kbx = Kbx::new(&d);
    let base = d.base_image();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        format!("FROM {base}\nRUN cat /etc/hosts > /hosts\nFROM scratch\nCOPY --from=0 /hosts /\n")
            .as_bytes(),
        0o644,
    );
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let ctx = ctx.path().to_str().unwrap();
    // The base image exists only in the Engine: the docker driver resolves images there first
    // (image-resolve-mode=local), as buildx's docker driver does.
    // (The private Engine has no bridge network: RUN steps get none.)
    kbx.ok(&[
        "build",
        "--network",
        "none",
        "--add-host",
        "db=10.0.0.5",
        "-o",
        &dest,
        ctx,
    ]);
    let hosts = std::fs::read_to_string(out.path().join("hosts")).unwrap();
    assert!(hosts.lines().any(|l| l == "10.0.0.5\tdb"), "{hosts}");
    // The Engine's BuildKit (Docker 20.10) keeps no build history: the metadata file has no
    // provenance, as with buildx, and names the `default` builder and node.
    let md = out.path().join("md.json");
    kbx.ok(&[
        "build",
        "--network",
        "none",
        "--metadata-file",
        md.to_str().unwrap(),
        "-o",
        &dest,
        ctx,
    ]);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&md).unwrap()).unwrap();
    assert!(
        meta["buildx.build.ref"]
            .as_str()
            .unwrap()
            .starts_with("default/default/"),
        "{meta}"
    );
    // host-gateway is the address the Engine's BuildKit names in its worker label; an Engine
    // without one (Docker 20.10) gets buildx's error.
    let o = kbx.run(&[
        "build",
        "--network",
        "none",
        "--add-host",
        "gw:host-gateway",
        "-o",
        &dest,
        ctx,
    ]);
    if o.status.success() {
        let hosts = std::fs::read_to_string(out.path().join("hosts")).unwrap();
        let gw = hosts
            .lines()
            .find_map(|l| l.strip_suffix("\tgw"))
            .unwrap_or_else(|| panic!("no gw entry: {hosts}"));
        assert!(gw.parse::<std::net::IpAddr>().is_ok(), "{hosts}");
    } else {
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "ERROR: unable to derive the IP value for host-gateway: host-gateway IP not found\n"
        );
    }
}

/// The cached Buildx 0.29.1 (`conformance/scripts/fetch-buildx.sh`), or `None` (skip) outside
/// CI.
fn buildx_0_29() -> Option<PathBuf> {
    let root = match std::env::var_os("KBX_BUILDX_CACHE") {
        Some(d) => PathBuf::from(d),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
            })
            .join("kbx"),
    };
    let bin = root.join("buildx-0.29.1/docker-buildx");
    if bin.is_file() {
        return Some(bin);
    }
    assert!(
        std::env::var("CI").ok().as_deref() != Some("true"),
        "{} missing: run conformance/scripts/fetch-buildx.sh (CI=true, so this is a failure)",
        bin.display()
    );
    eprintln!(
        "SKIP: {} missing: run conformance/scripts/fetch-buildx.sh",
        bin.display()
    );
    None
}

/// Buildx with its own store under `home`, no Docker Engine and only `PATH` from the
/// environment.
fn buildx_in(buildx: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(buildx);
    cmd.env_clear()
        .env("HOME", home)
        .env("BUILDX_CONFIG", home.join("buildx"))
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

/// A kbx user without a Docker Engine, with a `remote` builder `name` on `addr`.
fn remote_kbx(name: &str, addr: &str) -> Kbx {
    let kbx = Kbx {
        home: tempfile::tempdir().unwrap(),
        docker_host: "unix:///nonexistent/docker.sock".to_owned(),
    };
    kbx.ok(&["create", "--name", name, "--driver", "remote", addr]);
    kbx
}

/// A metadata file with what differs from build to build replaced: digests, sizes, times and
/// the solve reference.
fn normalized_metadata(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let mut line = line.to_owned();
        // Every digest, also inside a value (`name@sha256:…`).
        let mut from = 0;
        while let Some(i) = line[from..]
            .find("sha256:")
            .map(|i| from + i + "sha256:".len())
        {
            let end = line[i..]
                .find(|c: char| !c.is_ascii_hexdigit())
                .map_or(line.len(), |e| i + e);
            line.replace_range(i..end, "DIGEST");
            from = i + "DIGEST".len();
        }
        if let Some(i) = line.find("\"size\": ") {
            let start = i + "\"size\": ".len();
            let end = line[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(line.len(), |e| start + e);
            line.replace_range(start..end, "SIZE");
        }
        if line.contains("\"org.opencontainers.image.created\": ") {
            line = "      \"org.opencontainers.image.created\": \"TIME\"\n".to_owned();
        }
        if let Some(i) = line.find("\"buildx.build.ref\": \"") {
            let value = i + "\"buildx.build.ref\": \"".len();
            if let Some(slash) = line[value..].rfind('/') {
                let end = line[value..].find('"').map_or(line.len(), |e| value + e);
                line.replace_range(value + slash + 1..end, "REF");
            }
        }
        out.push_str(&line);
    }
    out
}

#[test]
fn metadata_file_is_buildx_029s_byte_for_byte() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let (ctx_dir, _) = context();
    let ctx = ctx_dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Buildx and kbx, each with a builder of the same name in its own store.
    let bx_home = tempfile::tempdir().unwrap();
    let bx = |args: &[&str], provenance: Option<&str>| {
        let mut cmd = buildx_in(&buildx, bx_home.path());
        if let Some(p) = provenance {
            cmd.env("BUILDX_METADATA_PROVENANCE", p);
        }
        let o = cmd.args(args).output().unwrap();
        assert!(
            o.status.success(),
            "buildx {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    bx(
        &["create", "--name", "meta", "--driver", "remote", &d.addr()],
        None,
    );
    let kbx = remote_kbx("meta", &d.addr());
    // The default (the build record's provenance, `min`), `max` on a cache-only build, no
    // provenance, and two exporters.
    let cases = [
        ("oci", "type=oci,dest={}.tar", None),
        ("image", "type=image,name=kbx.test/meta:1", None),
        ("oci-disabled", "type=oci,dest={}.tar", Some("disabled")),
        ("cacheonly-false", "type=cacheonly", Some("false")),
        // Attributes only the daemon reads: an unnamed image gets the dangling prefix.
        (
            "dangling",
            "type=image,dangling-name-prefix=kbx.test/dangling,unpack=false,store=true,\
             buildinfo-attrs=true",
            None,
        ),
    ];
    for (what, exporter, provenance) in cases {
        let theirs = out.path().join(format!("buildx-{what}.json"));
        let ours = out.path().join(format!("kbx-{what}.json"));
        let dest = |who: &str| {
            exporter.replace(
                "{}",
                &out.path()
                    .join(format!("{who}-{what}"))
                    .display()
                    .to_string(),
            )
        };
        let args = |file: &Path, who: &str| {
            [
                "build".to_owned(),
                "--builder".to_owned(),
                "meta".to_owned(),
                "--progress".to_owned(),
                "quiet".to_owned(),
                "--provenance".to_owned(),
                "false".to_owned(),
                "--metadata-file".to_owned(),
                file.display().to_string(),
                "-o".to_owned(),
                dest(who),
                ctx.to_owned(),
            ]
        };
        let theirs_args = args(&theirs, "buildx");
        bx(
            &theirs_args.iter().map(String::as_str).collect::<Vec<_>>(),
            provenance,
        );
        let ours_args = args(&ours, "kbx");
        let mut cmd = kbx.command(&ours_args.iter().map(String::as_str).collect::<Vec<_>>());
        if let Some(p) = provenance {
            cmd.env("BUILDX_METADATA_PROVENANCE", p);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let theirs = std::fs::read_to_string(theirs).unwrap();
        let ours = std::fs::read_to_string(ours).unwrap();
        assert_eq!(
            normalized_metadata(&ours),
            normalized_metadata(&theirs),
            "{what}:\nbuildx:\n{theirs}\nkbx:\n{ours}"
        );
        assert!(
            theirs.contains("\"buildx.build.ref\": \"meta/meta0/"),
            "{theirs}"
        );
        assert_eq!(
            theirs.contains("\"buildx.build.provenance\": {"),
            provenance.is_none(),
            "{theirs}"
        );
        assert_eq!(
            theirs.contains("\"image.name\": \"kbx.test/dangling@sha256:"),
            what == "dangling",
            "{theirs}"
        );
    }
}

/// Flag values Buildx 0.29.1 refuses only once it has reached a builder (`failed to build: …`):
/// kbx refuses them before, with the same text after its `--FLAG "VALUE": ` prefix (K21).
#[test]
fn late_flag_errors_are_buildx_029s() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let (ctx_dir, _) = context();
    let ctx = ctx_dir.path().to_str().unwrap();
    let bx_home = tempfile::tempdir().unwrap();
    let bx = |args: &[&str]| {
        buildx_in(&buildx, bx_home.path())
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        bx(&["create", "--name", "late", "--driver", "remote", &d.addr()])
            .status
            .success()
    );
    let kbx = remote_kbx("late", &d.addr());
    let last_error = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("ERROR: "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no ERROR line: {o:?}"))
    };
    let cases: &[(&str, &str, &str)] = &[
        ("--add-host", "db:10.0.0.300", "db:10.0.0.300"),
        ("--add-host", "a=1.1.1.1,nocolon", "nocolon"),
        ("--add-host", "gw:host-gateway", ""),
        ("--allow", "network", "network"),
        (
            "--allow",
            "network.host,security.insecure",
            "network.host,security.insecure",
        ),
        ("--allow", "device=gpu,x", "device=gpu,x"),
        ("--annotation", "blob:a=b", "blob:a=b"),
        ("--annotation", "novalue", "novalue"),
        ("--annotation", "Index:a=b", "Index:a=b"),
        ("--annotation", "manifest[]:a=b", "manifest[]:a=b"),
    ];
    for &(flag, value, entry) in cases {
        let theirs = last_error(&bx(&["build", "--builder", "late", flag, value, ctx]));
        let theirs = theirs.strip_prefix("failed to build: ").unwrap_or(&theirs);
        let theirs = theirs.strip_prefix("parse annotations: ").unwrap_or(theirs);
        let ours = last_error(&kbx.run(&["build", "--builder", "late", flag, value, ctx]));
        // host-gateway fails once the builder is known, in both.
        let ours = if entry.is_empty() {
            ours
        } else {
            ours.strip_prefix(&format!("{flag} {entry:?}: "))
                .unwrap_or_else(|| panic!("{flag} {value}: {ours:?} names no flag and value"))
                .to_owned()
        };
        assert_eq!(ours, theirs, "{flag} {value}");
    }
    // --no-cache with --no-cache-filter, and -q with a --progress it cannot go with.
    for args in [
        &["--no-cache", "--no-cache-filter", "s"][..],
        &["-q", "--progress", "plain"][..],
    ] {
        let mut all = vec!["build", "--builder", "late"];
        all.extend_from_slice(args);
        all.push(ctx);
        let theirs = last_error(&bx(&all));
        let theirs = theirs.strip_prefix("failed to build: ").unwrap_or(&theirs);
        assert_eq!(last_error(&kbx.run(&all)), theirs, "{args:?}");
    }
}

/// Plain progress with what differs from run to run masked: durations and the times in front
/// of log lines (`#5 0.066 hi`) dropped, digests replaced, kbx's own `#0 building on …` line
/// (node and pod) left out, and so are lines of a running status (`#2 transferring context:`,
/// `#3 transferring context: 1.02MB`) that its `done` line follows, and the `DONE` and repeated
/// header of a step that ran twice and was printed in between: whether a print came while it
/// ran depends on when the daemon's messages arrive, in both tools.
fn masked_progress(text: &str) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("#0 building on "))
        .map(|l| {
            l.split(' ')
                .enumerate()
                .filter(|(i, w)| {
                    let decimal = |t: &str| t.contains('.') && t.parse::<f64>().is_ok();
                    let offset = *i == 1 && decimal(w);
                    !offset && !decimal(w.strip_suffix('s').unwrap_or("x"))
                })
                .map(|(_, w)| match w.find("sha256:") {
                    Some(i) => format!("{}sha256:D", &w[..i]),
                    None => w.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let running = |i: usize| {
        let l = &lines[i];
        if l.ends_with(" done") {
            return false;
        }
        let mut words: Vec<&str> = l.split(' ').collect();
        while words.len() > 2
            && words
                .last()
                .is_some_and(|w| *w == "/" || w.starts_with(|c: char| c.is_ascii_digit()))
        {
            words.pop();
        }
        let prefix = format!("{} ", words.join(" "));
        words.len() > 1
            && lines[i + 1..]
                .iter()
                .any(|m| m.starts_with(&prefix) && m.ends_with(" done"))
    };
    let lines: Vec<String> = (0..lines.len())
        .filter(|i| !running(*i))
        .map(|i| lines[i].clone())
        .collect();
    // A step the daemon ran twice (`load .dockerignore`) is printed done and then again when a
    // print fell between its two runs: its first `DONE` and the repeated header go.
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let n = lines[i]
            .strip_suffix(" DONE")
            .filter(|n| n.starts_with('#'));
        if let Some(n) = n
            && lines.get(i + 1).is_some_and(String::is_empty)
            && let Some(header) = lines.get(i + 2)
            && header.starts_with(&format!("{n} "))
            && out.contains(header)
        {
            i += 3;
            continue;
        }
        out.push(lines[i].clone());
        i += 1;
    }
    out
}

/// Builds `ctx` with `--progress plain --no-cache` by Buildx 0.29.1 and by kbx, each with a
/// remote builder `name` on `d`, and returns both outputs (Buildx's first).
fn plain_progress_of_both(
    buildx: &Path,
    d: &support::Buildkitd,
    name: &str,
    ctx: &str,
) -> (String, String) {
    let out = tempfile::tempdir().unwrap();
    let bx_home = tempfile::tempdir().unwrap();
    let bx = |args: &[&str]| {
        let o = buildx_in(buildx, bx_home.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "buildx {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    bx(&["create", "--name", name, "--driver", "remote", &d.addr()]);
    let kbx = remote_kbx(name, &d.addr());
    let args = |who: &str| {
        vec![
            "build".to_owned(),
            "--builder".to_owned(),
            name.to_owned(),
            "--progress".to_owned(),
            "plain".to_owned(),
            "--no-cache".to_owned(),
            "-o".to_owned(),
            format!("type=local,dest={}", out.path().join(who).display()),
            ctx.to_owned(),
        ]
    };
    let theirs = bx(&args("buildx")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let o = kbx
        .command(&args("kbx").iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ours = String::from_utf8_lossy(&o.stderr).into_owned();
    eprintln!("buildx:\n{theirs}\nkbx:\n{ours}");
    (theirs, ours)
}

/// `--progress plain` of one build by Buildx 0.29.1 and by kbx on one buildkitd, every step
/// run (`--no-cache`): the same lines in the same order, once durations and digests are
/// masked (`#0 building with …` first, sizes with buildx's units, statuses before `DONE`).
#[test]
fn plain_progress_is_buildx_029s_line_for_line() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let (ctx_dir, _) = context();
    let ctx = ctx_dir.path().to_str().unwrap();
    let (theirs, ours) = plain_progress_of_both(&buildx, &d, "plain", ctx);
    assert_eq!(
        masked_progress(&ours),
        masked_progress(&theirs),
        "\nbuildx:\n{theirs}\nkbx:\n{ours}"
    );
    assert!(theirs.starts_with("#0 building with \"plain\" instance using remote driver\n\n"));
}

/// `--progress plain` of a long build (a `RUN` step that prints a line a second for 12
/// seconds, after a busybox stage and a copied tree) by Buildx 0.29.1 and by kbx on one
/// buildkitd: the same lines in the same order once durations, log times and digests are
/// masked; each log line carries its time since the step started, with two decimals from 10
/// seconds on.
#[test]
fn plain_progress_of_a_long_build_is_buildx_029s_line_for_line() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let Some(ctx_dir) = run_context(12) else {
        return;
    };
    let ctx = ctx_dir.path().to_str().unwrap();
    let (theirs, ours) = plain_progress_of_both(&buildx, &d, "long", ctx);
    assert_eq!(
        masked_progress(&ours),
        masked_progress(&theirs),
        "\nbuildx:\n{theirs}\nkbx:\n{ours}"
    );
    for (who, text) in [("buildx", &theirs), ("kbx", &ours)] {
        let line = text
            .lines()
            .find(|l| l.ends_with(" line-11"))
            .unwrap_or_else(|| panic!("{who}: {text}"));
        let offset = line.split(' ').nth(1).unwrap_or_default();
        assert!(
            offset.len() == 5 && offset.starts_with('1') && offset.as_bytes()[2] == b'.',
            "{who}: {line}"
        );
    }
}

/// [`masked_progress`] in blocks (a step's lines between empty lines) with step numbers
/// masked, sorted: the daemon runs several exporters at once, so their steps come in either
/// order in both tools.
fn masked_blocks(text: &str) -> Vec<Vec<String>> {
    let mut blocks: Vec<Vec<String>> = masked_progress(text)
        .split(String::is_empty)
        .map(|b| {
            b.iter()
                .map(|l| match l.split_once(' ') {
                    Some((n, rest)) if n.starts_with('#') && n != "#0" => format!("#N {rest}"),
                    _ => l.clone(),
                })
                .collect()
        })
        .collect();
    blocks.sort();
    blocks
}

/// Entries of a directory as [`snapshot`] gives them: path, type, mode and bytes.
type Entries = Vec<(String, char, u32, Vec<u8>)>;

/// A directory as a test compares it: the mode of the directory itself and [`snapshot`] of
/// its entries.
fn tree(dir: &Path) -> (u32, Entries) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777;
    (mode, snapshot(dir))
}

/// Two outputs in one build (`-o type=local,dest=… -o type=tar,dest=…`) and `-o
/// type=cacheonly`, by Buildx 0.29.1 and by kbx on one buildkitd v0.13.2: the same files (the
/// directory it creates, each entry's type, mode and bytes; the tar archive byte for byte),
/// nothing on stdout, and the same progress once durations and digests are masked (with the
/// steps of the two exporters, which the daemon runs at once, in either order).
#[test]
fn several_outputs_and_cacheonly_are_buildx_029s() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let (ctx_dir, _) = context();
    let ctx = ctx_dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let bx_home = tempfile::tempdir().unwrap();
    let o = buildx_in(&buildx, bx_home.path())
        .args(["create", "--name", "outs", "--driver", "remote", &d.addr()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let kbx = remote_kbx("outs", &d.addr());
    let run = |who: &str, outputs: &[String]| -> (String, String) {
        let mut args = vec![
            "build".to_owned(),
            "--builder".to_owned(),
            "outs".to_owned(),
            "--progress".to_owned(),
            "plain".to_owned(),
            "--no-cache".to_owned(),
        ];
        for o in outputs {
            args.push("-o".to_owned());
            args.push(o.clone());
        }
        args.push(ctx.to_owned());
        let o = if who == "buildx" {
            buildx_in(&buildx, bx_home.path())
                .args(&args)
                .output()
                .unwrap()
        } else {
            kbx.command(&args.iter().map(String::as_str).collect::<Vec<_>>())
                .output()
                .unwrap()
        };
        assert!(
            o.status.success(),
            "{who} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };

    let mut got = Vec::new();
    for who in ["buildx", "kbx"] {
        let base = out.path().join(who);
        std::fs::create_dir(&base).unwrap();
        let outputs = [
            format!("type=local,dest={}", base.join("a").display()),
            format!("type=tar,dest={}", base.join("b.tar").display()),
        ];
        let (stdout, stderr) = run(who, &outputs);
        assert_eq!(stdout, "", "{who}");
        got.push((
            tree(&base.join("a")),
            std::fs::read(base.join("b.tar")).unwrap(),
            stderr,
        ));
    }
    let (theirs, ours) = (&got[0], &got[1]);
    assert_eq!(ours.0, theirs.0, "the local output's tree");
    assert_eq!(
        theirs.0.1.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        [
            "a.txt",
            "bin",
            "bin/run.sh",
            "deep",
            "deep/empty",
            "deep/er",
            "deep/er/leaf.bin",
            "link"
        ]
    );
    assert!(ours.1 == theirs.1, "the tar outputs differ");
    assert_eq!(
        masked_blocks(&ours.2),
        masked_blocks(&theirs.2),
        "\nbuildx:\n{}\nkbx:\n{}",
        theirs.2,
        ours.2
    );
    for (who, text) in [("buildx", &theirs.2), ("kbx", &ours.2)] {
        assert!(
            text.contains(" exporting to client directory\n"),
            "{who}: {text}"
        );
        assert!(
            text.contains(" exporting to client tarball\n"),
            "{who}: {text}"
        );
    }

    // `cacheonly`: the build runs, nothing is exported or written.
    let mut got = Vec::new();
    for who in ["buildx", "kbx"] {
        let cwd_before = snapshot(out.path());
        let (stdout, stderr) = run(who, &["type=cacheonly".to_owned()]);
        assert_eq!(stdout, "", "{who}");
        assert_eq!(snapshot(out.path()), cwd_before, "{who} wrote files");
        got.push(stderr);
    }
    assert_eq!(
        masked_progress(&got[1]),
        masked_progress(&got[0]),
        "\nbuildx:\n{}\nkbx:\n{}",
        got[0],
        got[1]
    );
    assert!(got[0].contains(" [1/1] COPY src/ /\n"), "{}", got[0]);
    assert!(!got[0].contains(" exporting "), "{}", got[0]);
}

/// `platform-split` of `type=local`, by Buildx 0.29.1 and by kbx on one buildkitd v0.13.2: two
/// platforms go to `linux_amd64/` and `linux_arm64/` by default, one platform with
/// `platform-split=true` to the directory itself (the same trees, modes and bytes); two
/// platforms with `platform-split=false` fail in both with the daemon's `cannot overwrite …
/// when split option is disabled`, which kbx reports rather than the transfer the daemon broke
/// off.
#[test]
fn local_platform_split_is_buildx_029s() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let (ctx_dir, _) = context();
    let ctx = ctx_dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let bx_home = tempfile::tempdir().unwrap();
    let o = buildx_in(&buildx, bx_home.path())
        .args(["create", "--name", "split", "--driver", "remote", &d.addr()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let kbx = remote_kbx("split", &d.addr());
    let run = |who: &str, platforms: &str, output: &str| -> Output {
        let args = [
            "build",
            "--builder",
            "split",
            "--progress",
            "plain",
            "--platform",
            platforms,
            "-o",
            output,
            ctx,
        ];
        if who == "buildx" {
            buildx_in(&buildx, bx_home.path())
                .args(args)
                .output()
                .unwrap()
        } else {
            kbx.command(&args).output().unwrap()
        }
    };
    for (what, platforms, split) in [
        ("default", "linux/amd64,linux/arm64", ""),
        ("one", "linux/amd64", ",platform-split=true"),
    ] {
        let mut trees = Vec::new();
        for who in ["buildx", "kbx"] {
            let dest = out.path().join(format!("{who}-{what}"));
            let o = run(
                who,
                platforms,
                &format!("type=local,dest={}{split}", dest.display()),
            );
            assert!(
                o.status.success(),
                "{who} {what}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            trees.push(tree(&dest));
        }
        assert_eq!(trees[1], trees[0], "{what}");
        let top: Vec<&str> = trees[0]
            .1
            .iter()
            .map(|e| e.0.as_str())
            .filter(|p| !p.contains('/'))
            .collect();
        if what == "default" {
            assert_eq!(top, ["linux_amd64", "linux_arm64"]);
        } else {
            assert!(top.contains(&"a.txt"), "{top:?}");
        }
    }
    for who in ["buildx", "kbx"] {
        let dest = out.path().join(format!("{who}-nosplit"));
        let o = run(
            who,
            "linux/amd64,linux/arm64",
            &format!("type=local,dest={},platform-split=false", dest.display()),
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{who}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("ERROR: ")
                && last.contains("cannot overwrite ")
                && last.contains(" when split option is disabled"),
            "{who}: {stderr}"
        );
    }
}

/// The shape of an OCI layout (`index.json` and the blobs it leads to) with what differs from
/// build to build masked: each descriptor's media type, platform and annotations, the
/// annotations of each index and manifest, and each manifest's config and layer media types
/// with the names of the layers' annotations; digests and creation times are replaced.
fn oci_shape(dir: &Path) -> serde_json::Value {
    use serde_json::{Value, json};
    fn masked(annotations: &Value) -> Value {
        let mut out = serde_json::Map::new();
        if let Some(m) = annotations.as_object() {
            for (k, v) in m {
                let v = if k.ends_with(".created") {
                    json!("TIME")
                } else if v.as_str().is_some_and(|s| s.contains("sha256:")) {
                    json!("DIGEST")
                } else {
                    v.clone()
                };
                out.insert(k.clone(), v);
            }
        }
        Value::Object(out)
    }
    fn walk(dir: &Path, desc: &Value) -> Value {
        let blob = |d: &Value| -> Value {
            let hex = d["digest"].as_str().unwrap().trim_start_matches("sha256:");
            serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap())
                .unwrap()
        };
        let media = desc["mediaType"].as_str().unwrap_or_default();
        let mut out = json!({
            "mediaType": media,
            "platform": desc["platform"],
            "annotations": masked(&desc["annotations"]),
        });
        if media.contains("index") || media.contains("manifest.list") {
            let b = blob(desc);
            out["index_annotations"] = masked(&b["annotations"]);
            out["manifests"] = b["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| walk(dir, m))
                .collect();
        } else if media.contains("manifest") {
            let b = blob(desc);
            out["manifest_annotations"] = masked(&b["annotations"]);
            out["config"] = b["config"]["mediaType"].clone();
            out["layers"] = b["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    let mut keys: Vec<&String> = l["annotations"]
                        .as_object()
                        .map(|m| m.keys().collect())
                        .unwrap_or_default();
                    keys.sort();
                    json!([l["mediaType"], keys])
                })
                .collect();
        }
        out
    }
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| walk(dir, m))
        .collect()
}

/// Exporter attributes of `type=oci` by Buildx 0.29.1 and by kbx on one buildkitd v0.13.2:
/// the same layouts (media types, platforms, annotations; digests and times masked) for
/// `compression=estargz` with `force-compression`, `annotation-index.*`,
/// `annotation-manifest-descriptor[PLATFORM].*` and `name-canonical` on two platforms,
/// `compression=zstd` with `compression-level`, and `oci-mediatypes=false`; estargz's TOC
/// annotations, the index and descriptor annotations, zstd layers and Docker media types are
/// seen in the layouts.
#[test]
fn oci_exporter_attributes_are_buildx_029s() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let (ctx_dir, _) = context();
    let ctx = ctx_dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let bx_home = tempfile::tempdir().unwrap();
    let o = buildx_in(&buildx, bx_home.path())
        .args(["create", "--name", "attrs", "--driver", "remote", &d.addr()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let kbx = remote_kbx("attrs", &d.addr());
    let cases = [
        (
            "estargz",
            "linux/amd64,linux/arm64",
            "compression=estargz,force-compression=true,oci-mediatypes=true,\
             annotation-index.org.example=idx,\
             annotation-manifest-descriptor[linux/arm64].org.example=arm,\
             name=kbx.test/attrs:1,name-canonical=true",
            &[
                "containerd.io/snapshot/stargz/toc.digest",
                "\"org.example\":\"idx\"",
                "\"org.example\":\"arm\"",
            ][..],
        ),
        (
            "zstd",
            "linux/amd64",
            "compression=zstd,compression-level=3,force-compression=true",
            &["application/vnd.oci.image.layer.v1.tar+zstd"][..],
        ),
        (
            "docker-types",
            "linux/amd64",
            "oci-mediatypes=false",
            &[
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "application/vnd.docker.distribution.manifest.v2+json",
            ][..],
        ),
    ];
    for (what, platforms, attrs, seen) in cases {
        let mut shapes = Vec::new();
        for who in ["buildx", "kbx"] {
            let dir = out.path().join(format!("{who}-{what}"));
            std::fs::create_dir(&dir).unwrap();
            let tar = dir.join("o.tar");
            let output = format!("type=oci,dest={},{attrs}", tar.display());
            let args = [
                "build",
                "--builder",
                "attrs",
                "--progress",
                "quiet",
                "--platform",
                platforms,
                "-o",
                &output,
                ctx,
            ];
            let o = if who == "buildx" {
                buildx_in(&buildx, bx_home.path())
                    .args(args)
                    .output()
                    .unwrap()
            } else {
                kbx.command(&args).output().unwrap()
            };
            assert!(
                o.status.success(),
                "{who} {what}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let st = Command::new("tar")
                .arg("-xf")
                .arg(&tar)
                .arg("-C")
                .arg(&dir)
                .status()
                .unwrap();
            assert!(st.success());
            shapes.push(oci_shape(&dir));
        }
        assert_eq!(
            shapes[1], shapes[0],
            "{what}:\nbuildx: {:#}\nkbx: {:#}",
            shapes[0], shapes[1]
        );
        let text = shapes[0].to_string();
        for s in seen {
            assert!(text.contains(s), "{what}: {s} not in {text}");
        }
    }
}

/// `SOURCE_DATE_EPOCH=0` with `-o type=oci,rewrite-timestamp=true`, by Buildx 0.29.1 and by
/// kbx on one buildkitd v0.13.2: the same archive byte for byte, whose layer's files are dated
/// 1970-01-01.
#[test]
fn rewrite_timestamp_gives_buildx_029s_archive_byte_for_byte() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY a.txt /\n",
        0o644,
    );
    write(ctx.path(), "a.txt", b"alpha\n", 0o644);
    let ctx = ctx.path().to_str().unwrap().to_owned();
    let out = tempfile::tempdir().unwrap();
    let bx_home = tempfile::tempdir().unwrap();
    let o = buildx_in(&buildx, bx_home.path())
        .args(["create", "--name", "epoch", "--driver", "remote", &d.addr()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let kbx = remote_kbx("epoch", &d.addr());
    let mut archives = Vec::new();
    for who in ["buildx", "kbx"] {
        let tar = out.path().join(format!("{who}.tar"));
        let output = format!("type=oci,dest={},rewrite-timestamp=true", tar.display());
        let args = [
            "build",
            "--builder",
            "epoch",
            "--progress",
            "quiet",
            "--provenance",
            "false",
            "-o",
            &output,
            &ctx,
        ];
        let mut cmd = if who == "buildx" {
            let mut c = buildx_in(&buildx, bx_home.path());
            c.args(args);
            c
        } else {
            kbx.command(&args)
        };
        let o = cmd.env("SOURCE_DATE_EPOCH", "0").output().unwrap();
        assert!(
            o.status.success(),
            "{who}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        archives.push(std::fs::read(&tar).unwrap());
    }
    assert!(archives[0] == archives[1], "the archives differ");

    let dir = out.path().join("unpacked");
    std::fs::create_dir(&dir).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(out.path().join("kbx.tar"))
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let read = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        dir.join("blobs/sha256").join(hex)
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(read(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layer = read(manifest["layers"][0]["digest"].as_str().unwrap());
    let listing = Command::new("tar")
        .arg("--full-time")
        .arg("-tvzf")
        .arg(&layer)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains(" 1970-01-01 00:00:00 a.txt"), "{listing}");
}

/// What a registry holds under `reference` (a tag or a digest of `repo`), with digests and
/// times masked: each manifest's media type, platform, descriptor and manifest annotations and
/// layer media types, following an index.
fn pushed_shape(reg: &common::Registry, repo: &str, reference: &str) -> serde_json::Value {
    use serde_json::{Value, json};
    const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
    fn masked(v: &Value) -> Value {
        let mut out = serde_json::Map::new();
        if let Some(m) = v.as_object() {
            for (k, v) in m {
                let v = if k.ends_with(".created") {
                    json!("TIME")
                } else if v.as_str().is_some_and(|s| s.contains("sha256:")) {
                    json!("DIGEST")
                } else {
                    v.clone()
                };
                out.insert(k.clone(), v);
            }
        }
        Value::Object(out)
    }
    let get = |r: &str| -> Value {
        let a = reg.get(&format!("/v2/{repo}/manifests/{r}"), Some(ACCEPT));
        assert_eq!(
            a.status,
            200,
            "{repo}:{r}: {}",
            String::from_utf8_lossy(&a.body)
        );
        serde_json::from_slice(&a.body).unwrap()
    };
    let top = get(reference);
    let mut out = json!({
        "mediaType": top["mediaType"],
        "annotations": masked(&top["annotations"]),
    });
    if let Some(ms) = top["manifests"].as_array() {
        out["manifests"] = ms
            .iter()
            .map(|m| {
                let inner = get(m["digest"].as_str().unwrap());
                json!({
                    "mediaType": m["mediaType"],
                    "platform": m["platform"],
                    "descriptor_annotations": masked(&m["annotations"]),
                    "annotations": masked(&inner["annotations"]),
                    "layers": inner["layers"].as_array().unwrap().iter()
                        .map(|l| l["mediaType"].clone()).collect::<Vec<_>>(),
                })
            })
            .collect();
    } else {
        out["layers"] = top["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].clone())
            .collect();
    }
    out
}

/// `type=image` attributes on a push to a loopback registry (plain HTTP through the daemon's
/// `buildkitd.toml`), by Buildx 0.29.1 and by kbx on one buildkitd v0.13.2:
/// `annotation.*`/`annotation-index.*` land in the pushed manifests and index as Buildx puts
/// them, and `push-by-digest=true` pushes the image that `--metadata-file` names without a
/// tag, in both.
#[test]
fn image_exporter_attributes_are_buildx_029s() {
    use common::Registry;
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let reg = Registry::start();
    let config = format!("[registry.\"{}\"]\n  http = true\n", reg.host());
    let Some(d) = Buildkitd::start_with_config(Some(&config)) else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY a.txt /\n",
        0o644,
    );
    write(ctx.path(), "a.txt", b"alpha\n", 0o644);
    let ctx = ctx.path().to_str().unwrap().to_owned();
    let out = tempfile::tempdir().unwrap();
    let bx_home = tempfile::tempdir().unwrap();
    let o = buildx_in(&buildx, bx_home.path())
        .args(["create", "--name", "img", "--driver", "remote", &d.addr()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let kbx = remote_kbx("img", &d.addr());
    let build = |who: &str, output: &str, metadata: &Path| {
        let args = [
            "build",
            "--builder",
            "img",
            "--progress",
            "quiet",
            "--metadata-file",
            metadata.to_str().unwrap(),
            "-o",
            output,
            &ctx,
        ];
        let o = if who == "buildx" {
            buildx_in(&buildx, bx_home.path())
                .args(args)
                .output()
                .unwrap()
        } else {
            kbx.command(&args).output().unwrap()
        };
        assert!(
            o.status.success(),
            "{who} {output}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(metadata).unwrap()).unwrap();
        meta["containerimage.digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: no digest in {meta}"))
            .to_owned()
    };

    let mut shapes = Vec::new();
    for who in ["buildx", "kbx"] {
        let repo = format!("kbx/annotated-{who}");
        build(
            who,
            &format!(
                "type=image,name={}/{repo}:1,push=true,annotation.org.example=m,\
                 annotation-index.org.example=i",
                reg.host()
            ),
            &out.path().join(format!("{who}-annotated.json")),
        );
        shapes.push(pushed_shape(&reg, &repo, "1"));
    }
    assert_eq!(
        shapes[1], shapes[0],
        "\nbuildx: {:#}\nkbx: {:#}",
        shapes[0], shapes[1]
    );
    let text = shapes[0].to_string();
    assert!(text.contains("\"org.example\":\"m\""), "{text}");
    assert!(text.contains("\"org.example\":\"i\""), "{text}");

    let mut shapes = Vec::new();
    for who in ["buildx", "kbx"] {
        let repo = format!("kbx/bydigest-{who}");
        let digest = build(
            who,
            &format!(
                "type=image,name={}/{repo},push=true,push-by-digest=true",
                reg.host()
            ),
            &out.path().join(format!("{who}-bydigest.json")),
        );
        let tags = reg.get(&format!("/v2/{repo}/tags/list"), None);
        let tags: serde_json::Value = serde_json::from_slice(&tags.body).unwrap_or_default();
        assert!(
            tags["tags"].as_array().is_none_or(Vec::is_empty),
            "{who}: {tags}"
        );
        shapes.push(pushed_shape(&reg, &repo, &digest));
    }
    assert_eq!(
        shapes[1], shapes[0],
        "\nbuildx: {:#}\nkbx: {:#}",
        shapes[0], shapes[1]
    );
}

/// Keys Buildx reads itself, by Buildx 0.29.1 and by kbx on one buildkitd v0.13.2: `dest=-`
/// of `type=tar` and `-o -` write the same archive to stdout byte for byte (with `--progress
/// quiet`, no image ID line after it), and a quoted name
/// list (`"name=kbx.test/a:1,kbx.test/b:1"`) names the image under both names in an `oci`
/// archive, as Buildx does.
#[test]
fn outputs_to_stdout_and_name_lists_are_buildx_029s() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let (ctx_dir, _) = context();
    let ctx = ctx_dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let bx_home = tempfile::tempdir().unwrap();
    let o = buildx_in(&buildx, bx_home.path())
        .args(["create", "--name", "names", "--driver", "remote", &d.addr()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let kbx = remote_kbx("names", &d.addr());
    let run = |who: &str, output: &str| -> Vec<u8> {
        let args = [
            "build",
            "--builder",
            "names",
            "--progress",
            "quiet",
            "--provenance",
            "false",
            "-o",
            output,
            ctx,
        ];
        let o = if who == "buildx" {
            buildx_in(&buildx, bx_home.path())
                .args(args)
                .output()
                .unwrap()
        } else {
            kbx.command(&args).output().unwrap()
        };
        assert!(
            o.status.success(),
            "{who} {output}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    for output in ["type=tar,dest=-", "-"] {
        let theirs = run("buildx", output);
        let ours = run("kbx", output);
        assert!(!theirs.is_empty(), "{output}: nothing on buildx's stdout");
        assert!(ours == theirs, "{output}: the archives on stdout differ");
    }
    let mut shapes = Vec::new();
    for who in ["buildx", "kbx"] {
        let dir = out.path().join(format!("{who}-names"));
        std::fs::create_dir(&dir).unwrap();
        let tar = dir.join("o.tar");
        let stdout = run(
            who,
            &format!(
                "type=oci,dest={},\"name=kbx.test/a:1,kbx.test/b:1\"",
                tar.display()
            ),
        );
        // `--progress quiet`: the image ID, as with `-q`.
        let id = String::from_utf8_lossy(&stdout);
        assert!(
            id.starts_with("sha256:") && id.ends_with('\n') && id.lines().count() == 1,
            "{who}: {id:?}"
        );
        let st = Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success());
        shapes.push(oci_shape(&dir));
    }
    assert_eq!(
        shapes[1], shapes[0],
        "\nbuildx: {:#}\nkbx: {:#}",
        shapes[0], shapes[1]
    );
    let text = shapes[0].to_string();
    assert!(
        text.contains("kbx.test/a:1") && text.contains("kbx.test/b:1"),
        "{text}"
    );
}

/// `type=oci,tar=false` (a layout directory) and `--cache-to type=local`, by Buildx 0.29.1 and
/// by kbx on one buildkitd v0.13.2 with `SOURCE_DATE_EPOCH=0`: the image layout is the same
/// tree byte for byte (`index.json` in Go's field order, `oci-layout`, the blobs, an empty
/// `ingest/`), and the cache directory has the same entries at its top.
#[test]
fn layout_directories_are_buildx_029s() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY a.txt /\n",
        0o644,
    );
    write(ctx.path(), "a.txt", b"alpha\n", 0o644);
    let ctx = ctx.path().to_str().unwrap().to_owned();
    let out = tempfile::tempdir().unwrap();
    let bx_home = tempfile::tempdir().unwrap();
    let o = buildx_in(&buildx, bx_home.path())
        .args([
            "create",
            "--name",
            "layout",
            "--driver",
            "remote",
            &d.addr(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let kbx = remote_kbx("layout", &d.addr());
    let mut got = Vec::new();
    for who in ["buildx", "kbx"] {
        let layout = out.path().join(format!("{who}-layout"));
        let cache = out.path().join(format!("{who}-cache"));
        let output = format!(
            "type=oci,tar=false,dest={},name=kbx.test/layout:1",
            layout.display()
        );
        let cache_to = format!("type=local,dest={}", cache.display());
        let args = [
            "build",
            "--builder",
            "layout",
            "--progress",
            "quiet",
            "--provenance",
            "false",
            "--cache-to",
            &cache_to,
            "-o",
            &output,
            &ctx,
        ];
        let mut cmd = if who == "buildx" {
            let mut c = buildx_in(&buildx, bx_home.path());
            c.args(args);
            c
        } else {
            kbx.command(&args)
        };
        let o = cmd.env("SOURCE_DATE_EPOCH", "0").output().unwrap();
        assert!(
            o.status.success(),
            "{who}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let top: Vec<String> = {
            let mut t: Vec<String> = std::fs::read_dir(&cache)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            t.sort();
            t
        };
        got.push((tree(&layout), top));
    }
    assert_eq!(got[1].1, got[0].1, "the cache directories' entries");
    assert_eq!(got[0].1, ["blobs", "index.json", "ingest", "oci-layout"]);
    let show = |t: &(u32, Entries)| {
        t.1.iter()
            .map(|(p, k, m, b)| format!("{p} {k} {m:o} {}\n", String::from_utf8_lossy(b)))
            .collect::<String>()
    };
    assert!(
        got[1].0 == got[0].0,
        "the layouts differ:\nbuildx:\n{}\nkbx:\n{}",
        show(&got[0].0),
        show(&got[1].0)
    );
    assert!(got[0].0.1.iter().any(|e| e.0 == "ingest" && e.1 == 'd'));
}

/// `--progress plain` of a build with a 100 MB context by Buildx 0.29.1 and by kbx on one
/// buildkitd: the same lines once masked, the transfer with buildx's units
/// (`transferring context: 100.00MB 0.9s done`) before the step's `DONE`, and the export's
/// `copying files 100.02MB 0.4s done`; the transfer's size differs in its last digit (C3).
#[test]
fn plain_progress_of_a_large_context_is_buildx_029s_line_for_line() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY big /\n",
        0o644,
    );
    // Incompressible bytes, so the transfer takes its time.
    let mut big = vec![0u8; 100_000_000];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    write(ctx.path(), "big", &big, 0o644);
    drop(big);
    let ctx_path = ctx.path().to_str().unwrap();
    let (theirs, ours) = plain_progress_of_both(&buildx, &d, "large", ctx_path);
    // The daemon counts the transfer's packets, headers included: kbx's fewer, larger packets
    // (C3) read 100.00MB where Buildx's read 100.02MB.
    let sized = |text: &str| -> Vec<String> {
        masked_progress(text)
            .into_iter()
            .map(|l| match l.split_once(" transferring context: 100.0") {
                Some((n, _)) => format!("{n} transferring context: 100.0xMB done"),
                None => l,
            })
            .collect()
    };
    assert_eq!(
        sized(&ours),
        sized(&theirs),
        "\nbuildx:\n{theirs}\nkbx:\n{ours}"
    );
    for (who, text) in [("buildx", &theirs), ("kbx", &ours)] {
        let lines: Vec<&str> = text.lines().collect();
        let i = lines
            .iter()
            .position(|l| l.contains(" transferring context: 100.0") && l.ends_with(" done"))
            .unwrap_or_else(|| panic!("{who}: {text}"));
        assert!(lines[i + 1].contains(" DONE "), "{who}: {text}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(" copying files 100.02MB ") && l.ends_with("s done")),
            "{who}: {text}"
        );
    }
}

/// `kbx dial-stdio` turns its standard input and output into a stream to the builder's
/// BuildKit: a gRPC client speaking through the child process lists the daemon's workers, and
/// the child exits when its input ends.
#[test]
fn dial_stdio_carries_grpc_to_a_remote_buildkitd() {
    use support::Buildkitd;
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let kbx = remote_kbx("dial", &d.addr());
    let mut cmd = tokio::process::Command::from(kbx.command(&["dial-stdio", "--builder", "dial"]));
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut child = cmd.spawn().unwrap();
        let stdio = std::sync::Arc::new(std::sync::Mutex::new(Some(tokio::io::join(
            child.stdout.take().unwrap(),
            child.stdin.take().unwrap(),
        ))));
        let channel = kbx_buildkit::transport::connect_with("kbx dial-stdio", move || {
            let stdio = stdio.clone();
            async move {
                stdio
                    .lock()
                    .unwrap()
                    .take()
                    .ok_or_else(|| std::io::Error::other("dial-stdio serves one connection"))
            }
        })
        .await
        .unwrap();
        let client = kbx_buildkit::Client::new(channel, kbx_buildkit::Backend::Buildkitd);
        let workers = client.list_workers().await.unwrap();
        assert!(!workers.is_empty(), "no workers through dial-stdio");
        drop(client);
        let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
            .await
            .expect("dial-stdio exits when its input ends")
            .unwrap();
        assert!(status.success(), "{status}");
    });
    // A builder kbx cannot dial this way says so.
    let o = kbx
        .command(&["dial-stdio", "--builder", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "ERROR: no builder \"nosuch\" found\n"
    );
}

/// Runs `cmd` with a new pseudo-terminal of `cols`×`rows` as its standard input, output and
/// error; returns every byte it wrote there and its exit status.
fn run_in_pty(mut cmd: Command, cols: u16, rows: u16) -> (Vec<u8>, std::process::ExitStatus) {
    use std::process::Stdio;
    let size = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().unwrap();
    // The parent's copies of the terminal go, so reading ends (EIO) when the child's do.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    });
    let status = child.wait().unwrap();
    (reader.join().unwrap(), status)
}

/// The rows a `cols`×`rows` terminal shows after a prompt line (`$ build`, as when a user
/// types the command: Buildx's first frame moves the cursor up and down a line) and `bytes`,
/// trailing blanks and blank rows at the end dropped, each with the colour of its first
/// character.
fn screen(bytes: &[u8], cols: u16, rows: u16) -> Vec<(String, vt100::Color)> {
    let mut p = vt100::Parser::new(rows, cols, 0);
    p.process(b"$ build\r\n");
    p.process(bytes);
    let s = p.screen();
    let mut out: Vec<(String, vt100::Color)> = s
        .rows(0, cols)
        .enumerate()
        .map(|(r, text)| {
            let text = text.trim_end().to_owned();
            let first = text.len() - text.trim_start().len();
            let color = u16::try_from(first)
                .ok()
                .and_then(|c| s.cell(u16::try_from(r).unwrap(), c))
                .map_or(vt100::Color::Default, vt100::Cell::fgcolor);
            (text, color)
        })
        .collect();
    while out.last().is_some_and(|(t, _)| t.is_empty()) {
        out.pop();
    }
    out
}

/// Durations (`2.6s`, `0.0s`) with their digits replaced by `#`, so columns stay in place.
fn mask_durations(row: &str) -> String {
    let chars: Vec<char> = row.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
            i += 1;
        }
        let number: String = chars[start..i].iter().collect();
        let boundary = start == 0 || chars[start - 1] == ' ' || chars[start - 1] == '(';
        if i > start
            && boundary
            && number.contains('.')
            && chars.get(i) == Some(&'s')
            && chars.get(i + 1).is_none_or(|c| *c == ' ')
        {
            out.extend(number.chars().map(|c| if c == '.' { '.' } else { '#' }));
        } else {
            out.push_str(&number);
        }
        if i < chars.len() && i == start {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// A context for progress comparisons: a busybox stage, a copied source tree, and a `RUN`
/// step with a long command line that prints over about `secs` seconds.
fn run_context(secs: u32) -> Option<tempfile::TempDir> {
    let ctx = tempfile::tempdir().unwrap();
    support::busybox_rootfs(ctx.path())?;
    write(ctx.path(), "src/a.txt", b"alpha\n", 0o644);
    let mut run = String::from("echo one");
    for i in 0..secs {
        run.push_str(&format!(" && sleep 1 && echo line-{i}"));
    }
    write(
        ctx.path(),
        "Dockerfile",
        format!(
            "FROM scratch AS base\nCOPY rootfs/ /\nFROM base\nCOPY src/ /src/\n\
             RUN {run} && echo a-line-long-enough-to-be-cut-where-the-terminal-ends\n"
        )
        .as_bytes(),
        0o644,
    );
    Some(ctx)
}

/// `--progress tty` of one build by Buildx 0.29.1 and by kbx on one buildkitd, each under its
/// own 100×60 pseudo-terminal: once both are done, a terminal emulator shows the same rows
/// (steps in the order they started, sub-progress rows, names cut two columns before the
/// timer, `remote:NAME` on the right of the header) in the same colours, durations masked and
/// kbx's `#0 building on …` line (K22) left out; and both showed the running step's output.
#[test]
fn tty_progress_screen_is_buildx_029s() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let Some(ctx_dir) = run_context(2) else {
        return;
    };
    let ctx = ctx_dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let bx_home = tempfile::tempdir().unwrap();
    let o = buildx_in(&buildx, bx_home.path())
        .args(["create", "--name", "tt", "--driver", "remote", &d.addr()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let kbx = remote_kbx("tt", &d.addr());
    let args = |who: &str| {
        vec![
            "build".to_owned(),
            "--builder".to_owned(),
            "tt".to_owned(),
            "--progress".to_owned(),
            "tty".to_owned(),
            "--no-cache".to_owned(),
            "-o".to_owned(),
            format!("type=local,dest={}", out.path().join(who).display()),
            ctx.to_owned(),
        ]
    };
    let (cols, rows) = (100, 60);
    let mut cmd = buildx_in(&buildx, bx_home.path());
    cmd.args(args("buildx")).env("TERM", "xterm");
    let (theirs, status) = run_in_pty(cmd, cols, rows);
    assert!(status.success(), "{}", String::from_utf8_lossy(&theirs));
    let mut cmd = kbx.command(&args("kbx").iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env("TERM", "xterm");
    let (ours, status) = run_in_pty(cmd, cols, rows);
    assert!(status.success(), "{}", String::from_utf8_lossy(&ours));

    let rows_of = |bytes: &[u8]| -> Vec<(String, vt100::Color)> {
        screen(bytes, cols, rows)
            .into_iter()
            .filter(|(t, _)| !t.starts_with("#0 building on "))
            .map(|(t, c)| (mask_durations(&t), c))
            .collect()
    };
    let (theirs_rows, ours_rows) = (rows_of(&theirs), rows_of(&ours));
    let show = |r: &[(String, vt100::Color)]| {
        r.iter()
            .map(|(t, c)| format!("{t}  [{c:?}]\n"))
            .collect::<String>()
    };
    eprintln!(
        "buildx:\n{}\nkbx:\n{}",
        show(&theirs_rows),
        show(&ours_rows)
    );
    assert_eq!(
        ours_rows,
        theirs_rows,
        "\nbuildx:\n{}\nkbx:\n{}",
        show(&theirs_rows),
        show(&ours_rows)
    );
    assert_eq!(theirs_rows[0].0, "$ build");
    assert!(
        theirs_rows[1].0.ends_with("remote:tt") && theirs_rows[1].0.contains("FINISHED"),
        "{theirs_rows:?}"
    );
    assert!(
        theirs_rows.iter().any(|(t, _)| t.contains("RUN echo one")),
        "{theirs_rows:?}"
    );
    // While the RUN step ran, both showed its output under it.
    for (who, bytes) in [("buildx", &theirs), ("kbx", &ours)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(text.contains(" => => # one"), "{who}: {text}");
    }
}

/// `kbx ARGS` in Buildx's store under `home` (both tools share one store), no Docker Engine.
fn kbx_in(home: &Path, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_kbx"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("BUILDX_CONFIG", home.join("buildx"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    eprintln!(
        "$ kbx {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `history ls` and `--format json` with what moves with the clock masked: the `CREATED AT`
/// cells, and the JSON times.
fn masked_history_ls(text: &str) -> Vec<Vec<String>> {
    cells(text)
        .into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            if i > 0 && row.len() >= 4 {
                row[3] = "WHEN".to_owned();
            }
            row
        })
        .collect()
}

/// `history ls|inspect|logs|rm` of Buildx 0.29.1 and kbx on one buildkitd, the two sharing one
/// store: every output equal (the `CREATED AT` column masked, durations in logs masked), both
/// reading records either tool built; a kbx build's record inspects as a Buildx build's does
/// (same frontend attributes, same local state) but for its ID and provenance digest.
#[test]
fn history_is_buildx_029s() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let (ctx_dir, _) = context();
    std::fs::write(
        ctx_dir.path().join("Dockerfile"),
        "FROM scratch AS base\nCOPY src/ /\n\nFROM base AS final\nARG FOO=bar\nCOPY src/a.txt /b.txt\n",
    )
    .unwrap();
    let ctx = ctx_dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let bx = |args: &[&str]| {
        let o = buildx_in(&buildx, home.path()).args(args).output().unwrap();
        eprintln!(
            "$ buildx {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    let ok = |o: Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    ok(bx(&[
        "create",
        "--name",
        "hist",
        "--driver",
        "remote",
        &d.addr(),
    ]));
    // No records yet: the same error.
    let (theirs, ours) = (
        bx(&["history", "inspect", "--builder", "hist"]),
        kbx_in(home.path(), &["history", "inspect", "--builder", "hist"]),
    );
    assert!(!theirs.status.success() && !ours.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ours.stderr),
        String::from_utf8_lossy(&theirs.stderr)
    );
    let build = |who: &str| {
        vec![
            "build".to_owned(),
            "--builder".to_owned(),
            "hist".to_owned(),
            "--progress".to_owned(),
            "quiet".to_owned(),
            "--target".to_owned(),
            "final".to_owned(),
            "--build-arg".to_owned(),
            "FOO=1".to_owned(),
            "--label".to_owned(),
            "a=b".to_owned(),
            "-o".to_owned(),
            format!("type=local,dest={}", out.path().join(who).display()),
            ctx.to_owned(),
        ]
    };
    let b = build("buildx");
    ok(bx(&b.iter().map(String::as_str).collect::<Vec<_>>()));
    let k = build("kbx");
    ok(kbx_in(
        home.path(),
        &k.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    // Both tools, same arguments, same output (stdout, then stderr and status).
    let both = |args: &[&str]| {
        let theirs = bx(args);
        let ours = kbx_in(home.path(), args);
        assert_eq!(
            ours.status.success(),
            theirs.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        (
            String::from_utf8(theirs.stdout).unwrap(),
            String::from_utf8(ours.stdout).unwrap(),
            String::from_utf8(theirs.stderr).unwrap(),
            String::from_utf8(ours.stderr).unwrap(),
        )
    };
    let (theirs, ours, _, _) = both(&["history", "ls", "--builder", "hist"]);
    assert_eq!(masked_history_ls(&ours), masked_history_ls(&theirs));
    assert!(theirs.starts_with("BUILD ID "), "{theirs}");
    assert_eq!(cells(&theirs).len(), 3, "{theirs}");
    let json_masked = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["created_at"] = "WHEN".into();
                v["completed_at"] = "WHEN".into();
                v
            })
            .collect()
    };
    let (theirs, ours, _, _) = both(&["history", "ls", "--builder", "hist", "--format", "json"]);
    assert_eq!(json_masked(&ours), json_masked(&theirs));
    // The completion time is Go's RFC 3339 with nanoseconds, trailing zeros dropped, as is.
    let first: serde_json::Value = serde_json::from_str(theirs.lines().next().unwrap()).unwrap();
    assert!(
        ours.contains(first["completed_at"].as_str().unwrap()),
        "{ours}"
    );
    let (theirs, ours, _, _) = both(&[
        "history",
        "ls",
        "--builder",
        "hist",
        "--no-trunc",
        "--format",
        "table {{.Ref}}\\t{{.Status}}\\t{{.Name}}",
    ]);
    assert_eq!(ours, theirs);
    let (theirs, ours, _, _) = both(&[
        "history",
        "ls",
        "--builder",
        "hist",
        "--filter",
        "status=completed",
        "--format",
        "{{.Name}}: {{.Status}}",
    ]);
    assert_eq!(ours, theirs);
    let base = ctx_dir.path().file_name().unwrap().to_str().unwrap();
    assert_eq!(
        theirs,
        format!("{base} (final): Completed\n{base} (final): Completed\n")
    );
    let ids: Vec<String> = ok(bx(&[
        "history",
        "ls",
        "--builder",
        "hist",
        "--format",
        "{{.Ref}}",
    ]))
    .lines()
    .map(str::to_owned)
    .collect();
    assert_eq!(ids.len(), 2);
    // Every way of naming a record, in every format: the same text.
    for reference in [None, Some("^0"), Some("^1"), Some(ids[1].as_str())] {
        for format in ["pretty", "json", "{{.Name}} {{.Target}} {{.NumTotalSteps}}"] {
            let mut args = vec![
                "history",
                "inspect",
                "--builder",
                "hist",
                "--format",
                format,
            ];
            args.extend(reference);
            let (theirs, ours, _, _) = both(&args);
            assert_eq!(ours, theirs, "{args:?}");
        }
    }
    // kbx's build (the newest) and Buildx's: the same record but for its ID and digest.
    let (newest, older) = (
        ok(bx(&["history", "inspect", "--builder", "hist", "^0"])),
        ok(bx(&["history", "inspect", "--builder", "hist", "^1"])),
    );
    let mask = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with("sha256:") && !l.starts_with("Started:"))
            .filter(|l| !l.starts_with("Duration:"))
            .map(|l| {
                l.replace(&ids[0], "ID")
                    .replace(&ids[1], "ID")
                    .replace("(33% cached)", "(N% cached)")
                    .replace("(0% cached)", "(N% cached)")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(mask(&newest), mask(&older));
    assert!(newest.contains("BUILD ARG\tVALUE\nFOO\t\t1\n"), "{newest}");
    // Errors.
    for args in [
        &["history", "inspect", "--builder", "hist", "^9"][..],
        &["history", "inspect", "--builder", "hist", "^x"],
        &["history", "inspect", "--builder", "hist", "nope"],
        &["history", "logs", "--builder", "hist", "nope"],
        &["history", "rm", "--builder", "hist", "nope"],
        &["history", "rm", "--builder", "hist"],
        &["history", "rm", "--builder", "hist", "--all", "x"],
        &["history", "ls", "--builder", "hist", "--filter", "size=1"],
        &["history", "ls", "--builder", "hist", "--filter", "status>1"],
    ] {
        let (_, _, theirs, ours) = both(args);
        // (`rm` of an unknown ID succeeds on a daemon that never had a lease of that name.)
        assert_eq!(ours, theirs, "{args:?}");
    }
    // The logs of a record: Buildx's plain replay, durations masked.
    for reference in ["^0", &ids[1]] {
        let (_, _, theirs, ours) = both(&["history", "logs", "--builder", "hist", reference]);
        assert_eq!(masked_progress(&ours), masked_progress(&theirs));
        assert!(
            theirs.contains("[final 1/1] COPY src/a.txt /b.txt"),
            "{theirs}"
        );
    }
    // rm by kbx of one record: Buildx no longer lists it; rm --all by kbx: none left.
    ok(kbx_in(
        home.path(),
        &["history", "rm", "--builder", "hist", &ids[1]],
    ));
    let left = ok(bx(&[
        "history",
        "ls",
        "--builder",
        "hist",
        "--format",
        "{{.Ref}}",
    ]));
    assert_eq!(left, format!("{}\n", ids[0]));
    ok(kbx_in(
        home.path(),
        &["history", "rm", "--builder", "hist", "--all"],
    ));
    let (theirs, ours, _, _) = both(&["history", "ls", "--builder", "hist"]);
    assert_eq!(ours, theirs);
    assert_eq!(cells(&theirs).len(), 1, "{theirs}");
}

/// `du` in Buildx 0.29.1's formats, by Buildx and kbx on one buildkitd: the default table,
/// `--verbose`/`pretty`, `json`, templates and `table` templates, filtered, and the errors;
/// the same text once the `… ago` times are masked.
#[test]
fn du_formats_are_buildx_029s() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let (ctx_dir, _) = context();
    let ctx = ctx_dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let bx = |args: &[&str]| buildx_in(&buildx, home.path()).args(args).output().unwrap();
    assert!(
        bx(&["create", "--name", "du", "--driver", "remote", &d.addr()])
            .status
            .success()
    );
    let dest = format!("type=local,dest={}", out.path().display());
    let o = bx(&[
        "build",
        "--builder",
        "du",
        "--progress",
        "quiet",
        "-o",
        &dest,
        ctx,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // `2 seconds ago` may turn into `3 seconds ago` between the two runs.
    let mask = |text: &str| -> String {
        let mut out = String::new();
        for line in text.lines() {
            let line = match line.find(" ago") {
                Some(end) => {
                    let start = line[..end]
                        .rfind(['"', ':'])
                        .map(|i| i + 1)
                        .or_else(|| line[..end].rfind("   ").map(|i| i + 3))
                        .unwrap_or(0);
                    format!("{}WHEN{}", &line[..start], &line[end + 4..])
                }
                None => line.to_owned(),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    };
    let cases: &[&[&str]] = &[
        &[],
        &["--verbose"],
        &["--format", "pretty"],
        &["--format", "table"],
        &["--format", "json"],
        &[
            "--format",
            "{{.ID}} {{.Size}} {{.Type}} {{.Mutable}} {{.Parents}} {{.UsageCount}}",
        ],
        &["--format", "table {{.ID}}\t{{.Shared}}\t{{.Description}}"],
        &[
            "--format",
            "{{if .Parents}}{{range .Parents}}{{.}};{{end}}{{end}}",
        ],
        &["--filter", "type=regular"],
        &["--filter", "type=regular", "--verbose"],
        &["--verbose", "--format", "json"],
        &["--format", "{{.Nope}}"],
    ];
    let mut seen_rows = 0;
    for extra in cases {
        let mut args = vec!["du", "--builder", "du"];
        args.extend_from_slice(extra);
        let theirs = bx(&args);
        let ours = kbx_in(home.path(), &args);
        let (t_out, o_out) = (
            String::from_utf8_lossy(&theirs.stdout),
            String::from_utf8_lossy(&ours.stdout),
        );
        assert_eq!(mask(&o_out), mask(&t_out), "{extra:?}");
        assert_eq!(ours.status.success(), theirs.status.success(), "{extra:?}");
        if !theirs.status.success() {
            let (t_err, o_err) = (
                String::from_utf8_lossy(&theirs.stderr),
                String::from_utf8_lossy(&ours.stderr),
            );
            // Go names its own type at the end (`in type *commands.diskusageContext`).
            assert!(
                t_err.starts_with(o_err.trim_end()),
                "{extra:?}:\nbuildx: {t_err}\nkbx: {o_err}"
            );
        }
        seen_rows += t_out.lines().count();
    }
    assert!(seen_rows > 20, "the build left cache records");
}

/// `build --call` and `--check` by Buildx 0.29.1 and kbx on one BuildKit v0.13 daemon: the
/// Dockerfile frontend's `outline` and `targets` answers (text and `format=json`) are the same
/// on stdout, neither tool builds (no build record is left), and `check` (`frontend.lint`),
/// which this frontend does not know, fails in both with the frontend's reply.
#[test]
fn build_call_is_buildx_029s() {
    use support::Buildkitd;
    let Some(buildx) = buildx_0_29() else { return };
    let Some(d) = Buildkitd::start() else {
        return;
    };
    let ctx_dir = tempfile::tempdir().unwrap();
    write(
        ctx_dir.path(),
        "Dockerfile",
        b"# syntax-less, for the built-in frontend\n\
          ARG BASE=scratch\n\
          # The base stage.\n\
          FROM ${BASE} AS base\n\
          ARG GREETING=hi\n\
          COPY a.txt /\n\
          \n\
          # The release stage.\n\
          FROM base AS release\n\
          ARG LEVEL\n\
          COPY --from=base /a.txt /b.txt\n",
        0o644,
    );
    write(ctx_dir.path(), "a.txt", b"alpha\n", 0o644);
    let ctx = ctx_dir.path().to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let bx = |args: &[&str]| buildx_in(&buildx, home.path()).args(args).output().unwrap();
    assert!(
        bx(&["create", "--name", "call", "--driver", "remote", &d.addr()])
            .status
            .success()
    );
    let cases: &[&[&str]] = &[
        &["--call", "outline"],
        &["--call", "targets"],
        &["--call", "outline,format=json"],
        &["--call", "targets,format=json"],
        &["--call", "outline", "--target", "base"],
        &["--call", "outline", "--build-arg", "LEVEL=3"],
    ];
    for extra in cases {
        let mut args = vec!["build", "--builder", "call", "--progress", "plain"];
        args.extend_from_slice(extra);
        args.push(ctx);
        let theirs = bx(&args);
        let ours = kbx_in(home.path(), &args);
        let t_out = String::from_utf8_lossy(&theirs.stdout);
        assert!(
            theirs.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert!(ours.status.success(), "{extra:?}");
        assert!(!t_out.is_empty(), "{extra:?}");
        assert_eq!(String::from_utf8_lossy(&ours.stdout), t_out, "{extra:?}");
    }
    for check in [&["--check"][..], &["--call", "check,format=json"][..]] {
        let mut args = vec!["build", "--builder", "call", "--progress", "plain"];
        args.extend_from_slice(check);
        args.push(ctx);
        let theirs = bx(&args);
        let ours = kbx_in(home.path(), &args);
        let (t_err, o_err) = (
            String::from_utf8_lossy(&theirs.stderr),
            String::from_utf8_lossy(&ours.stderr),
        );
        assert_eq!(theirs.status.code(), Some(1), "{check:?}: {t_err}");
        assert_eq!(ours.status.code(), Some(1), "{check:?}: {o_err}");
        assert!(
            t_err.contains("unsupported request frontend.lint"),
            "{check:?}: {t_err}"
        );
        assert!(
            o_err.contains("unsupported request frontend.lint"),
            "{check:?}: {o_err}"
        );
    }
    // Call requests are internal: BuildKit keeps no build record of them.
    let ls = kbx_in(home.path(), &["history", "ls", "--builder", "call"]);
    assert!(ls.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout).lines().count(),
        1,
        "{}",
        String::from_utf8_lossy(&ls.stdout)
    );
}
