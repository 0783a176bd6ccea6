//! buildx's `--metadata-file`: the exporter response decoded as buildx decodes it, written as
//! Go's `json.MarshalIndent(v, "", "  ")` writes it, byte for byte, and the provenance buildx
//! adds from the daemon's record of the build (`ListenBuildHistory`, then containerd's
//! `Content.Read` for the attestation blob).
//!
//! # Deviation
//! (C11) buildx decodes the provenance predicate into its Go types and encodes it again; kbx
//! keeps the daemon's encoding (compacted, HTML characters escaped) and drops `buildConfig` and
//! `metadata` for `min`. For BuildKit's own encoding the bytes are the same.

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
    fn provenance_keeps_the_predicate_order_and_drops_build_config_and_metadata_for_min() {
        let blob = br#"{"builder": {"id": ""}, "buildType": "https://mobyproject.org/buildkit@v1",
            "invocation": {"configSource": {}, "parameters": {"frontend": "dockerfile.v0", "args": {"a,b": "<x>"}}},
            "buildConfig": {"llbDefinition": [{"id": "step0"}]}, "metadata": {"reproducible": false},
            "materials": [{"uri": "pkg:docker/busybox", "digest": {"sha256": "ab"}}]}"#;
        let decode = |s: String| {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
        };
        assert_eq!(
            decode(encode_provenance(blob, MetadataProvenance::Min).unwrap()),
            r#"{"builder":{"id":""},"buildType":"https://mobyproject.org/buildkit@v1","invocation":{"configSource":{},"parameters":{"frontend":"dockerfile.v0","args":{"a,b":"\u003cx\u003e"}}},"materials":[{"uri":"pkg:docker/busybox","digest":{"sha256":"ab"}}]}"#
        );
        let max = decode(encode_provenance(blob, MetadataProvenance::Max).unwrap());
        assert!(max.contains(r#""buildConfig":{"llbDefinition":[{"id":"step0"}]},"metadata":{"reproducible":false}"#), "{max}");
        assert_eq!(encode_provenance(b"[1]", MetadataProvenance::Min), None);
        assert_eq!(
            encode_provenance(b"{}", MetadataProvenance::Min)
                .map(decode)
                .as_deref(),
            Some("{}")
        );
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

/// Which provenance buildx adds to `--metadata-file` (`BUILDX_METADATA_PROVENANCE`), read from
/// the daemon's record of the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataProvenance {
    /// Without `buildConfig` and `metadata` (buildx's default).
    Min,
    /// The whole predicate.
    Max,
}

impl MetadataProvenance {
    /// `BUILDX_METADATA_PROVENANCE` as Buildx 0.29 reads it: `min`, `max`, `disabled` or a
    /// false Go boolean (`None`); anything else, unset included, is `min`.
    ///
    /// ```
    /// use kbx_buildkit::MetadataProvenance as P;
    /// assert_eq!(P::from_env(None), Some(P::Min));
    /// assert_eq!(P::from_env(Some("max")), Some(P::Max));
    /// assert_eq!(P::from_env(Some("0")), None);
    /// assert_eq!(P::from_env(Some("disabled")), None);
    /// assert_eq!(P::from_env(Some("MAX")), Some(P::Min));
    /// ```
    pub fn from_env(value: Option<&str>) -> Option<Self> {
        match value.unwrap_or_default() {
            "min" => Some(MetadataProvenance::Min),
            "max" => Some(MetadataProvenance::Max),
            "disabled" | "0" | "f" | "F" | "FALSE" | "false" | "False" => None,
            _ => Some(MetadataProvenance::Min),
        }
    }
}

/// The key of one `"key": value` member.
fn member_key(text: &str) -> Option<String> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<String>()
        .next()?
        .ok()
}

/// The top-level members of the JSON object `raw` (valid JSON), as raw text, with their keys.
fn top_level_members(raw: &str) -> Option<Vec<(String, &str)>> {
    let inner = raw.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut pieces = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0usize, false, false, 0usize);
    for (i, c) in inner.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                pieces.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&inner[start..]);
    pieces
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Some((member_key(p)?, p)))
        .collect()
}

