//! The endpoint string buildx stores for a Kubernetes node:
//! `kubernetes:///<builder>?deployment=<node>&kubeconfig=<path>`.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A parsed Kubernetes node endpoint.
///
/// Built and escaped exactly as buildx does (Go `net/url`): the builder name is the URL path,
/// the query keys are sorted and `kubeconfig=` is present even when empty.
///
/// ```
/// use kbx_opts::KubernetesEndpoint;
/// let ep = KubernetesEndpoint::new("kube", "kube_amd64", "/home/ci/.kube/config");
/// assert_eq!(
///     ep.to_string(),
///     "kubernetes:///kube?deployment=kube_amd64&kubeconfig=%2Fhome%2Fci%2F.kube%2Fconfig"
/// );
/// assert_eq!(ep.to_string().parse::<KubernetesEndpoint>()?, ep);
/// # Ok::<(), kbx_opts::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KubernetesEndpoint {
    /// The builder name as typed (the URL path without its leading `/`).
    pub builder: String,
    /// The `deployment=` parameter (the `--node` value, or a generated unique string).
    pub deployment: String,
    /// The `kubeconfig=` parameter: `$KUBECONFIG` at create time, possibly empty.
    pub kubeconfig: String,
    /// Other query parameters, sorted by key (kept so nothing is lost on a round trip).
    pub extra: Vec<(String, String)>,
}

const SCHEME: &str = "kubernetes://";

impl KubernetesEndpoint {
    /// An endpoint without extra parameters.
    pub fn new(builder: &str, deployment: &str, kubeconfig: &str) -> Self {
        Self {
            builder: builder.to_owned(),
            deployment: deployment.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            extra: Vec::new(),
        }
    }

    /// Parses an endpoint string.
    pub fn parse(endpoint: &str) -> Result<Self, Error> {
        let err = |reason: &str| Error::Endpoint {
            endpoint: endpoint.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = endpoint
            .strip_prefix(SCHEME)
            .ok_or_else(|| err("expected the kubernetes:// scheme"))?;
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = match before_query.find('/') {
            Some(0) => &before_query[1..],
            Some(_) => return Err(err("expected no host (three slashes after the scheme)")),
            None if before_query.is_empty() => "",
            None => return Err(err("expected no host (three slashes after the scheme)")),
        };
        let builder =
            unescape(path, false).ok_or_else(|| err("invalid percent-encoding in the path"))?;
        let mut ep = Self::new(&builder, "", "");
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k =
                unescape(k, true).ok_or_else(|| err("invalid percent-encoding in the query"))?;
            let v =
                unescape(v, true).ok_or_else(|| err("invalid percent-encoding in the query"))?;
            match k.as_str() {
                "deployment" => ep.deployment = v,
                "kubeconfig" => ep.kubeconfig = v,
                _ => ep.extra.push((k, v)),
            }
        }
        ep.extra.sort();
        Ok(ep)
    }
}

impl FromStr for KubernetesEndpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for KubernetesEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut params: Vec<(&str, &str)> = vec![
            ("deployment", self.deployment.as_str()),
            ("kubeconfig", self.kubeconfig.as_str()),
        ];
        params.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        params.sort_by(|a, b| a.0.cmp(b.0));
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", escape(k, true), escape(v, true)))
            .collect();
        write!(
            f,
            "{SCHEME}/{}?{}",
            escape(&self.builder, false),
            query.join("&")
        )
    }
}

/// Go's `url.PathEscape`-style (`query == false`, path segment of `URL.String`) or
/// `url.QueryEscape` (`query == true`) escaping.
fn escape(s: &str, query: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || !query
                && matches!(
                    b,
                    b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@'
                );
        if keep {
            out.push(b as char);
        } else if query && b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str, query: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_like_buildx() {
        assert_eq!(
            KubernetesEndpoint::new(
                "my_builder",
                "buildkit-4c2ed3ed-970f-4f3d-a6df-a4fcbab4d5cf-d9d73",
                ""
            )
            .to_string(),
            "kubernetes:///my_builder?deployment=buildkit-4c2ed3ed-970f-4f3d-a6df-a4fcbab4d5cf-d9d73&kubeconfig="
        );
        assert_eq!(
            KubernetesEndpoint::new("we ird#x?", "a b", "c:d").to_string(),
            "kubernetes:///we%20ird%23x%3F?deployment=a+b&kubeconfig=c%3Ad"
        );
    }

    #[test]
    fn parses_back() {
        let ep = KubernetesEndpoint::parse(
            "kubernetes:///buildx-test-4c972a3f9d369614b40f28a281790c7e?deployment=buildkit-4c2ed3ed-970f-4f3d-a6df-a4fcbab4d5cf-d9d73&kubeconfig=.%2Ffixtures%2Fk3s-kubeconfig",
        )
        .unwrap();
        assert_eq!(ep.builder, "buildx-test-4c972a3f9d369614b40f28a281790c7e");
        assert_eq!(ep.kubeconfig, "./fixtures/k3s-kubeconfig");
        let weird = KubernetesEndpoint::parse(
            "kubernetes:///we%20ird%23x%3F?deployment=a+b&kubeconfig=c%3Ad&zeta=1",
        )
        .unwrap();
        assert_eq!(weird.builder, "we ird#x?");
        assert_eq!(weird.deployment, "a b");
        assert_eq!(weird.extra, [("zeta".to_owned(), "1".to_owned())]);
        assert_eq!(
            weird.to_string().parse::<KubernetesEndpoint>().unwrap(),
            weird
        );
    }

    #[test]
    fn rejects_other_urls() {
        assert!(KubernetesEndpoint::parse("unix:///var/run/docker.sock").is_err());
        assert!(KubernetesEndpoint::parse("kubernetes://host/x").is_err());
        assert!(KubernetesEndpoint::parse("kubernetes:///x?deployment=%zz").is_err());
    }
}
