//! The session content store: containerd's `Content` service (`Info` and `Read`) over an OCI
//! layout directory, for `--cache-from type=local,src=DIR`.
//!
//! The daemon picks the store with the `buildkit-attachable-store-id` metadata
//! (`local:<src>`), asks `Info` for a blob's size and streams it with `Read`.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};

use crate::{Error, Result};

/// The metadata key naming the store.
const STORE_HEADER: &str = "buildkit-attachable-store-id";
/// The annotation that tags an `index.json` entry.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Bytes per `Read` message.
const CHUNK: usize = 256 * 1024;

/// containerd `InfoRequest`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct InfoRequest {
    #[prost(string, tag = "1")]
    pub(crate) digest: String,
}

/// containerd `Info` (timestamps and labels are left out).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Info {
    #[prost(string, tag = "1")]
    pub(crate) digest: String,
    #[prost(int64, tag = "2")]
    pub(crate) size: i64,
}

/// containerd `InfoResponse`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct InfoResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) info: Option<Info>,
}

/// containerd `ReadContentRequest`; `size` 0 reads to the end.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ReadContentRequest {
    #[prost(string, tag = "1")]
    pub(crate) digest: String,
    #[prost(int64, tag = "2")]
    pub(crate) offset: i64,
    #[prost(int64, tag = "3")]
    pub(crate) size: i64,
}

/// containerd `ReadContentResponse`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ReadContentResponse {
    #[prost(int64, tag = "1")]
    pub(crate) offset: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) data: Vec<u8>,
}

/// Read-only OCI layout directories, by store ID.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stores {
    pub(crate) dirs: HashMap<String, PathBuf>,
}

impl Stores {
    fn blob(&self, md: &tonic::metadata::MetadataMap, digest: &str) -> Result<PathBuf, Status> {
        let id = md
            .get(STORE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::invalid_argument(format!("request lacks {STORE_HEADER}")))?;
        let root = self
            .dirs
            .get(id)
            .ok_or_else(|| Status::not_found(format!("unknown store {id}")))?;
        let (alg, hex) = digest
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument(format!("invalid digest {digest:?}")))?;
        let hex_ok = match alg {
            "sha256" => hex.len() == 64,
            "sha512" => hex.len() == 128,
            _ => false,
        } && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(Status::invalid_argument(format!(
                "invalid digest {digest:?}"
            )));
        }
        Ok(root.join("blobs").join(alg).join(hex))
    }
}

/// The digest `index.json` in `dir` names for `tag` (default `latest`), as the Go client
/// resolves a local cache source. `Ok(None)` when there is no `index.json` (nothing to import).
pub(crate) fn resolve_tag(dir: &Path, tag: Option<&str>) -> Result<Option<String>> {
    let path = dir.join("index.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::io(
            "parse",
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    let want = tag.unwrap_or("latest");
    let found = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .find(|m| {
            m.get("annotations")
                .and_then(|a| a.get(REF_NAME))
                .and_then(|v| v.as_str())
                == Some(want)
        })
        .and_then(|m| m.get("digest"))
        .and_then(|d| d.as_str())
        .map(str::to_owned);
    match found {
        Some(d) => Ok(Some(d)),
        None => Err(Error::InvalidOptions(format!(
            "local cache importer requires either explicit digest, \"latest\" tag or custom tag \
             on index.json ({} has no {want:?})",
            path.display()
        ))),
    }
}

/// A prost codec for one request and one response type.
pub(crate) struct ProstCodec<E, D>(PhantomData<fn() -> (E, D)>);

impl<E, D> Default for ProstCodec<E, D> {
    fn default() -> Self {
        ProstCodec(PhantomData)
    }
}

impl<E, D> Codec for ProstCodec<E, D>
where
    E: Message + Send + 'static,
    D: Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = ProstCodec<E, ()>;
    type Decoder = ProstCodec<(), D>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec(PhantomData)
    }
}

impl<E: Message + Send + 'static> Encoder for ProstCodec<E, ()> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encode: {e}")))
    }
}

impl<D: Message + Default + Send + 'static> Decoder for ProstCodec<(), D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decode: {e}")))
    }
}

/// `containerd.services.content.v1.Content` with `Info` and `Read`; the other methods answer
/// Unimplemented (the store is read-only).
#[derive(Clone)]
pub(crate) struct ContentServer {
    stores: Arc<Stores>,
}

impl ContentServer {
    pub(crate) fn new(stores: Stores) -> Self {
        ContentServer {
            stores: Arc::new(stores),
        }
    }
}

impl NamedService for ContentServer {
    const NAME: &'static str = "containerd.services.content.v1.Content";
}

struct InfoMethod(Arc<Stores>);

impl UnaryService<InfoRequest> for InfoMethod {
    type Response = InfoResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<InfoResponse>, Status>> + Send>>;

    fn call(&mut self, request: Request<InfoRequest>) -> Self::Future {
        let stores = Arc::clone(&self.0);
        Box::pin(async move {
            let digest = request.get_ref().digest.clone();
            let path = stores.blob(request.metadata(), &digest)?;
            let md = tokio::fs::metadata(&path)
                .await
                .map_err(|_| Status::not_found(format!("content digest {digest}: not found")))?;
            Ok(Response::new(InfoResponse {
                info: Some(Info {
                    digest,
                    size: md.len() as i64,
                }),
            }))
        })
    }
}

