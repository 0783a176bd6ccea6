//! An in-process SSH agent for `--ssh ID=KEYFILE`: OpenSSH private key files (Ed25519,
//! ECDSA P-256 / P-384, RSA) loaded once and served with the ssh-agent protocol on the
//! session's `ForwardAgent` stream.

use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Error, Result};

const FAILURE: u8 = 5;
const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
const RSA_SHA2_256: u32 = 2;
const RSA_SHA2_512: u32 = 4;
/// Largest agent message accepted (OpenSSH's own limit is 256 KiB).
const MAX_MSG: usize = 256 * 1024;

enum Signer {
    Ed25519(Ed25519KeyPair),
    Ecdsa {
        pair: EcdsaKeyPair,
        name: &'static str,
    },
    Rsa(RsaKeyPair),
}

/// One loaded private key.
pub(crate) struct Key {
    /// The public key blob, as in `authorized_keys` (base64-decoded).
    blob: Vec<u8>,
    comment: String,
    signer: Signer,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("comment", &self.comment)
            .finish_non_exhaustive()
    }
}

/// Loads the private keys in `paths` (each an OpenSSH `BEGIN OPENSSH PRIVATE KEY` file).
pub(crate) fn load(paths: &[PathBuf]) -> Result<Vec<Key>> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io("read ssh key", p, e))?;
            parse_key(&text).map_err(|reason| {
                Error::InvalidOptions(format!("--ssh key {}: {reason}", p.display()))
            })
        })
        .collect()
}

fn parse_key(text: &str) -> std::result::Result<Key, String> {
    const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
    const END: &str = "-----END OPENSSH PRIVATE KEY-----";
    let Some(body) = text
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(b, _)| b)
    else {
        if text.contains("-----BEGIN") {
            return Err(
                "only OpenSSH-format private keys are supported (convert with \
                        `ssh-keygen -p -f KEY`)"
                    .to_owned(),
            );
        }
        return Err("not a private key file".to_owned());
    };
    let b64: String = body.split_whitespace().collect();
    let raw = crate::attachables::base64_decode(&b64).ok_or("bad base64")?;
    let mut r = Reader(&raw);
    if r.take(15)? != b"openssh-key-v1\0" {
        return Err("bad OpenSSH key magic".to_owned());
    }
    let cipher = r.string()?;
    let _kdf = r.string()?;
    let _kdf_opts = r.string()?;
    if cipher != b"none" {
        return Err("passphrase-protected keys are not supported".to_owned());
    }
    if r.u32()? != 1 {
        return Err("files with several keys are not supported".to_owned());
    }
    let blob = r.string()?.to_vec();
    let mut p = Reader(r.string()?);
    if p.u32()? != p.u32()? {
        return Err("check bytes differ (corrupt key)".to_owned());
    }
    let kind = p.string()?;
    let rng = SystemRandom::new();
    let reject = |e: ring::error::KeyRejected| format!("key rejected: {e}");
    let signer = match kind {
        b"ssh-ed25519" => {
            let public = p.string()?;
            let private = p.string()?;
            let seed = private.get(..32).ok_or("short ed25519 key")?;
            Signer::Ed25519(Ed25519KeyPair::from_seed_and_public_key(seed, public).map_err(reject)?)
        }
        b"ecdsa-sha2-nistp256" | b"ecdsa-sha2-nistp384" => {
            let (alg, len, name) = if kind == b"ecdsa-sha2-nistp256" {
                (
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    32,
                    "ecdsa-sha2-nistp256",
                )
            } else {
                (
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                    48,
                    "ecdsa-sha2-nistp384",
                )
            };
            let _curve = p.string()?;
            let q = p.string()?;
            let d = strip(p.string()?);
            if d.len() > len {
                return Err("bad ECDSA scalar".to_owned());
            }
            let mut scalar = vec![0u8; len - d.len()];
            scalar.extend_from_slice(d);
            let pair = EcdsaKeyPair::from_private_key_and_public_key(alg, &scalar, q, &rng)
                .map_err(reject)?;
            Signer::Ecdsa { pair, name }
        }
        b"ssh-rsa" => {
            let n = strip(p.string()?);
            let e = strip(p.string()?);
            let d = strip(p.string()?);
            let iqmp = strip(p.string()?);
            let pp = strip(p.string()?);
            let q = strip(p.string()?);
            let dp = modulo(d, &minus_one(pp));
            let dq = modulo(d, &minus_one(q));
            let pair = RsaKeyPair::from_components(&ring::rsa::KeyPairComponents {
                public_key: ring::rsa::PublicKeyComponents { n, e },
                d,
                p: pp,
                q,
                dP: dp.as_slice(),
                dQ: dq.as_slice(),
                qInv: iqmp,
            })
            .map_err(reject)?;
            Signer::Rsa(pair)
        }
        other => {
            return Err(format!(
                "unsupported key type {:?}",
                String::from_utf8_lossy(other)
            ));
        }
    };
    let comment = String::from_utf8_lossy(p.string()?).into_owned();
    Ok(Key {
        blob,
        comment,
        signer,
    })
}

