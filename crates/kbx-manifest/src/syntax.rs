//! Kubernetes name syntaxes (apimachinery's `validation` package), as plain checks.

use crate::error::Problem;

/// Longest label value, qualified-name part and DNS label.
pub(crate) const MAX_LABEL: usize = 63;
/// Longest DNS subdomain (and ConfigMap key).
pub(crate) const MAX_SUBDOMAIN: usize = 253;

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` without a length check.
fn label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first)
                && is_lower_alnum(last)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// An RFC 1123 label: what namespaces, volume and StatefulSet names must be.
pub(crate) fn dns1123_label(s: &str) -> Result<(), Problem> {
    if s.is_empty() {
        Err(Problem::Empty)
    } else if s.len() > MAX_LABEL {
        Err(Problem::TooLong { max: MAX_LABEL })
    } else if !label_chars(s) {
        Err(Problem::Dns1123Label)
    } else {
        Ok(())
    }
}

/// An RFC 1123 subdomain: what most object names must be.
pub(crate) fn dns1123_subdomain(s: &str) -> Result<(), Problem> {
    if s.is_empty() {
        Err(Problem::Empty)
    } else if s.len() > MAX_SUBDOMAIN {
        Err(Problem::TooLong { max: MAX_SUBDOMAIN })
    } else if !s.split('.').all(label_chars) {
        Err(Problem::Dns1123Subdomain)
    } else {
        Ok(())
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, without a length check.
fn name_chars(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A qualified name (`[prefix/]name`): what label and annotation keys must be.
pub(crate) fn qualified_name(s: &str) -> Result<(), Problem> {
    if s.is_empty() {
        return Err(Problem::Empty);
    }
    let name = match s.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty()
                || prefix.len() > MAX_SUBDOMAIN
                || dns1123_subdomain(prefix).is_err()
            {
                return Err(Problem::Prefix);
            }
            name
        }
        None => s,
    };
    if name.is_empty() || name.len() > MAX_LABEL || !name_chars(name) {
        return Err(Problem::QualifiedName);
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters of the qualified-name alphabet.
pub(crate) fn label_value(s: &str) -> Result<(), Problem> {
    if s.len() > MAX_LABEL {
        Err(Problem::TooLong { max: MAX_LABEL })
    } else if !s.is_empty() && !name_chars(s) {
        Err(Problem::LabelValue)
    } else {
        Ok(())
    }
}

/// A ConfigMap data key (a file name under the mount point).
pub(crate) fn config_map_key(s: &str) -> Result<(), Problem> {
    if s.is_empty() {
        Err(Problem::Empty)
    } else if s.len() > MAX_SUBDOMAIN {
        Err(Problem::TooLong { max: MAX_SUBDOMAIN })
    } else if s.starts_with("..")
        || s == "."
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        Err(Problem::ConfigMapKey)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert_eq!(dns1123_label("kube-amd64"), Ok(()));
        assert_eq!(dns1123_label("a"), Ok(()));
        assert_eq!(dns1123_label(""), Err(Problem::Empty));
        assert_eq!(dns1123_label("a.b"), Err(Problem::Dns1123Label));
        assert_eq!(dns1123_label("-a"), Err(Problem::Dns1123Label));
        assert_eq!(dns1123_label("a-"), Err(Problem::Dns1123Label));
        assert_eq!(dns1123_label("A"), Err(Problem::Dns1123Label));
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            Err(Problem::TooLong { max: 63 })
        );
        assert_eq!(dns1123_label(&"a".repeat(63)), Ok(()));
        assert_eq!(dns1123_subdomain("a.b-c.d"), Ok(()));
        assert_eq!(dns1123_subdomain("a..b"), Err(Problem::Dns1123Subdomain));
        assert_eq!(dns1123_subdomain("a."), Err(Problem::Dns1123Subdomain));
        assert_eq!(dns1123_subdomain("a_b"), Err(Problem::Dns1123Subdomain));
        assert_eq!(
            dns1123_subdomain(&"a".repeat(254)),
            Err(Problem::TooLong { max: 253 })
        );
    }

    #[test]
    fn qualified_names_and_values() {
        for ok in [
            "app",
            "kubernetes.io/arch",
            "a.b/c_d.E-f",
            "A9",
            "example.com/x",
        ] {
            assert_eq!(qualified_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(qualified_name(""), Err(Problem::Empty));
        assert_eq!(qualified_name("/a"), Err(Problem::Prefix));
        assert_eq!(qualified_name("Example.com/a"), Err(Problem::Prefix));
        assert_eq!(qualified_name("a/"), Err(Problem::QualifiedName));
        assert_eq!(qualified_name("a/b/c"), Err(Problem::QualifiedName));
        assert_eq!(qualified_name("-a"), Err(Problem::QualifiedName));
        assert_eq!(qualified_name("a b"), Err(Problem::QualifiedName));
        assert_eq!(qualified_name(&"a".repeat(64)), Err(Problem::QualifiedName));
        assert_eq!(label_value(""), Ok(()));
        assert_eq!(label_value("v1.2_x-Y"), Ok(()));
        assert_eq!(label_value("a/b"), Err(Problem::LabelValue));
        assert_eq!(label_value("_a"), Err(Problem::LabelValue));
        assert_eq!(
            label_value(&"a".repeat(64)),
            Err(Problem::TooLong { max: 63 })
        );
    }

    #[test]
    fn config_map_keys() {
        assert_eq!(config_map_key("buildkitd.toml"), Ok(()));
        assert_eq!(config_map_key(".hidden"), Ok(()));
        assert_eq!(config_map_key("ca_1-x.pem"), Ok(()));
        assert_eq!(config_map_key("."), Err(Problem::ConfigMapKey));
        assert_eq!(config_map_key(".."), Err(Problem::ConfigMapKey));
        assert_eq!(config_map_key("..x"), Err(Problem::ConfigMapKey));
        assert_eq!(config_map_key("a b"), Err(Problem::ConfigMapKey));
        assert_eq!(config_map_key(""), Err(Problem::Empty));
    }
}
