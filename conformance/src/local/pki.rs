//! Certificates and keys for the local cluster, made with rcgen (ECDSA P-256).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

/// A certificate and its key, as PEM files on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// The PKCS#8 private key.
    pub key: PathBuf,
}

/// Every certificate and key the local cluster's components need.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The cluster CA (signs every other certificate, and verifies clients).
    pub ca: CertFiles,
    /// kube-apiserver's serving certificate.
    pub apiserver: CertFiles,
    /// kube-apiserver's client certificate towards kubelets (group `system:masters`).
    pub apiserver_kubelet_client: CertFiles,
    /// The admin client (group `system:masters`), used by the suite itself.
    pub admin: CertFiles,
    /// kube-controller-manager's client certificate.
    pub controller_manager: CertFiles,
    /// kube-scheduler's client certificate.
    pub scheduler: CertFiles,
    /// The kubelet's client certificate (`system:node:<node>`, group `system:nodes`).
    pub kubelet_client: CertFiles,
    /// The kubelet's serving certificate (SAN 127.0.0.1).
    pub kubelet_serving: CertFiles,
    /// The service-account signing key pair: `cert` holds the public key, `key` the private key.
    pub service_account: CertFiles,
}

/// A client or server certificate to issue.
struct Leaf<'a> {
    file: &'a str,
    common_name: String,
    organization: Option<&'a str>,
    server: bool,
    client: bool,
    sans: Vec<SanType>,
}

