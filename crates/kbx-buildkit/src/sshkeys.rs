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

/// One PEM block.
struct Pem<'a> {
    label: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    der: Vec<u8>,
}

/// The first PEM block in `text`.
fn pem(text: &str) -> Parsed<Pem<'_>> {
    const BEGIN: &str = "-----BEGIN ";
    let start = text
        .find(BEGIN)
        .ok_or("not a private key file (no PEM block)")?;
    let rest = &text[start + BEGIN.len()..];
    let (label, rest) = rest
        .split_once("-----")
        .filter(|(l, _)| !l.contains(['\n', '\r']))
        .ok_or("malformed PEM (BEGIN line)")?;
    let end = format!("-----END {label}-----");
    let (body, _) = rest
        .split_once(end.as_str())
        .ok_or_else(|| format!("malformed PEM (no {end:?} line)"))?;
    let mut headers = Vec::new();
    let mut b64 = String::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once(':') {
            Some((k, v)) if b64.is_empty() => headers.push((k.trim(), v.trim())),
            Some(_) => return Err("malformed PEM (header after data)".into()),
            None => b64.push_str(line),
        }
    }
    let der = crate::attachables::base64_decode(&b64).ok_or("malformed PEM (bad base64)")?;
    Ok(Pem {
        label,
        headers,
        der,
    })
}

/// An `openssh-key-v1` blob (PROTOCOL.key in OpenSSH).
fn openssh(raw: &[u8], pass: Option<&str>) -> Parsed<Key> {
    let mut r = Reader(raw);
    if r.take(15)? != b"openssh-key-v1\0" {
        return Err("malformed OpenSSH key (bad magic)".into());
    }
    let cipher = r.string()?;
    let kdf = r.string()?;
    let kdf_opts = r.string()?;
    if r.u32()? != 1 {
        return Err("files with several keys are not supported".into());
    }
    let blob = r.string()?.to_vec();
    let sealed = r.string()?;
    let private = if cipher == b"none" {
        if kdf != b"none" {
            return Err("malformed OpenSSH key (KDF without cipher)".into());
        }
        sealed.to_vec()
    } else {
        let (key_len, iv_len, tag_len) = match cipher {
            b"aes128-ctr" | b"aes128-cbc" => (16, 16, 0),
            b"aes192-ctr" => (24, 16, 0),
            b"aes256-ctr" | b"aes256-cbc" => (32, 16, 0),
            b"aes256-gcm@openssh.com" => (32, 12, 16),
            other => {
                return Err(format!(
                    "unsupported key encryption cipher {:?}",
                    String::from_utf8_lossy(other)
                )
                .into());
            }
        };
        if kdf != b"bcrypt" {
            return Err(format!(
                "unsupported key encryption KDF {:?}",
                String::from_utf8_lossy(kdf)
            )
            .into());
        }
        let mut o = Reader(kdf_opts);
        let salt = o.string()?;
        let rounds = o.u32()?;
        let tag = r.take(tag_len)?;
        let pass = pass.ok_or(Problem::Encrypted)?;
        let mut kiv = vec![0u8; key_len + iv_len];
        bcrypt_pbkdf::bcrypt_pbkdf(pass, salt, rounds, &mut kiv)
            .map_err(|e| format!("malformed OpenSSH key (bcrypt parameters: {e})"))?;
        let (k, iv) = kiv.split_at(key_len);
        let mut buf = sealed.to_vec();
        decrypt_openssh(cipher, k, iv, tag, &mut buf)?;
        buf
    };
    let mut p = Reader(&private);
    let wrong = if cipher == b"none" {
        "check bytes differ (corrupt key)"
    } else {
        "wrong passphrase"
    };
    if p.u32().map_err(|_| wrong)? != p.u32().map_err(|_| wrong)? {
        return Err(wrong.into());
    }
    let kind = p.string()?;
    let rng = SystemRandom::new();
    let signer = match kind {
        b"ssh-ed25519" => {
            let public = p.string()?;
            let private = p.string()?;
            let seed = private.get(..32).ok_or("malformed Ed25519 key")?;
            Signer::Ed25519(Ed25519KeyPair::from_seed_and_public_key(seed, public).map_err(reject)?)
        }
        b"ecdsa-sha2-nistp256" | b"ecdsa-sha2-nistp384" => {
            let curve = if kind == b"ecdsa-sha2-nistp256" {
                Curve::P256
            } else {
                Curve::P384
            };
            let _curve = p.string()?;
            let q = p.string()?;
            let d = p.string()?;
            ecdsa(curve, d, q, &rng)?
        }
        b"ecdsa-sha2-nistp521" => return Err(UNSUPPORTED_P521.into()),
        b"ssh-rsa" => {
            let n = strip(p.string()?);
            let e = strip(p.string()?);
            let d = strip(p.string()?);
            let iqmp = strip(p.string()?);
            let pp = strip(p.string()?);
            let q = strip(p.string()?);
            // ring signs with moduli up to 8192 bits; the check also bounds `modulo`'s work.
            if [n, e, d, iqmp, pp, q].iter().any(|x| x.len() > 1024) {
                return Err("unsupported RSA key size (over 8192 bits)".into());
            }
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
            return Err(
                format!("unsupported key type {:?}", String::from_utf8_lossy(other)).into(),
            );
        }
    };
    let comment = String::from_utf8_lossy(p.string()?).into_owned();
    if blob != public_blob(&signer) {
        return Err("malformed OpenSSH key (public key does not match the private key)".into());
    }
    Ok(Key {
        blob,
        comment,
        signer,
    })
}

