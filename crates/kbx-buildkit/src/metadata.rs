//! buildx's `--metadata-file`: the exporter response decoded as buildx decodes it, written as
//! Go's `json.MarshalIndent(v, "", "  ")` writes it, byte for byte.

use std::collections::BTreeMap;

use base64::Engine as _;

/// The JSON text buildx writes to `--metadata-file` for `response` (an exporter response with
/// `buildx.build.ref` already added): keys sorted, each value the JSON object (or non-empty list
/// of objects) it decodes to from base64 (`result.json` is JSON already), else the string as
/// is; two-space indentation, HTML characters escaped and no final newline, as Go writes it.
pub(crate) fn metadata_json(response: &BTreeMap<String, String>) -> String {
    let mut compact = String::from("{");
    for (i, (k, v)) in response.iter().enumerate() {
        if i > 0 {
            compact.push(',');
        }
        compact.push_str(&go_string(k));
        compact.push(':');
        match decoded_json(k, v) {
            Some(raw) => go_compact(&raw, &mut compact),
            None => compact.push_str(&go_string(v)),
        }
    }
    compact.push('}');
    go_indent(&compact)
}

/// The JSON an exporter response value holds, as buildx's `decodeExporterResponse` finds it:
/// base64 (Go's strict standard encoding; `result.json` is not encoded) of a non-empty object
/// or a non-empty list of objects.
fn decoded_json(key: &str, value: &str) -> Option<Vec<u8>> {
    let data = if key == "result.json" {
        value.as_bytes().to_vec()
    } else {
        let cleaned: String = value
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n'))
            .collect();
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical)
                .with_decode_allow_trailing_bits(true),
        );
        engine.decode(cleaned).ok()?
    };
    let object = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&data)
        .is_ok_and(|m| !m.is_empty());
    let list = || {
        serde_json::from_slice::<Vec<serde_json::Map<String, serde_json::Value>>>(&data)
            .is_ok_and(|l| !l.is_empty())
    };
    (object || list()).then_some(data)
}

/// Escapes what Go's encoder escapes in strings on top of JSON's minimum: `<`, `>`, `&`,
/// U+2028 and U+2029.
fn html_escape(c: char, out: &mut String) -> bool {
    let esc = match c {
        '<' => "\\u003c",
        '>' => "\\u003e",
        '&' => "\\u0026",
        '\u{2028}' => "\\u2028",
        '\u{2029}' => "\\u2029",
        _ => return false,
    };
    out.push_str(esc);
    true
}

/// A string as Go's `encoding/json` writes it (Go 1.22+: `\b` and `\f` short escapes, other
/// control characters as `\u00xx`, HTML characters escaped).
fn go_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if html_escape(c, &mut out) {
            continue;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Appends valid JSON `raw` without insignificant whitespace, HTML characters in strings
/// escaped: what Go does with a `json.RawMessage`.
fn go_compact(raw: &[u8], out: &mut String) {
    let text = String::from_utf8_lossy(raw);
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
            } else if c == '\\' {
                escaped = true;
                out.push(c);
            } else if c == '"' {
                in_string = false;
                out.push(c);
            } else if !html_escape(c, out) {
                out.push(c);
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
}

/// Go's `json.Indent(dst, compact, "", "  ")`.
fn go_indent(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    let mut depth = 0usize;
    let mut need_indent = false;
    let mut in_string = false;
    let mut escaped = false;
    for c in compact.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if need_indent && c != ']' && c != '}' {
            need_indent = false;
            depth += 1;
            newline(&mut out, depth);
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                need_indent = true;
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            '}' | ']' => {
                if need_indent {
                    need_indent = false;
                } else {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn values_decode_and_indent_as_go_writes_them() {
        let desc = r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:ab","size":506,"annotations":{"org.opencontainers.image.created":"2022-02-08T21:28:03Z","x":"<&>"}}"#;
        let response = BTreeMap::from([
            ("containerimage.descriptor".to_owned(), b64(desc)),
            ("containerimage.digest".to_owned(), "sha256:ab".to_owned()),
            ("buildx.build.ref".to_owned(), "b/b0/ref".to_owned()),
            ("empty".to_owned(), b64("{}")),
            ("list".to_owned(), b64(r#"[{"a":[]},{"b":{}}]"#)),
            ("text".to_owned(), "a<b\u{8}\u{1}\"".to_owned()),
            ("result.json".to_owned(), "{\"x\": [1, 2]}".to_owned()),
        ]);
        let want = r#"{
  "buildx.build.ref": "b/b0/ref",
  "containerimage.descriptor": {
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "sha256:ab",
    "size": 506,
    "annotations": {
      "org.opencontainers.image.created": "2022-02-08T21:28:03Z",
      "x": "\u003c\u0026\u003e"
    }
  },
  "containerimage.digest": "sha256:ab",
  "empty": "e30=",
  "list": [
    {
      "a": []
    },
    {
      "b": {}
    }
  ],
  "result.json": {
    "x": [
      1,
      2
    ]
  },
  "text": "a\u003cb\b\u0001\""
}"#;
        assert_eq!(metadata_json(&response), want);
        assert_eq!(metadata_json(&BTreeMap::new()), "{}");
    }

    #[test]
    fn strict_base64_and_non_objects_stay_strings() {
        // Missing padding: Go's StdEncoding refuses it.
        let unpadded = b64(r#"{"a":1}"#).trim_end_matches('=').to_owned();
        assert_eq!(decoded_json("k", &unpadded), None);
        assert!(decoded_json("k", &b64(r#"{"a":1}"#)).is_some());
        assert_eq!(decoded_json("k", &b64("[1]")), None);
        assert_eq!(decoded_json("k", &b64("\"s\"")), None);
        assert_eq!(decoded_json("k", "true"), None);
    }
}
