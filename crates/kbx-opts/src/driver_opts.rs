//! Step one of two: `--driver-opt` records → one ordered key/value map.

use std::fmt;
use std::ops::Range;

use crate::csv::{parse_record, write_field};
use crate::error::Error;

/// One `key=value` option with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverOpt {
    key: String,
    value: String,
    record: String,
    value_span: Range<usize>,
}

impl DriverOpt {
    /// The key (everything before the first `=`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value (everything after the first `=`).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The `--driver-opt` record this option came from.
    pub fn record(&self) -> &str {
        &self.record
    }

    /// Byte range of the value's raw text in [`DriverOpt::record`].
    pub fn value_span(&self) -> Range<usize> {
        self.value_span.clone()
    }
}

/// The raw driver options: every `--driver-opt` record merged into one map.
///
/// Each record is one RFC 4180 CSV record; each field is split at its first `=`; a later key
/// replaces the value of an earlier one, within a record and across records, exactly as buildx.
///
/// # Deviation
/// buildx keeps the options in a Go map, whose iteration order is random. kbx keeps them in input
/// order (a key keeps the position of its first occurrence and takes the value of its last), so
/// everything derived from them is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverOpts {
    opts: Vec<DriverOpt>,
}

impl DriverOpts {
    /// An empty map (no `--driver-opt` given).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `--driver-opt` occurrences, one CSV record each.
    ///
    /// Every malformed record is reported, in order: one error alone, several as
    /// [`Error::Several`].
    ///
    /// ```
    /// let opts = kbx_opts::DriverOpts::parse(["namespace=a,replicas=2", "namespace=b"])?;
    /// assert_eq!(opts.get("namespace"), Some("b"));
    /// assert_eq!(opts.keys().collect::<Vec<_>>(), ["namespace", "replicas"]);
    /// # Ok::<(), kbx_opts::Error>(())
    /// ```
    pub fn parse<I, S>(records: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut opts = Self::new();
        let mut errors = Vec::new();
        for record in records {
            let record = record.as_ref();
            match parse_record(record) {
                Ok(fields) => {
                    for field in fields {
                        let Some(eq) = field.text.find('=') else {
                            errors.push(Error::NotKeyValue {
                                record: record.to_owned(),
                                field: field.text,
                                offset: field.raw.start,
                            });
                            continue;
                        };
                        let (key, value) = (&field.text[..eq], &field.text[eq + 1..]);
                        // The raw value starts after the `=`; a quoted field has one more byte.
                        let start = (field.raw.start + usize::from(field.quoted) + eq + 1)
                            .min(field.raw.end);
                        let end = field.raw.end - usize::from(field.quoted && field.raw.len() > 1);
                        opts.insert_with_source(key, value, record, start..end.max(start));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Ok(opts),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Several(errors)),
        }
    }

    /// Builds the map from pairs, e.g. the `DriverOpts` of a stored builder record.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut opts = Self::new();
        for (k, v) in pairs {
            opts.insert(k, v);
        }
        opts
    }

    /// Sets `key` to `value` (keeping the key's position if it exists).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        let mut record = String::new();
        write_field(&mut record, &format!("{key}={value}"));
        let quoted = usize::from(record.starts_with('"'));
        let start = quoted + key.len() + 1;
        let span = start..record.len() - quoted;
        self.insert_with_source(&key, &value, &record, span);
    }

    fn insert_with_source(&mut self, key: &str, value: &str, record: &str, span: Range<usize>) {
        let opt = DriverOpt {
            key: key.to_owned(),
            value: value.to_owned(),
            record: record.to_owned(),
            value_span: span,
        };
        match self.opts.iter_mut().find(|o| o.key == key) {
            Some(existing) => *existing = opt,
            None => self.opts.push(opt),
        }
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_opt(key).map(DriverOpt::value)
    }

    /// The option `key` with its source, if given.
    pub fn get_opt(&self, key: &str) -> Option<&DriverOpt> {
        self.opts.iter().find(|o| o.key == key)
    }

