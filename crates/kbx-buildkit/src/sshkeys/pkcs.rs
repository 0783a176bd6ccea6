//! DER keys: PKCS#1 `RSAPrivateKey`, SEC1 `ECPrivateKey` and PKCS#8 `PrivateKeyInfo` (RSA, EC,
//! Ed25519).

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, RsaKeyPair};

use super::{Curve, Key, Parsed, Signer, bare, ecdsa, reject};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A PKCS#1 `RSAPrivateKey`.
pub(super) fn pkcs1(der: &[u8]) -> Parsed<Key> {
    let pair = RsaKeyPair::from_der(der).map_err(reject)?;
    Ok(bare(Signer::Rsa(pair)))
}

/// A SEC1 `ECPrivateKey`; `curve` comes from the PKCS#8 wrapper when there is one.
pub(super) fn sec1(der: &[u8], curve: Option<Curve>) -> Parsed<Key> {
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
pub(super) fn pkcs8(der: &[u8]) -> Parsed<Key> {
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
pub(super) fn dotted(oid: &[u8]) -> String {
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
