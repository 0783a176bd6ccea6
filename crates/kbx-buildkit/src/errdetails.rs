//! The Dockerfile location that newer daemons attach to solve errors (`errdefs.Source` in the
//! gRPC status details).

use bollard_buildkit_proto::google::rpc::Status as RpcStatus;
use bollard_buildkit_proto::pb::{Range, SourceInfo};
use prost::Message;

/// Where in a source file (usually the Dockerfile) a build error comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    /// The file name as the frontend knows it, e.g. `Dockerfile`.
    pub file: String,
    /// 1-based line of the first range.
    pub line: i32,
}

/// `errdefs.Source`: `{info = 1: pb.SourceInfo, ranges = 2: repeated pb.Range}`.
#[derive(Clone, PartialEq, Message)]
struct ErrSource {
    #[prost(message, optional, tag = "1")]
    info: Option<SourceInfo>,
    #[prost(message, repeated, tag = "2")]
    ranges: Vec<Range>,
}

/// Finds the first `errdefs.Source` detail (protobuf or `+json` encoded) in `status`.
pub(crate) fn source_location(status: &tonic::Status) -> Option<SourceLocation> {
    let details = status.details();
    if details.is_empty() {
        return None;
    }
    let st = RpcStatus::decode(details).ok()?;
    st.details.iter().find_map(|any| {
        if !any.type_url.contains("errdefs.Source") {
            return None;
        }
        if any.type_url.ends_with("+json") {
            let v: serde_json::Value = serde_json::from_slice(&any.value).ok()?;
            let file = v.pointer("/info/filename")?.as_str()?.to_owned();
            let line = v.pointer("/ranges/0/start/line")?.as_i64()?;
            Some(SourceLocation {
                file,
                line: i32::try_from(line).ok()?,
            })
        } else {
            let src = ErrSource::decode(&any.value[..]).ok()?;
            let line = src.ranges.first()?.start.as_ref()?.line;
            Some(SourceLocation {
                file: src.info?.filename,
                line,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::google::protobuf::Any;
    use bollard_buildkit_proto::pb::Position;

    fn status_with(details: Vec<Any>) -> tonic::Status {
        let st = RpcStatus {
            code: 2,
            message: "failed".into(),
            details,
        };
        tonic::Status::with_details(tonic::Code::Unknown, "failed", st.encode_to_vec().into())
    }

    #[test]
    fn decodes_protobuf_and_json_sources() {
        let src = ErrSource {
            info: Some(SourceInfo {
                filename: "Dockerfile".into(),
                ..SourceInfo::default()
            }),
            ranges: vec![Range {
                start: Some(Position {
                    line: 7,
                    character: 0,
                }),
                end: None,
            }],
        };
        let proto = status_with(vec![
            Any {
                type_url: "type.googleapis.com/other.Thing".into(),
                value: vec![1, 2, 3],
            },
            Any {
                type_url: "type.googleapis.com/moby.buildkit.v1.errdefs.Source".into(),
                value: src.encode_to_vec(),
            },
        ]);
        assert_eq!(
            source_location(&proto),
            Some(SourceLocation {
                file: "Dockerfile".into(),
                line: 7
            })
        );
        let json = status_with(vec![Any {
            type_url: "github.com/moby/buildkit/errdefs.Source+json".into(),
            value: br#"{"info":{"filename":"x.Dockerfile"},"ranges":[{"start":{"line":3}}]}"#
                .to_vec(),
        }]);
        assert_eq!(
            source_location(&json),
            Some(SourceLocation {
                file: "x.Dockerfile".into(),
                line: 3
            })
        );
        assert_eq!(source_location(&tonic::Status::unknown("plain")), None);
        let garbage =
            tonic::Status::with_details(tonic::Code::Unknown, "x", vec![0xff, 0xff].into());
        assert_eq!(source_location(&garbage), None);
    }
}
