//! PEM envelopes (`-----BEGIN …-----`) and their legacy encryption (`Proc-Type: 4,ENCRYPTED`
//! with `DEK-Info: AES-…-CBC`).

use super::{Parsed, Problem};

/// One PEM block.
pub(super) struct Pem<'a> {
    pub(super) label: &'a str,
    pub(super) headers: Vec<(&'a str, &'a str)>,
    pub(super) der: Vec<u8>,
}

/// The first PEM block in `text`.
pub(super) fn pem(text: &str) -> Parsed<Pem<'_>> {
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

/// Decrypts a legacy encrypted PEM body (`DEK-Info: AES-…-CBC,IV`, OpenSSL's
/// `EVP_BytesToKey` with MD5 and one round).
pub(super) fn decrypt_pem(headers: &[(&str, &str)], der: &[u8], pass: &str) -> Parsed<Vec<u8>> {
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