/// Serves the ssh-agent protocol for `keys` on `io` until the peer closes it.
pub(crate) async fn serve<S>(keys: &[Key], io: S) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    loop {
        let mut len = [0u8; 4];
        match rd.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_MSG {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("agent message of {len} bytes"),
            ));
        }
        let mut msg = vec![0u8; len];
        rd.read_exact(&mut msg).await?;
        let reply = answer(keys, &msg).unwrap_or_else(|| vec![FAILURE]);
        let mut out = Vec::with_capacity(reply.len() + 4);
        out.extend_from_slice(&(reply.len() as u32).to_be_bytes());
        out.extend_from_slice(&reply);
        wr.write_all(&out).await?;
        wr.flush().await?;
    }
}

/// The reply to one request, or `None` for SSH_AGENT_FAILURE.
fn answer(keys: &[Key], msg: &[u8]) -> Option<Vec<u8>> {
    let (&kind, body) = msg.split_first()?;
    match kind {
        REQUEST_IDENTITIES => {
            let mut out = vec![IDENTITIES_ANSWER];
            out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
            for k in keys {
                put_string(&mut out, &k.blob);
                put_string(&mut out, k.comment.as_bytes());
            }
            Some(out)
        }
        SIGN_REQUEST => {
            let mut r = Reader(body);
            let blob = r.string().ok()?;
            let data = r.string().ok()?;
            let flags = r.u32().unwrap_or(0);
            let key = keys.iter().find(|k| k.blob == blob)?;
            let sig = sign(key, data, flags)?;
            let mut out = vec![SIGN_RESPONSE];
            put_string(&mut out, &sig);
            Some(out)
        }
        _ => None,
    }
}

