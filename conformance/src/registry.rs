//! A plain HTTP/1.1 client for a registry's distribution API, written for the suite and
//! sharing no code with kbx: scenarios seed base images with it and read back what kbx wrote.
//!
//! ```no_run
//! use kbx_conformance::registry::{Registry, base_image_layer};
//! # fn demo() -> Result<(), kbx_conformance::Error> {
//! let reg = Registry::new("10.88.0.5:5000", None);
//! let layer = base_image_layer("/bin/busybox", &["sh"])?;
//! let digest = reg.push_image("base", "amd64", &layer, "amd64")?;
//! assert_eq!(reg.get("/v2/base/manifests/amd64", "*/*")?.status, 200);
//! # let _ = digest; Ok(()) }
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::image::Rootfs;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Every manifest type, for `Accept`.
pub const ANY_MANIFEST: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A registry at `host:port`, optionally with basic-auth credentials.
#[derive(Debug, Clone)]
pub struct Registry {
    host: String,
    auth: Option<(String, String)>,
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Header lines (`Name: value`), one per line.
    pub headers: String,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Unexpected(format!(
                "registry answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            ))
        })
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Standard base64.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
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

/// An uncompressed layer holding a RUN-capable root file system: `busybox` (a static binary
/// of any architecture) at `/bin/busybox` with `applets` linked to it.
pub fn base_image_layer(busybox: impl AsRef<Path>, applets: &[&str]) -> Result<Vec<u8>, Error> {
    let mut fs = Rootfs::new();
    fs.file("/bin/busybox", busybox.as_ref())?
        .dir("/tmp", 0o1777)
        .dir("/proc", 0o555)
        .dir("/sys", 0o555)
        .dir("/dev", 0o755);
    for applet in applets {
        fs.symlink(Path::new("/bin").join(applet), "busybox");
    }
    fs.write_layer(Vec::new())
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

impl Registry {
    /// A registry at `host` (`addr:port`), with basic-auth `auth` for every request.
    pub fn new(host: impl Into<String>, auth: Option<(&str, &str)>) -> Registry {
        Registry {
            host: host.into(),
            auth: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
        }
    }

    /// `host:port`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// One request; `path` may be a full `http://host/…` URL (upload locations are).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, Error> {
        let path = path
            .strip_prefix(&format!("http://{}", self.host))
            .unwrap_or(path);
        let what = format!("{method} http://{}{path}", self.host);
        let mut s = TcpStream::connect(&self.host).map_err(io(what.clone()))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io(what.clone()))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if let Some((u, p)) = &self.auth {
            head.push_str(&format!(
                "Authorization: Basic {}\r\n",
                base64(format!("{u}:{p}").as_bytes())
            ));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).map_err(io(what.clone()))?;
        s.write_all(body).map_err(io(what.clone()))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(io(what.clone()))?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| Error::Unexpected(format!("{what}: no HTTP header in the answer")))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Unexpected(format!("{what}: bad status line")))?;
        let headers = head
            .split_once("\r\n")
            .map(|(_, h)| h.replace("\r\n", "\n"))
            .unwrap_or_default();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// A GET.
    pub fn get(&self, path: &str, accept: &str) -> Result<Answer, Error> {
        self.request("GET", path, &[("Accept", accept)], &[])
    }

    /// A HEAD.
    pub fn head(&self, path: &str) -> Result<Answer, Error> {
        self.request("HEAD", path, &[], &[])
    }

    fn expect(answer: Answer, want: u16, what: &str) -> Result<Answer, Error> {
        if answer.status == want {
            Ok(answer)
        } else {
            Err(Error::Unexpected(format!(
                "{what}: HTTP {} (wanted {want}): {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )))
        }
    }

    /// Uploads a blob to `repo` (POST, then PUT with the digest); returns its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> Result<String, Error> {
        let digest = sha256(data);
        let start = self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])?;
        let start = Self::expect(start, 202, "starting a blob upload")?;
        let location = start
            .header("Location")
            .ok_or_else(|| Error::Unexpected("upload answer without Location".into()))?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self.request(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        )?;
        Self::expect(put, 201, "finishing a blob upload")?;
        Ok(digest)
    }

    /// Stores a manifest under `reference` (a tag or digest); returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String, Error> {
        let put = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        )?;
        Self::expect(put, 201, "storing a manifest")?;
        Ok(sha256(body))
    }

    /// Pushes a single-layer linux image for `arch` (`amd64`, `arm64`) as `repo:tag` (OCI
    /// media types, uncompressed layer, `sh` as the command); returns the manifest digest.
    pub fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layer: &[u8],
        arch: &str,
    ) -> Result<String, Error> {
        let layer_digest = self.push_blob(repo, layer)?;
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": { "Env": ["PATH=/bin"], "Cmd": ["/bin/sh"] },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
            "history": [{ "created_by": "kbx conformance base image" }],
        })
        .to_string();
        let config_digest = self.push_blob(repo, config.as_bytes())?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        })
        .to_string();
        self.put_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes())
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..i]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&rest[i + 2..i + 2 + n]);
        rest = &rest[(i + 4 + n).min(rest.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_sha256_match_known_values() {
        assert_eq!(base64(b"kbx:s3cret"), "a2J4OnMzY3JldA==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
