//! A private `docker-registry` (distribution v2) on 127.0.0.1 for each test, and a plain
//! HTTP/1.0 reader that serves as the oracle (it shares no code with the crate under test).

#![allow(dead_code, unreachable_pub)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kbx_registry::{Client, ClientOptions, Credential, CredentialFn};
use sha2::{Digest as _, Sha256};

pub const REGISTRY_BIN: &str = "docker-registry";

/// A running registry, killed on drop.
pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    /// `user:password` when the registry wants htpasswd authentication.
    pub basic: Option<String>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry without authentication.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a registry that wants `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_htpasswd(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user, password)))
    }

    fn start_inner(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (Debian apache2-utils) must be installed for the auth tests");
            assert!(out.status.success(), "htpasswd failed: {out:?}");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kbx-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{REGISTRY_BIN} (Debian package docker-registry) must be installed: {e}")
            });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut reg = Registry {
            child,
            addr,
            basic: auth.map(|(u, p)| format!("{u}:{p}")),
            _dir: dir,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let log = std::fs::read_to_string(self._dir.path().join("registry.log"))
                    .unwrap_or_default();
                panic!("{REGISTRY_BIN} exited with {status} before serving /v2/:\n{log}");
            }
            if let Ok(resp) = try_request(self.addr, "GET", "/v2/", &[], None, b"") {
                // 200 without auth, 401 with it: either way it serves the API.
                if resp.status == 200 || resp.status == 401 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{REGISTRY_BIN} did not serve /v2/ on {} within 30 s",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// A reference in this registry.
    pub fn reference(&self, rest: &str) -> kbx_registry::Reference {
        kbx_registry::Reference::parse(&format!("{}/{rest}", self.host())).expect("reference")
    }

    /// An oracle request with this registry's credentials, if any.
    pub fn get(&self, path: &str, accept: Option<&str>) -> Resp {
        let mut headers = Vec::new();
        if let Some(a) = accept {
            headers.push(("Accept".to_owned(), a.to_owned()));
        }
        self.request("GET", path, &headers, b"")
    }

    pub fn head(&self, path: &str) -> Resp {
        self.request("HEAD", path, &[], b"")
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Resp {
        try_request(
            self.addr,
            method,
            path,
            headers,
            self.basic.as_deref(),
            body,
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Pushes a blob with a POST and one PUT (independent of the crate under test).
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let resp = self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(resp.status, 202, "upload start: {}", resp.text());
        let location = resp.header("Location").expect("Location").to_owned();
        let path = match location.split_once("://") {
            Some((_, rest)) => rest[rest.find('/').expect("path")..].to_owned(),
            None => location,
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let resp = self.request(
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type".into(), "application/octet-stream".into())],
            data,
        );
        assert_eq!(resp.status, 201, "blob upload: {}", resp.text());
        digest
    }

    /// Puts a manifest (independent of the crate under test); returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type".into(), media_type.into())],
            body,
        );
        assert_eq!(resp.status, 201, "manifest put: {}", resp.text());
        sha256(body)
    }

    /// Pushes a one-layer image for `arch` and returns `(manifest digest, manifest bytes)`.
    pub fn push_image(
        &self,
        repo: &str,
        tag: &str,
        arch: &str,
        variant: Option<&str>,
        oci: bool,
    ) -> (String, Vec<u8>) {
        let layer = format!("layer of {repo}:{tag} for {arch}").into_bytes();
        let layer_digest = self.put_blob(repo, &layer);
        let variant_field = variant
            .map(|v| format!(r#","variant":"{v}""#))
            .unwrap_or_default();
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux"{variant_field},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"config":{{}}}}"#
        )
        .into_bytes();
        let config_digest = self.put_blob(repo, &config);
        let (mt, cfg_mt, layer_mt) = if oci {
            (
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        };
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"{cfg_mt}","size":{},"digest":"{config_digest}"}},"layers":[{{"mediaType":"{layer_mt}","size":{},"digest":"{layer_digest}"}}]}}"#,
            config.len(),
            layer.len()
        )
        .into_bytes();
        let digest = self.put_manifest(repo, tag, mt, &manifest);
        (digest, manifest)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An oracle response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.0 request (no chunked answers, connection closed after it).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    basic: Option<&str>,
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = basic {
        let enc = base64::engine::general_purpose::STANDARD.encode(b);
        req.push_str(&format!("Authorization: Basic {enc}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

pub fn sha256(data: &[u8]) -> String {
    let sum = Sha256::digest(data);
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A client with optional fixed credentials for every registry.
pub fn client(cred: Option<(&str, &str)>) -> Client {
    let credentials = cred.map(|(u, p)| {
        let c = Credential::new(u, p);
        let f: CredentialFn = std::sync::Arc::new(move |_host: &str| {
            let c = c.clone();
            Box::pin(async move { Some(c) })
        });
        f
    });
    Client::new(ClientOptions {
        credentials,
        ..ClientOptions::default()
    })
}
