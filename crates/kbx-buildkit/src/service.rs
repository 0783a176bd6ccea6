//! The gRPC layer of the session services written by hand (the content store and the
//! `DiffCopy` services): a prost codec, and a tower service that answers each request by its
//! path, the shape tonic's generated servers have.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService};

/// What a served call answers.
pub(crate) type HttpResponse = http::Response<tonic::body::Body>;

/// The future of a served call.
pub(crate) type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

/// A prost codec that encodes `E` and decodes `D`. A message that does not encode or decode
/// is an `Internal` status (`encode: …`, or `encode packet: …` with the label `packet`).
pub(crate) struct ProstCodec<E, D> {
    label: &'static str,
    _types: PhantomData<fn() -> (E, D)>,
}

impl<E, D> ProstCodec<E, D> {
    /// A codec whose errors name the messages `label`.
    pub(crate) fn labelled(label: &'static str) -> Self {
        ProstCodec {
            label,
            _types: PhantomData,
        }
    }

    fn status(&self, what: &str, e: impl std::fmt::Display) -> Status {
        match self.label {
            "" => Status::internal(format!("{what}: {e}")),
            label => Status::internal(format!("{what} {label}: {e}")),
        }
    }
}

impl<E, D> Default for ProstCodec<E, D> {
    fn default() -> Self {
        Self::labelled("")
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
        ProstCodec::labelled(self.label)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::labelled(self.label)
    }
}

impl<E: Message + Send + 'static> Encoder for ProstCodec<E, ()> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| self.status("encode", e))
    }
}

impl<D: Message + Default + Send + 'static> Decoder for ProstCodec<(), D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode(src)
            .map(Some)
            .map_err(|e| self.status("decode", e))
    }
}

/// A gRPC server with `codec` that takes and sends messages of up to `max` bytes.
pub(crate) fn grpc<E, D>(codec: ProstCodec<E, D>, max: usize) -> Grpc<ProstCodec<E, D>>
where
    E: Message + Send + 'static,
    D: Message + Default + Send + 'static,
{
    Grpc::new(codec).apply_max_message_size_config(Some(max), Some(max))
}

/// An `Unimplemented` answer saying `message`.
pub(crate) fn unimplemented(message: &'static str) -> BoxFut<HttpResponse> {
    Box::pin(async move { Ok(Status::unimplemented(message).into_http()) })
}

/// A hand-written gRPC service: its name and how it answers a request.
pub(crate) trait Routes: Clone + Send + 'static {
    /// The service name (`package.Service`).
    const NAME: &'static str;

    /// Answers `req`, whose path is `path` (`/package.Service/Method`).
    fn route<B>(&self, path: &str, req: http::Request<B>) -> BoxFut<HttpResponse>
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static;
}

/// A [`Routes`] as the tower service tonic's router takes.
#[derive(Clone)]
pub(crate) struct Served<S>(pub(crate) S);

impl<S: Routes> NamedService for Served<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Served<S>
where
    S: Routes,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFut<HttpResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        self.0.route(&path, req)
    }
}
