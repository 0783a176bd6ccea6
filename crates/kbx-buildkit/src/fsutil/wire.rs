//! fsutil's packets with byte-string paths, and the two `DiffCopy` services that carry them.
//!
//! The protobuf schema declares `Stat.path` and `Stat.linkname` as `string`, but Go never
//! checks that they are UTF-8, and on Unix a file name is any byte string. These messages use
//! `bytes` for both — the same wire encoding — so names that are not UTF-8 go through
//! byte-exact instead of failing to decode.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::server::StreamingService;
use tonic::{Request, Response, Status, Streaming};

pub(crate) use bollard_buildkit_proto::fsutil::types::packet::PacketType;

use crate::service::{BoxFut, HttpResponse, ProstCodec, Routes, grpc, unimplemented};

/// `fsutil.types.Stat` with byte-string `path` and `linkname`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Stat {
    /// Slash-separated path relative to the transfer root.
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) path: Vec<u8>,
    /// Go `os.FileMode` bits.
    #[prost(uint32, tag = "2")]
    pub(crate) mode: u32,
    #[prost(uint32, tag = "3")]
    pub(crate) uid: u32,
    #[prost(uint32, tag = "4")]
    pub(crate) gid: u32,
    #[prost(int64, tag = "5")]
    pub(crate) size: i64,
    /// Nanoseconds since the epoch.
    #[prost(int64, tag = "6")]
    pub(crate) mod_time: i64,
    /// Symlink target.
    #[prost(bytes = "vec", tag = "7")]
    pub(crate) linkname: Vec<u8>,
    #[prost(int64, tag = "8")]
    pub(crate) devmajor: i64,
    #[prost(int64, tag = "9")]
    pub(crate) devminor: i64,
    #[prost(map = "string, bytes", tag = "10")]
    pub(crate) xattrs: HashMap<String, Vec<u8>>,
}

/// `fsutil.types.Packet` carrying a [`Stat`].
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Packet {
    /// A [`PacketType`] value.
    #[prost(int32, tag = "1")]
    pub(crate) r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub(crate) stat: Option<Stat>,
    #[prost(uint32, tag = "3")]
    pub(crate) id: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) data: Vec<u8>,
}

/// Handles one `DiffCopy` call: inbound packets in, outbound packets out.
pub(crate) trait DiffCopy: Send + Sync + 'static {
    /// Starts the transfer.
    fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<mpsc::Receiver<Result<Packet, Status>>, Status>;
}

/// Which gRPC service a [`DiffCopyServer`] is.
pub(crate) trait Route: Send + Sync + 'static {
    /// The service name.
    const NAME: &'static str;
}

/// `moby.filesync.v1.FileSync` (the context sender).
pub(crate) struct FileSyncRoute;
impl Route for FileSyncRoute {
    const NAME: &'static str = "moby.filesync.v1.FileSync";
}

/// `moby.filesync.v1.FileSend` (the `local` export receiver).
pub(crate) struct FileSendRoute;
impl Route for FileSendRoute {
    const NAME: &'static str = "moby.filesync.v1.FileSend";
}

/// A gRPC service whose only method is `DiffCopy` (others answer Unimplemented).
pub(crate) struct DiffCopyServer<R, H> {
    handler: Arc<H>,
    max_message: usize,
    _route: PhantomData<fn() -> R>,
}

impl<R, H> Clone for DiffCopyServer<R, H> {
    fn clone(&self) -> Self {
        DiffCopyServer {
            handler: Arc::clone(&self.handler),
            max_message: self.max_message,
            _route: PhantomData,
        }
    }
}

impl<R: Route, H: DiffCopy> DiffCopyServer<R, H> {
    pub(crate) fn new(handler: H, max_message: usize) -> Self {
        DiffCopyServer {
            handler: Arc::new(handler),
            max_message,
            _route: PhantomData,
        }
    }
}

struct Method<H>(Arc<H>);

impl<H: DiffCopy> StreamingService<Packet> for Method<H> {
    type Response = Packet;
    type ResponseStream = ReceiverStream<Result<Packet, Status>>;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<Self::ResponseStream>, Status>> + Send>>;

    fn call(&mut self, request: Request<Streaming<Packet>>) -> Self::Future {
        let r = self
            .0
            .diff_copy(request)
            .map(|rx| Response::new(ReceiverStream::new(rx)));
        Box::pin(async move { r })
    }
}

impl<R: Route, H: DiffCopy> Routes for DiffCopyServer<R, H> {
    const NAME: &'static str = R::NAME;

    fn route<B>(&self, path: &str, req: http::Request<B>) -> BoxFut<HttpResponse>
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        let is_diff_copy =
            path.strip_prefix('/').and_then(|p| p.strip_prefix(R::NAME)) == Some("/DiffCopy");
        if !is_diff_copy {
            return unimplemented("only DiffCopy is served");
        }
        let method = Method(Arc::clone(&self.handler));
        let max = self.max_message;
        Box::pin(async move {
            let codec = ProstCodec::<Packet, Packet>::labelled("packet");
            Ok(grpc(codec, max).streaming(method, req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-path messages decode what the generated (string) messages encode, and the
    /// other way round for UTF-8 paths.
    #[test]
    fn same_wire_format_as_the_generated_types() {
        use bollard_buildkit_proto::fsutil::types as generated;
        let g = generated::Packet {
            r#type: PacketType::PacketStat as i32,
            stat: Some(generated::Stat {
                path: "dir/é.txt".into(),
                mode: 0o644,
                uid: 1,
                gid: 2,
                size: 3,
                mod_time: 4,
                linkname: "target".into(),
                devmajor: 5,
                devminor: 6,
                xattrs: HashMap::from([("user.a".into(), b"v".to_vec())]),
            }),
            id: 7,
            data: b"d".to_vec(),
        };
        let ours = Packet::decode(g.encode_to_vec().as_slice()).expect("decode");
        let st = ours.stat.clone().expect("stat");
        assert_eq!(st.path, "dir/é.txt".as_bytes());
        assert_eq!(st.linkname, b"target");
        assert_eq!(
            (st.mode, st.uid, st.gid, st.size, st.mod_time),
            (0o644, 1, 2, 3, 4)
        );
        assert_eq!((st.devmajor, st.devminor, ours.id), (5, 6, 7));
        assert_eq!(st.xattrs["user.a"], b"v");
        let back = generated::Packet::decode(ours.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(back, g);

        // A non-UTF-8 name: the generated type refuses it, ours keeps every byte.
        let raw = Packet {
            stat: Some(Stat {
                path: b"caf\xe9".to_vec(),
                ..Stat::default()
            }),
            ..Packet::default()
        };
        let bytes = raw.encode_to_vec();
        assert!(generated::Packet::decode(bytes.as_slice()).is_err());
        assert_eq!(Packet::decode(bytes.as_slice()).expect("decode"), raw);
    }
}