const UNSUPPORTED_P521: &str =
    "unsupported ECDSA curve P-521 (kbx signs with Ed25519, ECDSA P-256/P-384 and RSA keys)";

fn reject(e: ring::error::KeyRejected) -> String {
    format!("key rejected: {e}")
}

/// Decrypts an OpenSSH private section in place.
fn decrypt_openssh(cipher: &[u8], k: &[u8], iv: &[u8], tag: &[u8], buf: &mut [u8]) -> Parsed<()> {
    use aes::cipher::{BlockModeDecrypt, KeyIvInit, StreamCipher};
    let bad_len = || Problem::from("malformed OpenSSH key (bad cipher parameters)");
    match cipher {
        b"aes128-ctr" => ctr::Ctr128BE::<aes::Aes128>::new_from_slices(k, iv)
            .map_err(|_| bad_len())?
            .apply_keystream(buf),
        b"aes192-ctr" => ctr::Ctr128BE::<aes::Aes192>::new_from_slices(k, iv)
            .map_err(|_| bad_len())?
            .apply_keystream(buf),
        b"aes256-ctr" => ctr::Ctr128BE::<aes::Aes256>::new_from_slices(k, iv)
            .map_err(|_| bad_len())?
            .apply_keystream(buf),
        b"aes128-cbc" | b"aes256-cbc" => {
            use aes::cipher::block_padding::NoPadding;
            let done = if cipher == b"aes128-cbc" {
                cbc::Decryptor::<aes::Aes128>::new_from_slices(k, iv)
                    .map_err(|_| bad_len())?
                    .decrypt_padded::<NoPadding>(buf)
                    .is_ok()
            } else {
                cbc::Decryptor::<aes::Aes256>::new_from_slices(k, iv)
                    .map_err(|_| bad_len())?
                    .decrypt_padded::<NoPadding>(buf)
                    .is_ok()
            };
            if !done {
                return Err("malformed OpenSSH key (encrypted length)".into());
            }
        }
        _ => {
            use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).map_err(|_| bad_len())?);
            let nonce = Nonce::try_assume_unique_for_key(iv).map_err(|_| bad_len())?;
            let mut sealed = buf.to_vec();
            sealed.extend_from_slice(tag);
            let plain = key
                .open_in_place(nonce, Aad::empty(), &mut sealed)
                .map_err(|_| "wrong passphrase")?;
            buf.copy_from_slice(plain);
        }
    }
    Ok(())
}