struct ReadMethod(Arc<Stores>);

type ReadStream = ReceiverStream<Result<ReadContentResponse, Status>>;

impl ServerStreamingService<ReadContentRequest> for ReadMethod {
    type Response = ReadContentResponse;
    type ResponseStream = ReadStream;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ReadStream>, Status>> + Send>>;

    fn call(&mut self, request: Request<ReadContentRequest>) -> Self::Future {
        let stores = Arc::clone(&self.0);
        Box::pin(async move {
            let r = request.get_ref().clone();
            let path = stores.blob(request.metadata(), &r.digest)?;
            let mut f = std::fs::File::open(&path).map_err(|_| {
                Status::not_found(format!("content digest {}: not found", r.digest))
            })?;
            let offset =
                u64::try_from(r.offset).map_err(|_| Status::invalid_argument("negative offset"))?;
            let len = f
                .metadata()
                .map_err(|e| Status::internal(e.to_string()))?
                .len();
            let end = match r.size {
                s if s > 0 => len.min(offset.saturating_add(s as u64)),
                _ => len,
            };
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| Status::internal(e.to_string()))?;
            let (tx, rx) = mpsc::channel(2);
            tokio::task::spawn_blocking(move || {
                let mut pos = offset;
                let mut buf = vec![0u8; CHUNK];
                while pos < end {
                    let want = usize::try_from(end - pos).unwrap_or(CHUNK).min(CHUNK);
                    let msg = match f.read(&mut buf[..want]) {
                        Ok(0) => break,
                        Ok(n) => Ok(ReadContentResponse {
                            offset: pos as i64,
                            data: buf[..n].to_vec(),
                        }),
                        Err(e) => Err(Status::internal(e.to_string())),
                    };
                    let failed = msg.is_err();
                    if let Ok(m) = &msg {
                        pos += m.data.len() as u64;
                    }
                    if tx.blocking_send(msg).is_err() || failed {
                        break;
                    }
                }
            });
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, std::convert::Infallible>> + Send>>;

impl<B> tower::Service<http::Request<B>> for ContentServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFut<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let stores = Arc::clone(&self.stores);
        let max = Some(crate::session::MAX_MESSAGE);
        match req.uri().path() {
            "/containerd.services.content.v1.Content/Info" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<InfoResponse, InfoRequest>::default())
                    .apply_max_message_size_config(max, max);
                Ok(grpc.unary(InfoMethod(stores), req).await)
            }),
            "/containerd.services.content.v1.Content/Read" => Box::pin(async move {
                let mut grpc =
                    Grpc::new(ProstCodec::<ReadContentResponse, ReadContentRequest>::default())
                        .apply_max_message_size_config(max, max);
                Ok(grpc.server_streaming(ReadMethod(stores), req).await)
            }),
            _ => Box::pin(async move {
                Ok(Status::unimplemented("the session content store is read-only").into_http())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_tags_resolve_to_digests() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(resolve_tag(d.path(), None).expect("no index"), None);
        std::fs::write(
            d.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[
                {"digest":"sha256:aa","annotations":{"org.opencontainers.image.ref.name":"v1"}},
                {"digest":"sha256:bb","annotations":{"org.opencontainers.image.ref.name":"latest"}}
            ]}"#,
        )
        .expect("write");
        assert_eq!(
            resolve_tag(d.path(), None).expect("latest").as_deref(),
            Some("sha256:bb")
        );
        assert_eq!(
            resolve_tag(d.path(), Some("v1")).expect("v1").as_deref(),
            Some("sha256:aa")
        );
        let e = resolve_tag(d.path(), Some("nope")).expect_err("missing tag");
        assert!(e.to_string().contains("\"nope\""), "{e}");
    }

    #[test]
    fn digests_are_checked_before_touching_the_disk() {
        let stores = Stores {
            dirs: HashMap::from([("local:x".to_owned(), PathBuf::from("/store"))]),
        };
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(STORE_HEADER, "local:x".parse().expect("header"));
        let hex = "ab".repeat(32);
        assert_eq!(
            stores.blob(&md, &format!("sha256:{hex}")).expect("ok"),
            PathBuf::from(format!("/store/blobs/sha256/{hex}"))
        );
        for bad in [
            "sha256:../../etc/passwd",
            "md5:abc",
            "sha256:ABC",
            "nocolon",
        ] {
            assert_eq!(
                stores.blob(&md, bad).expect_err(bad).code(),
                tonic::Code::InvalidArgument
            );
        }
        let mut other = tonic::metadata::MetadataMap::new();
        other.insert(STORE_HEADER, "local:y".parse().expect("header"));
        assert_eq!(
            stores
                .blob(&other, &format!("sha256:{hex}"))
                .expect_err("store")
                .code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            stores
                .blob(&tonic::metadata::MetadataMap::new(), "sha256:x")
                .expect_err("no header")
                .code(),
            tonic::Code::InvalidArgument
        );
    }
}
