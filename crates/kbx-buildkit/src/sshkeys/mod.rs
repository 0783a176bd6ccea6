//! An in-process SSH agent for `--ssh ID=KEYFILE`: private key files loaded once and served
//! with the ssh-agent protocol on the session's `ForwardAgent` stream.
//!
//! Key files are read in the formats Go's `x/crypto/ssh` reads for buildx:
//! - OpenSSH (`BEGIN OPENSSH PRIVATE KEY`), unencrypted or passphrase-protected (bcrypt KDF
//!   with `aes128-ctr`, `aes192-ctr`, `aes256-ctr`, `aes128-cbc`, `aes256-cbc` or
//!   `aes256-gcm@openssh.com`);
//! - PEM `RSA PRIVATE KEY` (PKCS#1), `EC PRIVATE KEY` (SEC1) and `PRIVATE KEY` (PKCS#8: RSA,
//!   EC, Ed25519), plain or legacy-encrypted (`Proc-Type: 4,ENCRYPTED` with AES-CBC).
//!
//! Key types: Ed25519, ECDSA P-256 / P-384 and RSA (signing with SHA-2 only).

mod agent;
mod openssh;
mod pem;
mod pkcs;
mod wire;

use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

pub(crate) use agent::serve;
use openssh::openssh;
use pem::{decrypt_pem, pem};
use pkcs::{dotted, pkcs1, pkcs8, sec1};
use wire::{put_mpint, put_string, strip};

use crate::{Error, Result};

/// Largest key file read (real ones are a few KiB).
const MAX_KEY_FILE: u64 = 1024 * 1024;

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
    pub(crate) blob: Vec<u8>,
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

/// Why a key file could not be parsed.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    /// The key is passphrase-protected and no passphrase was given.
    Encrypted,
    /// Anything else, as a message naming what is wrong.
    Bad(String),
}

impl From<String> for Problem {
    fn from(s: String) -> Self {
        Problem::Bad(s)
    }
}

impl From<&str> for Problem {
    fn from(s: &str) -> Self {
        Problem::Bad(s.to_owned())
    }
}

type Parsed<T> = std::result::Result<T, Problem>;

/// Loads the private keys in `paths`, calling `passphrase(path)` for each passphrase-protected
/// one. A key file without a comment of its own is listed with its path.
pub(crate) fn load(
    paths: &[PathBuf],
    passphrase: &mut dyn FnMut(&Path) -> std::io::Result<String>,
) -> Result<Vec<Key>> {
    paths
        .iter()
        .map(|p| {
            let bad = |reason: String| {
                Error::InvalidOptions(format!("--ssh key {}: {reason}", p.display()))
            };
            let len = std::fs::metadata(p)
                .map_err(|e| Error::io("read ssh key", p, e))?
                .len();
            if len > MAX_KEY_FILE {
                return Err(bad(format!("not a private key file ({len} bytes)")));
            }
            let text = std::fs::read(p).map_err(|e| Error::io("read ssh key", p, e))?;
            let mut key = match parse_key(&text, None) {
                Ok(k) => k,
                Err(Problem::Bad(reason)) => return Err(bad(reason)),
                Err(Problem::Encrypted) => {
                    let pass = passphrase(p).map_err(|source| Error::SshPassphrase {
                        path: p.clone(),
                        source,
                    })?;
                    match parse_key(&text, Some(&pass)) {
                        Ok(k) => k,
                        Err(Problem::Bad(reason)) => return Err(bad(reason)),
                        Err(Problem::Encrypted) => {
                            return Err(bad("wrong passphrase (empty)".to_owned()));
                        }
                    }
                }
            };
            if key.comment.is_empty() {
                key.comment = p.display().to_string();
            }
            Ok(key)
        })
        .collect()
}