fn pki_err(what: &str, source: rcgen::Error) -> Error {
    Error::Pki {
        what: what.to_owned(),
        source,
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    std::fs::write(&path, pem)
        .map_err(|source| Error::io(format!("writing {}", path.display()), source))?;
    Ok(path)
}

/// The certificates of a further node's kubelet (see [`create_with_nodes`]).
#[derive(Debug, Clone)]
pub struct NodeCerts {
    /// The node name.
    pub node: String,
    /// Client certificate `system:node:<node>` (group `system:nodes`).
    pub client: CertFiles,
    /// Serving certificate (SAN 127.0.0.1 and the node name).
    pub serving: CertFiles,
}

/// Creates every certificate in `dir` for a node named `node`.
pub fn create(dir: &Path, node: &str) -> Result<Pki, Error> {
    create_with_nodes(dir, node, &[]).map(|(pki, _)| pki)
}

/// Creates every certificate in `dir` for a node named `node`, plus the kubelet client and
/// serving certificates of each further node in `more` (files `kubelet-client-<node>.*` and
/// `kubelet-serving-<node>.*`), all signed by the same CA.
pub fn create_with_nodes(
    dir: &Path,
    node: &str,
    more: &[&str],
) -> Result<(Pki, Vec<NodeCerts>), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|source| Error::io(format!("creating {}", dir.display()), source))?;
    let ca_key = KeyPair::generate().map_err(|e| pki_err("ca key", e))?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = dn("kbx-conformance-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| pki_err("ca certificate", e))?;
    let ca = CertFiles {
        cert: write(dir, "ca.crt", &ca_cert.pem())?,
        key: write(dir, "ca.key", &ca_key.serialize_pem())?,
    };
    let issuer = Issuer::new(ca_params, ca_key);

    let loopback = SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let issue = |leaf: Leaf<'_>| -> Result<CertFiles, Error> {
        let key = KeyPair::generate().map_err(|e| pki_err(leaf.file, e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&leaf.common_name, leaf.organization);
        params.subject_alt_names = leaf.sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if leaf.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if leaf.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| pki_err(leaf.file, e))?;
        Ok(CertFiles {
            cert: write(dir, &format!("{}.crt", leaf.file), &cert.pem())?,
            key: write(dir, &format!("{}.key", leaf.file), &key.serialize_pem())?,
        })
    };
    fn client<'a>(file: &'a str, cn: &str, org: Option<&'a str>) -> Leaf<'a> {
        Leaf {
            file,
            common_name: cn.to_owned(),
            organization: org,
            server: false,
            client: true,
            sans: Vec::new(),
        }
    }

    let mut apiserver_sans = vec![
        loopback.clone(),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1))),
    ];
    for name in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        apiserver_sans.push(SanType::DnsName(
            name.try_into().map_err(|e| pki_err("apiserver san", e))?,
        ));
    }
    let apiserver = issue(Leaf {
        file: "apiserver",
        common_name: "kube-apiserver".into(),
        organization: None,
        server: true,
        client: false,
        sans: apiserver_sans,
    })?;
    let apiserver_kubelet_client = issue(client(
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        Some("system:masters"),
    ))?;
    let admin = issue(client("admin", "kubernetes-admin", Some("system:masters")))?;
    let controller_manager = issue(client(
        "controller-manager",
        "system:kube-controller-manager",
        None,
    ))?;
    let scheduler = issue(client("scheduler", "system:kube-scheduler", None))?;
    let kubelet_client = issue(client(
        "kubelet-client",
        &format!("system:node:{node}"),
        Some("system:nodes"),
    ))?;
    let kubelet_serving = issue(Leaf {
        file: "kubelet-serving",
        common_name: node.to_owned(),
        organization: None,
        server: true,
        client: false,
        sans: vec![
            loopback.clone(),
            SanType::DnsName(node.try_into().map_err(|e| pki_err("kubelet san", e))?),
        ],
    })?;
    let mut nodes = Vec::with_capacity(more.len());
    for other in more {
        let client_file = format!("kubelet-client-{other}");
        let serving_file = format!("kubelet-serving-{other}");
        nodes.push(NodeCerts {
            node: (*other).to_owned(),
            client: issue(client(
                &client_file,
                &format!("system:node:{other}"),
                Some("system:nodes"),
            ))?,
            serving: issue(Leaf {
                file: &serving_file,
                common_name: (*other).to_owned(),
                organization: None,
                server: true,
                client: false,
                sans: vec![
                    loopback.clone(),
                    SanType::DnsName((*other).try_into().map_err(|e| pki_err("kubelet san", e))?),
                ],
            })?,
        });
    }

    let sa_key = KeyPair::generate().map_err(|e| pki_err("service-account key", e))?;
    let service_account = CertFiles {
        cert: write(dir, "sa.pub", &sa_key.public_key_pem())?,
        key: write(dir, "sa.key", &sa_key.serialize_pem())?,
    };

    let pki = Pki {
        ca,
        apiserver,
        apiserver_kubelet_client,
        admin,
        controller_manager,
        scheduler,
        kubelet_client,
        kubelet_serving,
        service_account,
    };
    Ok((pki, nodes))
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_as_pem() {
        let dir = tempfile::tempdir().unwrap();
        let pki = create(dir.path(), "kbx-node").unwrap();
        for files in [
            &pki.ca,
            &pki.apiserver,
            &pki.admin,
            &pki.kubelet_client,
            &pki.kubelet_serving,
        ] {
            let cert = std::fs::read_to_string(&files.cert).unwrap();
            assert!(
                cert.starts_with("-----BEGIN CERTIFICATE-----"),
                "{}",
                files.cert.display()
            );
            let key = std::fs::read_to_string(&files.key).unwrap();
            assert!(
                key.starts_with("-----BEGIN PRIVATE KEY-----"),
                "{}",
                files.key.display()
            );
        }
        let public = std::fs::read_to_string(&pki.service_account.cert).unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    #[test]
    fn certificates_chain_to_the_ca_and_carry_their_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pki = create(dir.path(), "kbx-node").unwrap();
        for files in [
            &pki.apiserver,
            &pki.admin,
            &pki.kubelet_client,
            &pki.kubelet_serving,
            &pki.scheduler,
        ] {
            let out = std::process::Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(&pki.ca.cert)
                .arg(&files.cert)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                files.cert.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = std::process::Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "subjectAltName",
                "-in",
            ])
            .arg(&pki.kubelet_client.cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("O = system:nodes, CN = system:node:kbx-node"),
            "{text}"
        );
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(&pki.apiserver.cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("IP Address:127.0.0.1") && text.contains("IP Address:10.96.0.1"),
            "{text}"
        );
        assert!(
            text.contains("DNS:kubernetes.default.svc.cluster.local"),
            "{text}"
        );
    }
}