    /// Whether `key` was given (even with an empty value).
    pub fn contains_key(&self, key: &str) -> bool {
        self.get_opt(key).is_some()
    }

    /// The options in input order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &DriverOpt> {
        self.opts.iter()
    }

    /// The keys in input order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.opts.iter().map(DriverOpt::key)
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.opts.len()
    }

    /// Whether no option was given.
    pub fn is_empty(&self) -> bool {
        self.opts.is_empty()
    }
}

/// One CSV record that [`DriverOpts::parse`] reads back into an equal map (empty when there are
/// no options).
impl fmt::Display for DriverOpts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for (i, opt) in self.opts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let mut field = String::new();
            write_field(&mut field, &format!("{}={}", opt.key, opt.value));
            out.push_str(&field);
        }
        f.write_str(&out)
    }
}

impl<'a> IntoIterator for &'a DriverOpts {
    type Item = &'a DriverOpt;
    type IntoIter = std::slice::Iter<'a, DriverOpt>;

    fn into_iter(self) -> Self::IntoIter {
        self.opts.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(o: &DriverOpts) -> Vec<(String, String)> {
        o.iter()
            .map(|o| (o.key().to_owned(), o.value().to_owned()))
            .collect()
    }

    #[test]
    fn csv_to_map_like_buildx() {
        // TestCsvToMap.
        let o = DriverOpts::parse([
            "\"tolerations=key=foo,value=bar;key=foo2,value=bar2\",replicas=1",
            "namespace=default",
        ])
        .unwrap();
        assert_eq!(
            o.get("tolerations"),
            Some("key=foo,value=bar;key=foo2,value=bar2")
        );
        assert_eq!(o.get("replicas"), Some("1"));
        assert_eq!(o.get("namespace"), Some("default"));
    }

    #[test]
    fn last_key_wins_and_first_position_kept() {
        let o = DriverOpts::parse(["replicas=1,namespace=a,replicas=3", "namespace=b"]).unwrap();
        assert_eq!(
            pairs(&o),
            [
                ("replicas".into(), "3".into()),
                ("namespace".into(), "b".into())
            ]
        );
    }

    #[test]
    fn first_equals_splits() {
        let o = DriverOpts::parse(["nodeselector=a=b,=x, namespace=y"]).unwrap();
        assert_eq!(o.get("nodeselector"), Some("a=b"));
        assert_eq!(o.get(""), Some("x"));
        assert_eq!(o.get(" namespace"), Some("y"));
    }

    #[test]
    fn field_without_equals() {
        let e = DriverOpts::parse(["a=b,"]).unwrap_err();
        assert_eq!(e.to_string(), r#"invalid value "", expecting k=v"#);
        let e = DriverOpts::parse(["a=b,rootless"]).unwrap_err();
        assert_eq!(e.to_string(), r#"invalid value "rootless", expecting k=v"#);
    }

    #[test]
    fn several_bad_records_all_reported() {
        let e = DriverOpts::parse(["", "a"]).unwrap_err();
        let texts: Vec<_> = e.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["EOF", r#"invalid value "a", expecting k=v"#]);
    }

    #[test]
    fn value_spans() {
        let o = DriverOpts::parse([r#"a=bc,"d=e,f""#]).unwrap();
        let a = o.get_opt("a").unwrap();
        assert_eq!(&a.record()[a.value_span()], "bc");
        let d = o.get_opt("d").unwrap();
        assert_eq!(&d.record()[d.value_span()], "e,f");
    }

    #[test]
    fn display_round_trips() {
        let o = DriverOpts::from_pairs([
            ("nodeselector", "a=b,c=d"),
            ("x", "has \"quotes\""),
            ("y", "plain"),
        ]);
        let back = DriverOpts::parse([o.to_string()]).unwrap();
        assert_eq!(pairs(&back), pairs(&o));
    }
}
