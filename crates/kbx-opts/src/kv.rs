//! `k=v,k=v` lists (nodeselector, annotations, labels) with buildx's splitter.

use crate::error::Error;

/// An ordered list of `key=value` pairs; a later duplicate key replaces the earlier value.
///
/// # Deviation
/// buildx keeps these in a Go map (random order). kbx keeps input order, so rendering is
/// deterministic; a repeated key keeps its first position and takes its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyValues(Vec<(String, String)>);

impl serde::Serialize for KeyValues {
    /// A map, entries in list order.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl KeyValues {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses like buildx's `splitMultiValues`: strip every leading and trailing `"` of the whole
    /// value, split on `,`, and require each item to split on `=` into exactly two parts (so
    /// empty items, `a=b=c` and a bare `key` are errors).
    ///
    /// ```
    /// let kv = kbx_opts::KeyValues::parse("\"a=b,c=d\"")?;
    /// assert_eq!(kv.get("c"), Some("d"));
    /// assert_eq!(
    ///     kbx_opts::KeyValues::parse("a=b,").unwrap_err().to_string(),
    ///     "invalid key-value pair: "
    /// );
    /// # Ok::<(), kbx_opts::Error>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, Error> {
        let trimmed = value.trim_matches('"');
        let base = value.len() - value.trim_start_matches('"').len();
        let mut out = Self::new();
        let mut offset = base;
        for item in trimmed.split(',') {
            let span = offset..offset + item.len();
            offset += item.len() + 1;
            let mut parts = item.split('=');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(k), Some(v), None) => out.insert(k, v),
                _ => {
                    return Err(Error::KeyValuePair {
                        item: item.to_owned(),
                        span,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Sets `key` (keeping its position if present).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The pairs in input order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for KeyValues {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut out = Self::new();
        for (k, v) in iter {
            out.insert(k, v);
        }
        out
    }
}

/// `k=v,k=v`, which [`KeyValues::parse`] reads back.
impl std::fmt::Display for KeyValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        KeyValues::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn splits_like_buildx() {
        let kv = KeyValues::parse("selector1=value1,selector2=value2").unwrap();
        assert_eq!(kv.len(), 2);
        assert_eq!(kv.get("selector2"), Some("value2"));
        let kv = KeyValues::parse("a=1,a=2,b=3").unwrap();
        assert_eq!(kv.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")]);
        let kv = KeyValues::parse("\"\"x= y \"").unwrap();
        assert_eq!(kv.get("x"), Some(" y "));
        assert_eq!(KeyValues::parse("=").unwrap().get(""), Some(""));
    }

    #[test]
    fn rejects_like_buildx() {
        assert_eq!(err(""), "invalid key-value pair: ");
        assert_eq!(err("a=b,"), "invalid key-value pair: ");
        assert_eq!(err("a=b=c"), "invalid key-value pair: a=b=c");
        assert_eq!(err("key"), "invalid key-value pair: key");
        assert_eq!(err("key,value"), "invalid key-value pair: key");
    }

    #[test]
    fn spans_point_at_the_item() {
        let Error::KeyValuePair { span, .. } = KeyValues::parse("a=b,bad").unwrap_err() else {
            panic!("wrong error")
        };
        assert_eq!(span, 4..7);
    }
}