/// Decrypts a legacy encrypted PEM body (`DEK-Info: AES-…-CBC,IV`, OpenSSL's
/// `EVP_BytesToKey` with MD5 and one round).
fn decrypt_pem(headers: &[(&str, &str)], der: &[u8], pass: &str) -> Parsed<Vec<u8>> {
    use aes::cipher::KeyIvInit;
    use aes::cipher::block_padding::Pkcs7;
    use md5::Digest;
    let dek = headers
        .iter()
        .find(|(k, _)| *k == "DEK-Info")
        .map(|(_, v)| *v)
        .ok_or("malformed PEM (encrypted without DEK-Info)")?;
    let (alg, iv_hex) = dek.split_once(',').ok_or("malformed PEM (DEK-Info)")?;
    let key_len = match alg.trim() {
        "AES-128-CBC" => 16,
        "AES-192-CBC" => 24,
        "AES-256-CBC" => 32,
        other => return Err(format!("unsupported PEM encryption {other:?}").into()),
    };
    let iv = hex(iv_hex.trim())
        .filter(|iv| iv.len() == 16)
        .ok_or("malformed PEM (DEK-Info IV)")?;
    let mut key = Vec::with_capacity(key_len + 16);
    let mut prev: Vec<u8> = Vec::new();
    while key.len() < key_len {
        let mut h = md5::Md5::new();
        h.update(&prev);
        h.update(pass.as_bytes());
        h.update(&iv[..8]);
        prev = h.finalize().to_vec();
        key.extend_from_slice(&prev);
    }
    key.truncate(key_len);
    let mut buf = der.to_vec();
    let wrong = |_| Problem::from("wrong passphrase");
    let n = {
        use aes::cipher::BlockModeDecrypt;
        let bad = |_| Problem::from("malformed PEM (cipher parameters)");
        match key_len {
            16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
                .map_err(bad)?
                .decrypt_padded::<Pkcs7>(&mut buf)
                .map_err(wrong)?
                .len(),
            24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, &iv)
                .map_err(bad)?
                .decrypt_padded::<Pkcs7>(&mut buf)
                .map_err(wrong)?
                .len(),
            _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv)
                .map_err(bad)?
                .decrypt_padded::<Pkcs7>(&mut buf)
                .map_err(wrong)?
                .len(),
        }
    };
    buf.truncate(n);
    Ok(buf)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
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

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A PKCS#1 `RSAPrivateKey`.
fn pkcs1(der: &[u8]) -> Parsed<Key> {
    let pair = RsaKeyPair::from_der(der).map_err(reject)?;
    Ok(bare(Signer::Rsa(pair)))
}

/// A SEC1 `ECPrivateKey`; `curve` comes from the PKCS#8 wrapper when there is one.
fn sec1(der: &[u8], curve: Option<Curve>) -> Parsed<Key> {
    let mut outer = Der(der);
    let mut s = Der(outer.expect(SEQUENCE)?);
    if s.expect(INTEGER)? != [1] {
        return Err("malformed EC key (version)".into());
    }
    let d = s.expect(OCTET_STRING)?;
    let mut curve = curve;
    let mut q = None;
    while !s.0.is_empty() {
        match s.any()? {
            (0xa0, params) => curve = Some(Curve::from_oid(Der(params).expect(OID)?)?),
            (0xa1, public) => {
                let bits = Der(public).expect(BIT_STRING)?;
                q = Some(bits.get(1..).ok_or("malformed EC key (public key)")?);
            }
            _ => return Err("malformed EC key (unexpected field)".into()),
        }
    }
    let curve = curve.ok_or("malformed EC key (no curve)")?;
    let q = q.ok_or("EC keys without their public key are not supported")?;
    Ok(bare(ecdsa(curve, d, q, &SystemRandom::new())?))
}

/// A PKCS#8 `PrivateKeyInfo` holding an RSA, EC or Ed25519 key.
fn pkcs8(der: &[u8]) -> Parsed<Key> {
    let mut outer = Der(der);
    let mut s = Der(outer.expect(SEQUENCE)?);
    let _version = s.expect(INTEGER)?;
    let mut alg = Der(s.expect(SEQUENCE)?);
    let oid = alg.expect(OID)?;
    match oid {
        OID_RSA => Ok(bare(Signer::Rsa(
            RsaKeyPair::from_pkcs8(der).map_err(reject)?,
        ))),
        OID_ED25519 => Ok(bare(Signer::Ed25519(
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(reject)?,
        ))),
        OID_EC => {
            let curve = Curve::from_oid(alg.expect(OID)?)?;
            sec1(s.expect(OCTET_STRING)?, Some(curve))
        }
        other => Err(format!("unsupported key algorithm {}", dotted(other)).into()),
    }
}

