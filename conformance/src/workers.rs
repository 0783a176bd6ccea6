//! The suite's own BuildKit client: one gRPC call, `moby.buildkit.v1.Control/ListWorkers`,
//! over any stream that speaks HTTP/2 with prior knowledge to BuildKit, such as the stdio of
//! `buildctl dial-stdio` run in a builder pod through `pods/exec`. Scenarios use it to read a
//! builder's workers and platforms back without going through kbx.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

/// What can go wrong while listing workers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkersError {
    /// The HTTP/2 layer failed.
    #[error("http/2 with the daemon")]
    Http2(#[source] h2::Error),
    /// The gRPC call returned an error status or a malformed answer.
    #[error("grpc {method}: {message}")]
    Grpc {
        /// The full method path.
        method: &'static str,
        /// Status code and message, or what was malformed.
        message: String,
    },
    /// The gRPC answer could not be decoded.
    #[error("decoding the answer of {method}")]
    Decode {
        /// The full method path.
        method: &'static str,
        /// Why.
        #[source]
        source: prost::DecodeError,
    },
}

/// A BuildKit worker as `ListWorkers` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// The worker ID.
    pub id: String,
    /// Platforms as `os/arch[/variant]`.
    pub platforms: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListWorkersRequest {
    #[prost(string, repeated, tag = "1")]
    filter: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListWorkersResponse {
    #[prost(message, repeated, tag = "1")]
    record: Vec<WorkerRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WorkerRecord {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(map = "string, string", tag = "2")]
    labels: HashMap<String, String>,
    #[prost(message, repeated, tag = "3")]
    platforms: Vec<Platform>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Platform {
    #[prost(string, tag = "1")]
    architecture: String,
    #[prost(string, tag = "2")]
    os: String,
    #[prost(string, tag = "3")]
    variant: String,
}

const LIST_WORKERS: &str = "/moby.buildkit.v1.Control/ListWorkers";

/// Calls `Control/ListWorkers` over `io`, which must already speak HTTP/2 with prior knowledge
/// to BuildKit (the stdio of `buildctl dial-stdio`, or a daemon socket).
pub async fn list_workers<IO>(io: IO) -> Result<Vec<Worker>, WorkersError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io)
        .await
        .map_err(WorkersError::Http2)?;
    let driver = tokio::spawn(connection);
    let result = call_list_workers(client).await;
    driver.abort();
    result
}

async fn call_list_workers(
    client: h2::client::SendRequest<Bytes>,
) -> Result<Vec<Worker>, WorkersError> {
    let mut client = client.ready().await.map_err(WorkersError::Http2)?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://buildkit{LIST_WORKERS}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| WorkersError::Grpc {
            method: LIST_WORKERS,
            message: e.to_string(),
        })?;
    let (response, mut send) = client
        .send_request(request, false)
        .map_err(WorkersError::Http2)?;
    send.send_data(
        grpc_frame(&prost::Message::encode_to_vec(
            &ListWorkersRequest::default(),
        )),
        true,
    )
    .map_err(WorkersError::Http2)?;
    let response = response.await.map_err(WorkersError::Http2)?;
    let (parts, mut body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(WorkersError::Grpc {
            method: LIST_WORKERS,
            message: format!("http status {}", parts.status),
        });
    }
    grpc_status(&parts.headers)?;
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(WorkersError::Http2)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    if let Some(trailers) = body.trailers().await.map_err(WorkersError::Http2)? {
        grpc_status(&trailers)?;
    } else if !parts.headers.contains_key("grpc-status") {
        return Err(WorkersError::Grpc {
            method: LIST_WORKERS,
            message: "no grpc-status in the answer".into(),
        });
    }
    let message = grpc_unframe(buf.freeze())?;
    let decoded: ListWorkersResponse =
        prost::Message::decode(message).map_err(|source| WorkersError::Decode {
            method: LIST_WORKERS,
            source,
        })?;
    Ok(decoded
        .record
        .into_iter()
        .map(|r| Worker {
            id: r.id,
            platforms: r
                .platforms
                .into_iter()
                .map(|p| {
                    let mut s = format!("{}/{}", p.os, p.architecture);
                    if !p.variant.is_empty() {
                        s.push('/');
                        s.push_str(&p.variant);
                    }
                    s
                })
                .collect(),
        })
        .collect())
}

fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    frame.put_slice(message);
    frame.freeze()
}

fn grpc_unframe(mut body: Bytes) -> Result<Bytes, WorkersError> {
    let malformed = |m: &str| WorkersError::Grpc {
        method: LIST_WORKERS,
        message: m.to_owned(),
    };
    if body.len() < 5 {
        return Err(malformed("answer shorter than a grpc frame header"));
    }
    if body.get_u8() != 0 {
        return Err(malformed("compressed answers are not supported"));
    }
    let len = body.get_u32() as usize;
    if body.len() != len {
        return Err(malformed("grpc frame length does not match the body"));
    }
    Ok(body)
}

fn grpc_status(headers: &http::HeaderMap) -> Result<(), WorkersError> {
    let Some(status) = headers.get("grpc-status") else {
        return Ok(());
    };
    let code = status.to_str().unwrap_or("?");
    if code == "0" {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("");
    Err(WorkersError::Grpc {
        method: LIST_WORKERS,
        message: format!("status {code}: {message}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_frames_round_trip_and_reject_bad_lengths() {
        let framed = grpc_frame(b"abc");
        assert_eq!(&framed[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(&grpc_unframe(framed).unwrap()[..], b"abc");
        assert!(grpc_unframe(Bytes::from_static(&[0, 0, 0, 0, 9, 1])).is_err());
        assert!(grpc_unframe(Bytes::from_static(&[1, 0, 0, 0, 0])).is_err());
    }

    /// A daemon double for one request/response shape: a real HTTP/2 server answering
    /// ListWorkers with `status` in its trailers. The real daemon is exercised by the scenarios.
    async fn fake_daemon(conn: tokio::io::DuplexStream, status: &'static str) {
        let mut h2 = h2::server::handshake(conn).await.unwrap();
        if let Some(Ok((request, mut respond))) = h2.accept().await {
            assert_eq!(request.uri().path(), LIST_WORKERS);
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let mut send = respond.send_response(response, false).unwrap();
            let body = ListWorkersResponse {
                record: vec![WorkerRecord {
                    id: "w0".into(),
                    labels: HashMap::new(),
                    platforms: vec![Platform {
                        architecture: "arm".into(),
                        os: "linux".into(),
                        variant: "v7".into(),
                    }],
                }],
            };
            send.send_data(grpc_frame(&prost::Message::encode_to_vec(&body)), false)
                .unwrap();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", status.parse().unwrap());
            trailers.insert("grpc-message", "boom".parse().unwrap());
            send.send_trailers(trailers).unwrap();
            let _ = futures::future::poll_fn(|cx| h2.poll_closed(cx)).await;
        }
    }

    #[tokio::test]
    async fn lists_workers_with_their_platforms() {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(fake_daemon(theirs, "0"));
        let workers = list_workers(ours).await.unwrap();
        assert_eq!(
            workers,
            vec![Worker {
                id: "w0".into(),
                platforms: vec!["linux/arm/v7".into()]
            }]
        );
        server.abort();
    }

    #[tokio::test]
    async fn reports_a_grpc_error_status() {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(fake_daemon(theirs, "12"));
        let err = list_workers(ours).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("grpc {LIST_WORKERS}: status 12: boom")
        );
        server.abort();
    }
}
