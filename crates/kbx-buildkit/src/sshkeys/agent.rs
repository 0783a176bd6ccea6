//! The ssh-agent protocol (draft-miller-ssh-agent): identities and signatures.

use ring::rand::SystemRandom;
use ring::signature;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::wire::{Reader, put_mpint, put_string};
use super::{Key, Signer};

const FAILURE: u8 = 5;
const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
const RSA_SHA2_256: u32 = 2;
const RSA_SHA2_512: u32 = 4;
/// Largest agent message accepted (OpenSSH's own limit is 256 KiB).
const MAX_MSG: usize = 256 * 1024;

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