/// An OID in dotted form, for messages.
fn dotted(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut acc: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = if acc < 80 { acc / 40 } else { 2 };
                parts.push(first.to_string());
                parts.push((acc - first * 40).to_string());
            } else {
                parts.push(acc.to_string());
            }
            acc = 0;
        } else if acc > u64::MAX >> 8 || i + 1 == oid.len() {
            return "(malformed OID)".to_owned();
        }
    }
    parts.join(".")
}

/// A minimal DER reader: definite lengths, one-byte tags.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn any(&mut self) -> std::result::Result<(u8, &'a [u8]), String> {
        let malformed = || "malformed DER".to_owned();
        let (&tag, rest) = self.0.split_first().ok_or_else(malformed)?;
        let (&first, mut rest) = rest.split_first().ok_or_else(malformed)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(malformed());
            }
            let (bytes, r) = rest.split_at(n);
            rest = r;
            bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(malformed());
        }
        let (body, rest) = rest.split_at(len);
        self.0 = rest;
        Ok((tag, body))
    }

    fn expect(&mut self, tag: u8) -> std::result::Result<&'a [u8], String> {
        match self.any()? {
            (t, body) if t == tag => Ok(body),
            (t, _) => Err(format!("malformed DER (tag {t:#04x}, expected {tag:#04x})")),
        }
    }
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
        let bad = |text: &str| match parse_key(text.as_bytes(), None) {
            Err(Problem::Bad(e)) => e,
            other => panic!("{text:?}: {:?}", other.map(|k| k.comment)),
        };
        let e = bad("hello");
        assert!(e.contains("not a private key"), "{e}");
        let e = bad("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n");
        assert!(e.contains("key rejected"), "{e}");
        let e = bad("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n");
        assert!(e.contains("malformed DER"), "{e}");
        let e = bad(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        assert!(e.contains("encrypted PKCS#8"), "{e}");
        let e = bad("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(e.contains("\"CERTIFICATE\""), "{e}");
        let e = bad("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n");
        assert!(
            e.contains("no \"-----END RSA PRIVATE KEY-----\" line"),
            "{e}"
        );
        let e =
            bad("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n");
        assert!(e.contains("magic") || e.contains("truncated"), "{e}");
        // An encrypted PEM key without a passphrase asks for one; with one it needs DEK-Info.
        let enc = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            parse_key(enc.as_bytes(), None).err(),
            Some(Problem::Encrypted)
        );
        match parse_key(enc.as_bytes(), Some("pass")) {
            Err(Problem::Bad(e)) => assert!(e.contains("DEK-Info"), "{e}"),
            other => panic!("{:?}", other.map(|k| k.comment)),
        }
        // PKCS#8 with an algorithm we do not sign with (X25519, 1.3.101.110) and SEC1 P-521.
        let x25519 = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut der = x25519.to_vec();
        der.extend_from_slice(&[7; 32]);
        match pkcs8(&der) {
            Err(Problem::Bad(e)) => assert_eq!(e, "unsupported key algorithm 1.3.101.110"),
            other => panic!("{:?}", other.map(|k| k.comment)),
        }
        let p521 = [
            0x30, 0x0f, 0x02, 0x01, 0x01, 0x04, 0x01, 0x05, 0xa0, 0x07, 0x06, 0x05, 0x2b, 0x81,
            0x04, 0x00, 0x23,
        ];
        match sec1(&p521, None) {
            Err(Problem::Bad(e)) => assert!(e.contains("P-521"), "{e}"),
            other => panic!("{:?}", other.map(|k| k.comment)),
        }
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            "1.2.840.10045.2.1"
        );
        // An OpenSSH RSA key with a 16384-bit modulus is refused before any arithmetic.
        let mut private = vec![0, 0, 0, 7, 0, 0, 0, 7];
        put_string(&mut private, b"ssh-rsa");
        for len in [2049, 3, 2048, 2, 1024, 1024] {
            put_string(&mut private, &vec![0x55; len]);
        }
        put_string(&mut private, b"comment");
        let mut raw = b"openssh-key-v1\0".to_vec();
        for field in [&b"none"[..], b"none", b""] {
            put_string(&mut raw, field);
        }
        raw.extend_from_slice(&[0, 0, 0, 1]);
        put_string(&mut raw, b"blob");
        put_string(&mut raw, &private);
        match openssh(&raw, None) {
            Err(Problem::Bad(e)) => assert!(e.contains("over 8192 bits"), "{e}"),
            other => panic!("{:?}", other.map(|k| k.comment)),
        }
    }

    fn have(tool: &str) -> bool {
        std::process::Command::new(tool)
            .arg("-?")
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok()
    }

    /// Whether openssh-client is there; fails under `CI=true` when it is not.
    fn have_openssh() -> bool {
        if have("ssh-keygen") && have("ssh-add") {
            return true;
        }
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "openssh-client is needed (CI=true, so this is a failure)"
        );
        eprintln!("SKIP: openssh-client not installed");
        false
    }

    const PASS: &str = "kbx-pass";

    /// One `ssh-keygen` key: `(file stem, -t, -b, -m, -Z, passphrase?)`.
    type Spec = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        bool,
    );

    const SPECS: &[Spec] = &[
        ("ed25519", "ed25519", "", "", "", false),
        ("ecdsa256", "ecdsa", "256", "", "", false),
        ("ecdsa384", "ecdsa", "384", "", "", false),
        ("rsa", "rsa", "2048", "", "", false),
        ("rsa-pem", "rsa", "2048", "PEM", "", false),
        ("ecdsa256-pem", "ecdsa", "256", "PEM", "", false),
        ("ecdsa384-pem", "ecdsa", "384", "PEM", "", false),
        ("rsa-pkcs8", "rsa", "2048", "PKCS8", "", false),
        ("ecdsa256-pkcs8", "ecdsa", "256", "PKCS8", "", false),
        ("ecdsa384-pkcs8", "ecdsa", "384", "PKCS8", "", false),
        ("ed25519-ctr", "ed25519", "", "", "", true),
        (
            "ecdsa-gcm",
            "ecdsa",
            "256",
            "",
            "aes256-gcm@openssh.com",
            true,
        ),
        ("rsa-cbc", "rsa", "2048", "", "aes256-cbc", true),
        ("ed25519-ctr128", "ed25519", "", "", "aes128-ctr", true),
        ("rsa-pem-enc", "rsa", "2048", "PEM", "", true),
        ("ecdsa-pem-enc", "ecdsa", "384", "PEM", "", true),
    ];

    /// Makes the keys of `specs` in `dir` with `ssh-keygen`.
    fn keygen(dir: &Path, specs: &[Spec]) -> Vec<PathBuf> {
        specs
            .iter()
            .map(|&(stem, kind, bits, format, cipher, encrypted)| {
                let path = dir.join(format!("id_{stem}"));
                let mut cmd = std::process::Command::new("ssh-keygen");
                cmd.args(["-q", "-t", kind, "-C"])
                    .arg(format!("kbx-{stem}"))
                    .arg("-N")
                    .arg(if encrypted { PASS } else { "" })
                    .arg("-f")
                    .arg(&path);
                for (flag, v) in [("-b", bits), ("-m", format), ("-Z", cipher)] {
                    if !v.is_empty() {
                        cmd.args([flag, v]);
                    }
                }
                assert!(cmd.status().expect("ssh-keygen").success(), "{stem}");
                path
            })
            .collect()
    }

    /// `type base64` of `ssh-keygen -y -f KEY`: the public key OpenSSH derives itself.
    fn openssh_public(path: &Path) -> String {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-y", "-P", PASS, "-f"])
            .arg(path)
            .output()
            .expect("ssh-keygen -y");
        assert!(out.status.success(), "{} {out:?}", path.display());
        let text = String::from_utf8(out.stdout).expect("utf8");
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The 32-byte seed of an unencrypted OpenSSH Ed25519 key file.
    fn ed25519_seed(path: &Path) -> Vec<u8> {
        let text = std::fs::read_to_string(path).expect("read");
        let der = pem(&text).map_err(|_| "pem").expect("pem").der;
        let mut r = Reader(&der);
        r.take(15).expect("magic");
        for _ in 0..3 {
            r.string().expect("header");
        }
        r.u32().expect("count");
        r.string().expect("public");
        let mut p = Reader(r.string().expect("private"));
        p.take(8).expect("check");
        p.string().expect("type");
        p.string().expect("public");
        p.string().expect("private")[..32].to_vec()
    }

    /// `der` as a PEM block.
    fn to_pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        let lines: Vec<_> = b64
            .as_bytes()
            .chunks(64)
            .map(|l| String::from_utf8_lossy(l))
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// Serves `keys` on a unix socket in `dir` and returns its path.
    fn serve_on_socket(dir: &Path, keys: Vec<Key>) -> PathBuf {
        let sock = dir.join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
        let keys = std::sync::Arc::new(keys);
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let k = keys.clone();
                tokio::spawn(async move {
                    let _ = serve(&k, s).await;
                });
            }
        });
        sock
    }

    /// Keys made by `ssh-keygen` in every format it writes (OpenSSH, PEM, PKCS#8, with and
    /// without passphrases) are listed by `ssh-add -L` through our agent with the public key
    /// `ssh-keygen -y` derives, and signatures made through our agent (`ssh-keygen -Y sign`
    /// with only the public key at hand) verify with `ssh-keygen -Y verify`.
    #[tokio::test]
    async fn ssh_keygen_keys_list_and_sign_through_the_agent() {
        if !have_openssh() {
            return;
        }
        let d = tempfile::tempdir().expect("tempdir");
        let mut paths = keygen(d.path(), SPECS);
        let mut publics: Vec<String> = paths.iter().map(|p| openssh_public(p)).collect();
        // ssh-keygen writes Ed25519 keys only as OpenSSH; wrap a seed in PKCS#8 (RFC 8410).
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&ed25519_seed(&paths[0]));
        let pkcs8_path = d.path().join("id_ed25519-pkcs8");
        std::fs::write(&pkcs8_path, to_pem("PRIVATE KEY", &der)).expect("write");
        paths.push(pkcs8_path.clone());
        publics.push(publics[0].clone());

        let mut asked = Vec::new();
        let keys = load(&paths, &mut |p| {
            asked.push(p.to_path_buf());
            Ok(PASS.to_owned())
        })
        .expect("load keys");
        let encrypted: Vec<_> = SPECS
            .iter()
            .zip(&paths)
            .filter(|(s, _)| s.5)
            .map(|(_, p)| p.clone())
            .collect();
        assert_eq!(asked, encrypted);
        assert_eq!(
            keys.last().expect("key").comment,
            pkcs8_path.display().to_string()
        );
        // From here on only the agent holds the private keys.
        for p in &paths {
            std::fs::remove_file(p).expect("rm private key");
        }
        let sock = serve_on_socket(d.path(), keys);

        let out = tokio::process::Command::new("ssh-add")
            .arg("-L")
            .env("SSH_AUTH_SOCK", &sock)
            .output()
            .await
            .expect("ssh-add");
        assert!(out.status.success(), "{out:?}");
        let listed = String::from_utf8(out.stdout).expect("utf8");
        let listed: Vec<String> = listed
            .lines()
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(listed, publics);

        let msg = d.path().join("msg.txt");
        std::fs::write(&msg, b"signed through the kbx agent\n").expect("write");
        for (p, public_text) in paths.iter().zip(&publics) {
            let public = p.with_extension("pub");
            std::fs::write(&public, format!("{public_text}\n")).expect("write pub");
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
            std::fs::write(&allowed, format!("me@kbx {public_text}\n")).expect("write");
            let sig = msg.with_extension("txt.sig");
            let verify = |data: &Path| {
                std::process::Command::new("ssh-keygen")
                    .args(["-Y", "verify", "-n", "kbx", "-I", "me@kbx", "-f"])
                    .arg(&allowed)
                    .arg("-s")
                    .arg(&sig)
                    .stdin(std::fs::File::open(data).expect("open"))
                    .output()
                    .expect("ssh-keygen -Y verify")
            };
            let ok = verify(&msg);
            assert!(ok.status.success(), "{} {ok:?}", p.display());
            // The same signature over other bytes does not verify (the oracle can fail).
            let tampered = d.path().join("tampered.txt");
            std::fs::write(&tampered, b"signed through the kbx agent!\n").expect("write");
            assert!(
                !verify(&tampered).status.success(),
                "{} verified tampered",
                p.display()
            );
            std::fs::remove_file(&sig).expect("rm sig");
        }
    }

    /// Wrong passphrases, a failing passphrase source and unsupported curves are errors that
    /// name the file; the passphrase source is not asked for unencrypted keys.
    #[test]
    fn passphrase_problems_name_the_file() {
        if !have_openssh() {
            return;
        }
        let d = tempfile::tempdir().expect("tempdir");
        let specs: Vec<Spec> = SPECS.iter().copied().filter(|s| s.5).collect();
        let paths = keygen(d.path(), &specs);
        for p in &paths {
            let err = load(std::slice::from_ref(p), &mut |_| Ok("not-it".to_owned()))
                .expect_err("wrong passphrase");
            let text = err.to_string();
            assert!(matches!(err, Error::InvalidOptions(_)), "{err:?}");
            assert!(text.contains(&p.display().to_string()), "{text}");
            assert!(text.contains("wrong passphrase"), "{text}");
            let err = load(std::slice::from_ref(p), &mut |_| Ok(String::new()))
                .expect_err("empty passphrase");
            assert!(
                err.to_string().contains("wrong passphrase (empty)"),
                "{err}"
            );
            let err = load(std::slice::from_ref(p), &mut |_| {
                Err(std::io::Error::other("no terminal"))
            })
            .expect_err("no passphrase");
            assert!(
                matches!(&err, Error::SshPassphrase { path, .. } if path == p),
                "{err:?}"
            );
            let source = std::error::Error::source(&err).expect("source");
            assert_eq!(source.to_string(), "no terminal");
        }
        let plain = keygen(d.path(), &[("p521", "ecdsa", "521", "", "", false)]);
        let err = load(&plain, &mut |_| panic!("asked for an unencrypted key")).expect_err("P-521");
        let text = err.to_string();
        assert!(text.contains("id_p521") && text.contains("P-521"), "{text}");
        let plain = keygen(d.path(), &[("p521-pem", "ecdsa", "521", "PEM", "", false)]);
        let err = load(&plain, &mut |_| panic!("asked")).expect_err("P-521 PEM");
        assert!(err.to_string().contains("P-521"), "{err}");
    }

    /// Arbitrary bytes and mangled real key files never panic the parser.
    #[test]
    fn mangled_key_files_do_not_panic() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 256,
            ..Config::default()
        });
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
                let _ = parse_key(&bytes, None);
                let _ = parse_key(&bytes, Some("pass"));
                let mut text = b"-----BEGIN PRIVATE KEY-----\n".to_vec();
                text.extend_from_slice(&bytes);
                let _ = parse_key(&text, None);
                Ok(())
            })
            .expect("arbitrary bytes");
        if !have_openssh() {
            return;
        }
        let d = tempfile::tempdir().expect("tempdir");
        // Encrypted OpenSSH keys are mangled without a passphrase: a mangled bcrypt round
        // count would make a case take minutes.
        let texts: Vec<(String, Option<&str>)> = keygen(d.path(), SPECS)
            .iter()
            .zip(SPECS)
            .map(|(p, s)| {
                let text = std::fs::read_to_string(p).expect("read");
                let pass = (s.5 && !s.3.is_empty()).then_some(PASS);
                (text, pass)
            })
            .collect();
        let strategy = (
            0..texts.len(),
            any::<proptest::sample::Index>(),
            any::<u8>(),
            any::<bool>(),
        );
        runner
            .run(&strategy, |(which, at, byte, truncate)| {
                let (text, pass) = &texts[which];
                let block = pem(text).map_err(|_| TestCaseError::fail("pem"))?;
                let mut der = block.der.clone();
                let i = at.index(der.len());
                if truncate {
                    der.truncate(i);
                } else {
                    der[i] ^= byte | 1;
                }
                let mut mangled = format!("-----BEGIN {}-----\n", block.label);
                for (k, v) in &block.headers {
                    mangled.push_str(&format!("{k}: {v}\n"));
                }
                mangled.push('\n');
                mangled.push_str(
                    to_pem("X", &der)
                        .lines()
                        .filter(|l| !l.starts_with("-----"))
                        .collect::<Vec<_>>()
                        .join("\n")
                        .as_str(),
                );
                mangled.push_str(&format!("\n-----END {}-----\n", block.label));
                let _ = parse_key(mangled.as_bytes(), None);
                let _ = parse_key(mangled.as_bytes(), *pass);
                Ok(())
            })
            .expect("mangled keys");
    }
}