/// Parses one key file; `pass` decrypts passphrase-protected keys.
fn parse_key(text: &[u8], pass: Option<&str>) -> Parsed<Key> {
    let text = std::str::from_utf8(text).map_err(|_| "not a private key file (not text)")?;
    let block = pem(text)?;
    let pass = pass.filter(|p| !p.is_empty());
    match block.label {
        "OPENSSH PRIVATE KEY" => {
            if !block.headers.is_empty() {
                return Err("malformed OpenSSH key (PEM headers)".into());
            }
            openssh(&block.der, pass)
        }
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY" => {
            let encrypted = block
                .headers
                .iter()
                .any(|(k, v)| *k == "Proc-Type" && v.contains("ENCRYPTED"));
            let der = if encrypted {
                let pass = pass.ok_or(Problem::Encrypted)?;
                decrypt_pem(&block.headers, &block.der, pass)?
            } else {
                block.der
            };
            let parsed = match block.label {
                "RSA PRIVATE KEY" => pkcs1(&der),
                "EC PRIVATE KEY" => sec1(&der, None),
                _ => pkcs8(&der),
            };
            match parsed {
                Err(Problem::Bad(e)) if encrypted => Err(Problem::Bad(format!(
                    "wrong passphrase or corrupt key ({e})"
                ))),
                other => other,
            }
        }
        "ENCRYPTED PRIVATE KEY" => Err("encrypted PKCS#8 keys are not supported (re-encrypt \
                                        with `ssh-keygen -p -f KEY`)"
            .into()),
        "DSA PRIVATE KEY" => Err("unsupported key type DSA".into()),
        other => Err(format!("not a private key file (PEM block {other:?})").into()),
    }
}

const UNSUPPORTED_P521: &str =
    "unsupported ECDSA curve P-521 (kbx signs with Ed25519, ECDSA P-256/P-384 and RSA keys)";

fn reject(e: ring::error::KeyRejected) -> String {
    format!("key rejected: {e}")
}

#[derive(Clone, Copy)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn from_oid(oid: &[u8]) -> Parsed<Curve> {
        match oid {
            [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07] => Ok(Curve::P256),
            [0x2b, 0x81, 0x04, 0x00, 0x22] => Ok(Curve::P384),
            [0x2b, 0x81, 0x04, 0x00, 0x23] => Err(UNSUPPORTED_P521.into()),
            other => Err(format!("unsupported ECDSA curve {}", dotted(other)).into()),
        }
    }
}

/// An ECDSA signer from the private scalar `d` and public point `q`.
fn ecdsa(curve: Curve, d: &[u8], q: &[u8], rng: &SystemRandom) -> Parsed<Signer> {
    let (alg, len, name) = match curve {
        Curve::P256 => (
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            32,
            "ecdsa-sha2-nistp256",
        ),
        Curve::P384 => (
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            48,
            "ecdsa-sha2-nistp384",
        ),
    };
    let d = strip(d);
    if d.len() > len {
        return Err("malformed ECDSA key (scalar too long)".into());
    }
    let mut scalar = vec![0u8; len - d.len()];
    scalar.extend_from_slice(d);
    let pair =
        EcdsaKeyPair::from_private_key_and_public_key(alg, &scalar, q, rng).map_err(reject)?;
    Ok(Signer::Ecdsa { pair, name })
}

/// A key without an OpenSSH envelope: the blob comes from the signer, the comment is empty.
fn bare(signer: Signer) -> Key {
    Key {
        blob: public_blob(&signer),
        comment: String::new(),
        signer,
    }
}

/// The SSH public key blob of `signer` (RFC 4253 6.6, RFC 5656 3.1, RFC 8709 4).
fn public_blob(signer: &Signer) -> Vec<u8> {
    use ring::signature::KeyPair;
    let mut out = Vec::new();
    match signer {
        Signer::Ed25519(pair) => {
            put_string(&mut out, b"ssh-ed25519");
            put_string(&mut out, pair.public_key().as_ref());
        }
        Signer::Ecdsa { pair, name } => {
            put_string(&mut out, name.as_bytes());
            put_string(&mut out, &name.as_bytes()["ecdsa-sha2-".len()..]);
            put_string(&mut out, pair.public_key().as_ref());
        }
        Signer::Rsa(pair) => {
            let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
            put_string(&mut out, b"ssh-rsa");
            put_mpint(&mut out, &c.e);
            put_mpint(&mut out, &c.n);
        }
    }
    out
}

/// Whether `path` is an agent socket (rather than a key file).
pub(crate) fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests;
