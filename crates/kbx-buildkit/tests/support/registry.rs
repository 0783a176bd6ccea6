//! A private OCI registry (Debian's `docker-registry`, distribution v2) on 127.0.0.1, with
//! or without htpasswd basic auth, started and stopped by the test, and a plain HTTP reader
//! for its API that shares no code with kbx.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry; killed and removed on drop, also on panic.
pub struct Registry {
    child: Option<Child>,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    auth: Option<(String, String)>,
}

/// One HTTP answer: status code, header block (lower-cased names), body.
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().to_ascii_lowercase() == name).then(|| v.trim().to_owned())
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

fn find_registry() -> Option<PathBuf> {
    ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Registry {
    /// Starts a registry; with `auth`, basic auth from an htpasswd file (bcrypt, written with
    /// `htpasswd -Bbn`). `None` (the test skips) when the binary is missing outside CI.
    pub fn start(auth: Option<(&str, &str)>) -> Option<Registry> {
        let Some(bin) = find_registry() else {
            assert!(
                !super::in_ci(),
                "docker-registry not found: install Debian's docker-registry (CI=true, so this is a failure)"
            );
            eprintln!("SKIP: docker-registry not found");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("kbxreg")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd not found: install apache2-utils");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kbx-test\n    path: {}\n",
                file.display()
            ));
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&cfg)
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let mut r = Registry {
            child: Some(child),
            port,
            dir,
            auth: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = r.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("docker-registry exited with {st}:\n{}", r.log());
            }
            if r.try_get("/v2/", "*/*").is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "registry not ready:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Stops the registry (for "registry down" tests).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A GET with the registry's own credentials (if any); `None` when nothing answers.
    pub fn try_get(&self, path: &str, accept: &str) -> Option<Answer> {
        self.request("GET", path, accept)
    }

    /// A GET that must get an answer.
    pub fn get(&self, path: &str, accept: &str) -> Answer {
        self.try_get(path, accept)
            .unwrap_or_else(|| panic!("registry did not answer GET {path}"))
    }

    /// A HEAD that must get an answer.
    pub fn head(&self, path: &str) -> Answer {
        self.request("HEAD", path, "*/*")
            .unwrap_or_else(|| panic!("registry did not answer HEAD {path}"))
    }

    fn request(&self, method: &str, path: &str, accept: &str) -> Option<Answer> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let auth = match &self.auth {
            Some((u, p)) => format!("Authorization: Basic {}\r\n", base64(&format!("{u}:{p}"))),
            None => String::new(),
        };
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n{auth}Connection: close\r\n\r\n",
            self.host()
        )
        .ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut body = raw[split + 4..].to_vec();
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let (_, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
        let headers = headers.replace("\r\n", "\n");
        if headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        Some(Answer {
            status,
            headers,
            body,
        })
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&rest[i + 2..i + 2 + n]);
        rest = &rest[(i + 4 + n).min(rest.len())..];
    }
    out
}

/// Standard base64 (for Basic auth headers and `config.json` `auth` fields).
pub fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let d = s.as_bytes();
    let mut out = String::new();
    for c in d.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
