//! Key parsing, the number helpers and the agent protocol.

use super::openssh::{minus_one, modulo};
use super::wire::Reader;
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
    let e =
        bad("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n");
    assert!(e.contains("encrypted PKCS#8"), "{e}");
    let e = bad("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    assert!(e.contains("\"CERTIFICATE\""), "{e}");
    let e = bad("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n");
    assert!(
        e.contains("no \"-----END RSA PRIVATE KEY-----\" line"),
        "{e}"
    );
    let e = bad("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n");
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
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = x25519.to_vec();
    der.extend_from_slice(&[7; 32]);
    match pkcs8(&der) {
        Err(Problem::Bad(e)) => assert_eq!(e, "unsupported key algorithm 1.3.101.110"),
        other => panic!("{:?}", other.map(|k| k.comment)),
    }
    let p521 = [
        0x30, 0x0f, 0x02, 0x01, 0x01, 0x04, 0x01, 0x05, 0xa0, 0x07, 0x06, 0x05, 0x2b, 0x81, 0x04,
        0x00, 0x23,
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
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
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