/// The signature blob: `string algorithm, string signature`.
fn sign(key: &Key, data: &[u8], flags: u32) -> Option<Vec<u8>> {
    let rng = SystemRandom::new();
    let mut out = Vec::new();
    match &key.signer {
        Signer::Ed25519(pair) => {
            put_string(&mut out, b"ssh-ed25519");
            put_string(&mut out, pair.sign(data).as_ref());
        }
        Signer::Ecdsa { pair, name } => {
            let sig = pair.sign(&rng, data).ok()?;
            let (r, s) = sig.as_ref().split_at(sig.as_ref().len() / 2);
            let mut inner = Vec::new();
            put_mpint(&mut inner, r);
            put_mpint(&mut inner, s);
            put_string(&mut out, name.as_bytes());
            put_string(&mut out, &inner);
        }
        Signer::Rsa(pair) => {
            // SHA-1 (`ssh-rsa` signatures) is refused, as OpenSSH itself now does.
            let (alg, name): (&'static dyn signature::RsaEncoding, &[u8]) =
                if flags & RSA_SHA2_512 != 0 {
                    (&signature::RSA_PKCS1_SHA512, b"rsa-sha2-512")
                } else if flags & RSA_SHA2_256 != 0 {
                    (&signature::RSA_PKCS1_SHA256, b"rsa-sha2-256")
                } else {
                    return None;
                };
            let mut sig = vec![0u8; pair.public().modulus_len()];
            pair.sign(alg, &rng, data, &mut sig).ok()?;
            put_string(&mut out, name);
            put_string(&mut out, &sig);
        }
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated key data".to_owned());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> std::result::Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// An SSH mpint from an unsigned big-endian number.
fn put_mpint(out: &mut Vec<u8>, n: &[u8]) {
    let n = strip(n);
    if n.first().is_some_and(|b| b & 0x80 != 0) {
        out.extend_from_slice(&(n.len() as u32 + 1).to_be_bytes());
        out.push(0);
        out.extend_from_slice(n);
    } else {
        put_string(out, n);
    }
}

/// Drops leading zero bytes.
fn strip(n: &[u8]) -> &[u8] {
    let i = n.iter().position(|&b| b != 0).unwrap_or(n.len());
    &n[i..]
}

/// `n - 1` for a big-endian `n > 0`.
fn minus_one(n: &[u8]) -> Vec<u8> {
    let mut v = n.to_vec();
    for b in v.iter_mut().rev() {
        if *b == 0 {
            *b = 0xff;
        } else {
            *b -= 1;
            break;
        }
    }
    strip(&v).to_vec()
}

/// `a mod m` for big-endian unsigned numbers (shift-and-subtract, bit by bit).
fn modulo(a: &[u8], m: &[u8]) -> Vec<u8> {
    let m = strip(m);
    if m.is_empty() {
        return Vec::new();
    }
    // r has one spare byte so that 2r + 1 never overflows while r < m.
    let mut r = vec![0u8; m.len() + 1];
    let mut padded_m = vec![0u8];
    padded_m.extend_from_slice(m);
    for byte in a {
        for bit in (0..8).rev() {
            let mut carry = (byte >> bit) & 1;
            for x in r.iter_mut().rev() {
                let next = *x >> 7;
                *x = (*x << 1) | carry;
                carry = next;
            }
            if r.as_slice() >= padded_m.as_slice() {
                let mut borrow = 0i16;
                for (x, y) in r.iter_mut().rev().zip(padded_m.iter().rev()) {
                    let d = i16::from(*x) - i16::from(*y) - borrow;
                    borrow = i16::from(d < 0);
                    *x = (d + (borrow << 8)) as u8;
                }
            }
        }
    }
    strip(&r).to_vec()
}

/// Whether `path` is an agent socket (rather than a key file).
pub(crate) fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_number_helpers() {
        let n = |v: u128| {
            let b = v.to_be_bytes();
            strip(&b).to_vec()
        };
        for (a, m) in [
            (1_000_000_007u128 * 97 + 5, 97u128),
            (u128::MAX, 0xffff_ffff_ffffu128),
            (12345, 1),
            (5, 12345),
            (0, 7),
            (0x8000_0000_0000_0000_0000, 0xff),
        ] {
            assert_eq!(modulo(&n(a), &n(m)), n(a % m), "{a} mod {m}");
        }
        assert_eq!(minus_one(&n(0x100)), n(0xff));
        assert_eq!(minus_one(&n(1)), n(0));
        let mut out = Vec::new();
        put_mpint(&mut out, &[0, 0x80, 1]);
        assert_eq!(out, [0, 0, 0, 3, 0, 0x80, 1]);
        out.clear();
        put_mpint(&mut out, &[0, 0, 0x7f]);
        assert_eq!(out, [0, 0, 0, 1, 0x7f]);
    }

    #[test]
    fn bad_key_files_are_explained() {
        let e = parse_key("hello").expect_err("not a key");
        assert!(e.contains("not a private key"), "{e}");
        let e = parse_key("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
            .expect_err("PEM");
        assert!(e.contains("OpenSSH-format"), "{e}");
        let e = parse_key(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .expect_err("garbage");
        assert!(e.contains("magic") || e.contains("truncated"), "{e}");
    }

    fn have(tool: &str) -> bool {
        std::process::Command::new(tool)
            .arg("-?")
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok()
    }

    /// Keys made by `ssh-keygen` are listed by `ssh-add -l` through our agent, and signatures
    /// it makes through our agent (`ssh-keygen -Y sign` with only the public key at hand)
    /// verify with `ssh-keygen -Y verify`.
    #[tokio::test]
    async fn ssh_keygen_keys_list_and_sign_through_the_agent() {
        if !have("ssh-keygen") || !have("ssh-add") {
            assert!(
                std::env::var("CI").ok().as_deref() != Some("true"),
                "openssh-client is needed (CI=true, so this is a failure)"
            );
            eprintln!("SKIP: openssh-client not installed");
            return;
        }
        let d = tempfile::tempdir().expect("tempdir");
        let mut paths = Vec::new();
        for (kind, bits) in [
            ("ed25519", ""),
            ("ecdsa", "256"),
            ("ecdsa", "384"),
            ("rsa", "2048"),
        ] {
            let path = d.path().join(format!("id_{kind}{bits}"));
            let mut cmd = std::process::Command::new("ssh-keygen");
            cmd.args(["-q", "-N", "", "-t", kind, "-C"])
                .arg(format!("kbx-{kind}{bits}"))
                .arg("-f")
                .arg(&path);
            if !bits.is_empty() {
                cmd.args(["-b", bits]);
            }
            assert!(cmd.status().expect("ssh-keygen").success());
            paths.push(path);
        }
        let keys = load(&paths).expect("load keys");
        // From here on only the agent holds the private keys.
        for p in &paths {
            std::fs::remove_file(p).expect("rm private key");
        }
        let sock = d.path().join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
        let keys = std::sync::Arc::new(keys);
        let served = keys.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let k = served.clone();
                tokio::spawn(async move {
                    let _ = serve(&k, s).await;
                });
            }
        });

        let out = tokio::process::Command::new("ssh-add")
            .arg("-L")
            .env("SSH_AUTH_SOCK", &sock)
            .output()
            .await
            .expect("ssh-add");
        assert!(out.status.success(), "{out:?}");
        let listed = String::from_utf8(out.stdout).expect("utf8");
        for p in &paths {
            let public = std::fs::read_to_string(p.with_extension("pub")).expect("pub");
            assert!(listed.contains(public.trim()), "{listed}\nmissing {public}");
        }

        let msg = d.path().join("msg.txt");
        std::fs::write(&msg, b"signed through the kbx agent\n").expect("write");
        for p in &paths {
            let public = p.with_extension("pub");
            let out = tokio::process::Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", "kbx", "-f"])
                .arg(&public)
                .arg(&msg)
                .env("SSH_AUTH_SOCK", &sock)
                .output()
                .await
                .expect("ssh-keygen -Y sign");
            assert!(out.status.success(), "{} {out:?}", p.display());
            let allowed = d.path().join("allowed");
            let pubtext = std::fs::read_to_string(&public).expect("pub");
            std::fs::write(&allowed, format!("me@kbx {pubtext}")).expect("write");
            let sig = msg.with_extension("txt.sig");
            let verify = std::process::Command::new("ssh-keygen")
                .args(["-Y", "verify", "-n", "kbx", "-I", "me@kbx", "-f"])
                .arg(&allowed)
                .arg("-s")
                .arg(&sig)
                .stdin(std::fs::File::open(&msg).expect("open"))
                .output()
                .expect("ssh-keygen -Y verify");
            assert!(verify.status.success(), "{} {verify:?}", p.display());
            // The same signature over other bytes does not verify (the oracle can fail).
            let tampered = d.path().join("tampered.txt");
            std::fs::write(&tampered, b"signed through the kbx agent!\n").expect("write");
            let verify = std::process::Command::new("ssh-keygen")
                .args(["-Y", "verify", "-n", "kbx", "-I", "me@kbx", "-f"])
                .arg(&allowed)
                .arg("-s")
                .arg(&sig)
                .stdin(std::fs::File::open(&tampered).expect("open"))
                .output()
                .expect("ssh-keygen -Y verify");
            assert!(
                !verify.status.success(),
                "{} verified tampered",
                p.display()
            );
            std::fs::remove_file(&sig).expect("rm sig");
        }

        let e = answer(&keys, &[SIGN_REQUEST, 0, 0, 0, 3, 1, 2, 3]);
        assert!(e.is_none(), "unknown key blob");
        assert!(answer(&keys, &[99]).is_none());
    }
}
