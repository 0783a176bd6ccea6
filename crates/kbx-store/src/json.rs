//! Go `encoding/json` compatibility: HTML-safe escaping and `[]byte` as base64.

use serde::Serialize;

/// Serialises like Go's `json.Marshal`: compact, with `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub(crate) fn to_go_json<T: Serialize>(value: &T) -> String {
    // These characters can only occur inside JSON strings, so replacing them is safe.
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// `map[string][]byte`: values as standard base64 with padding, `null` for a nil map.
pub(crate) mod files {
    use std::collections::BTreeMap;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        files: &Option<BTreeMap<String, Vec<u8>>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match files {
            None => s.serialize_none(),
            Some(map) => s.collect_map(map.iter().map(|(k, v)| (k, STANDARD.encode(v)))),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, D::Error> {
        let raw: Option<BTreeMap<String, Option<String>>> = Option::deserialize(d)?;
        raw.map(|map| {
            map.into_iter()
                .map(|(k, v)| {
                    let bytes = match v {
                        Some(text) => STANDARD.decode(text).map_err(serde::de::Error::custom)?,
                        None => Vec::new(),
                    };
                    Ok((k, bytes))
                })
                .collect()
        })
        .transpose()
    }
}