/// The value buildx stores under `buildx.build.provenance`: the provenance predicate `blob`,
/// without `buildConfig` and `metadata` for [`MetadataProvenance::Min`], compacted as Go writes
/// it, base64.
pub(crate) fn encode_provenance(blob: &[u8], mode: MetadataProvenance) -> Option<String> {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(blob).ok()?;
    let text = std::str::from_utf8(blob).ok()?;
    let kept: Vec<&str> = top_level_members(text)?
        .into_iter()
        .filter(|(k, _)| {
            mode == MetadataProvenance::Max || !matches!(k.as_str(), "buildConfig" | "metadata")
        })
        .map(|(_, m)| m)
        .collect();
    let mut compact = String::new();
    go_compact(format!("{{{}}}", kept.join(",")).as_bytes(), &mut compact);
    Some(base64::engine::general_purpose::STANDARD.encode(compact))
}

impl crate::Client {
    /// What buildx adds to the metadata file from the daemon's build history for the solve
    /// `build_ref`: `buildx.build.provenance` (or `buildx.build.provenance/PLATFORM` for each
    /// platform of a multi-platform result), the SLSA provenance attestation of the record,
    /// reduced as `mode` says. Empty when the daemon keeps no history (BuildKit before v0.11)
    /// or the record has no provenance.
    ///
    /// # Errors
    /// [`crate::Error::Rpc`] when the history or the content store fails.
    pub async fn record_provenance(
        &self,
        build_ref: &str,
        mode: MetadataProvenance,
    ) -> crate::Result<BTreeMap<String, String>> {
        use bollard_buildkit_proto::moby::buildkit::v1::{BuildHistoryRequest, BuildResultInfo};
        let rpc = |call, status| crate::Error::Rpc {
            call,
            status: Box::new(status),
        };
        let request = BuildHistoryRequest {
            r#ref: build_ref.to_owned(),
            early_exit: true,
            ..BuildHistoryRequest::default()
        };
        let mut stream = match self.control.clone().listen_build_history(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(BTreeMap::new()),
            Err(s) => return Err(rpc("ListenBuildHistory", s)),
        };
        let lookup = |res: &BuildResultInfo| {
            res.attestations
                .iter()
                .find(|a| {
                    a.media_type == "application/vnd.in-toto+json"
                        && a.annotations
                            .get("in-toto.io/predicate-type")
                            .is_some_and(|t| t.starts_with("https://slsa.dev/provenance/"))
                })
                .map(|a| a.digest.clone())
        };
        let mut wanted: Vec<(String, String)> = Vec::new();
        loop {
            let ev = match stream.message().await {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                // A daemon without build history (BuildKit before v0.11) says so here.
                Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(BTreeMap::new()),
                Err(s) => return Err(rpc("ListenBuildHistory", s)),
            };
            let Some(record) = ev.record else { continue };
            if let Some(res) = &record.result {
                if let Some(d) = lookup(res) {
                    wanted.push(("buildx.build.provenance".to_owned(), d));
                }
            } else {
                for (platform, res) in &record.results {
                    if let Some(d) = lookup(res) {
                        wanted.push((format!("buildx.build.provenance/{platform}"), d));
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        for (key, digest) in wanted {
            let blob = self.read_content(&digest).await?;
            let value = encode_provenance(&blob, mode).ok_or_else(|| {
                crate::Error::Session(format!(
                    "failed to unmarshal provenance {digest} from the build record"
                ))
            })?;
            out.insert(key, value);
        }
        Ok(out)
    }

    /// A blob of the daemon's content store (containerd's `Content.Read`).
    pub(crate) async fn read_content(&self, digest: &str) -> crate::Result<Vec<u8>> {
        use crate::content::{ReadContentRequest, ReadContentResponse};
        let rpc = |status| crate::Error::Rpc {
            call: "Content.Read",
            status: Box::new(status),
        };
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| rpc(tonic::Status::unavailable(e.to_string())))?;
        let codec =
            crate::service::ProstCodec::<ReadContentRequest, ReadContentResponse>::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/containerd.services.content.v1.Content/Read",
        );
        let request = ReadContentRequest {
            digest: digest.to_owned(),
            offset: 0,
            size: 0,
        };
        let mut stream = grpc
            .server_streaming(tonic::Request::new(request), path, codec)
            .await
            .map_err(rpc)?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(rpc)? {
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }
}
