//! OpenSSH private key files (`openssh-key-v1`, PROTOCOL.key in OpenSSH), plain or
//! passphrase-protected with the bcrypt KDF.

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, RsaKeyPair};

use super::wire::{Reader, strip};
use super::{Curve, Key, Parsed, Problem, Signer, UNSUPPORTED_P521, ecdsa, public_blob, reject};

/// An `openssh-key-v1` blob (PROTOCOL.key in OpenSSH).
pub(super) fn openssh(raw: &[u8], pass: Option<&str>) -> Parsed<Key> {
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

/// `n - 1` for a big-endian `n > 0`.
pub(super) fn minus_one(n: &[u8]) -> Vec<u8> {
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
pub(super) fn modulo(a: &[u8], m: &[u8]) -> Vec<u8> {
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
