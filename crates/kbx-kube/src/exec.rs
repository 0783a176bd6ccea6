//! The BuildKit connection: `buildctl dial-stdio` in a pod, over the exec API.
//!
//! kbx speaks the exec API's WebSocket sub-protocol (`v5.channel.k8s.io`, else
//! `v4.channel.k8s.io`) itself rather than through kube-client's `AttachedProcess`: every
//! binary message starts with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 the exec status as
//! a JSON `Status`, 255 a close signal on v5), and the message sizes are kbx's choice. A
//! writer task sends whatever the application has written since its last message, up to
//! [`STDIN_MESSAGE_MAX`] bytes, as one message: gRPC's frames that pile up while a message is
//! on the wire travel together in the next one, and a lone small request goes out at once.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Sink, SinkExt as _, Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::Error;

/// The command run in the pod.
pub const DIAL_STDIO: [&str; 2] = ["buildctl", "dial-stdio"];

/// The largest stdin message kbx sends (payload, without the channel byte).
///
/// kube-client's own exec loop sends at most 4 KiB per message (behind a 1 KiB pipe by
/// default); a 200 MB build context then takes 50,000 to 200,000 messages, each flushed,
/// encrypted and proxied on its own by the API server and the kubelet. 256 KiB messages cut
/// that to the few hundred that the wire can take while the next one fills.
pub const STDIN_MESSAGE_MAX: usize = 256 << 10;

/// How many written bytes may wait for the writer task before writes wait (back-pressure).
pub const STDIN_BUFFER_MAX: usize = 1 << 20;

const _: () = assert!(
    STDIN_MESSAGE_MAX >= 64 << 10,
    "stdin messages must carry at least 64 KiB"
);
const _: () = assert!(
    STDIN_BUFFER_MAX >= 2 * STDIN_MESSAGE_MAX,
    "the stdin buffer must fill the next message while one is on the wire"
);

const CHANNEL_STDIN: u8 = 0;
const CHANNEL_STDOUT: u8 = 1;
const CHANNEL_STDERR: u8 = 2;
const CHANNEL_STATUS: u8 = 3;
const CHANNEL_CLOSE: u8 = 255;

/// A byte stream to a command in a pod: writes go to its stdin, reads come from its stdout. Its
/// stderr goes to the `stderr` callback, one line at a time.
///
/// When the exec session ends, reads return end-of-file (or the failure the API server
/// reported) and writes fail with `BrokenPipe`; dropping the stream ends the session. Shutting
/// the write side down sends what is buffered and, on `v5.channel.k8s.io`, closes the command's
/// stdin (`v4.channel.k8s.io` cannot).
pub struct ExecStream {
    incoming: Pin<Box<dyn Stream<Item = Result<Message, tungstenite::Error>> + Send>>,
    stdout: Bytes,
    stderr_line: Vec<u8>,
    stderr: Arc<dyn Fn(&str) + Send + Sync>,
    shared: Arc<Mutex<Shared>>,
    writer: JoinHandle<()>,
    ended: bool,
}

impl std::fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStream").finish_non_exhaustive()
    }
}

/// What the application side and the writer task share.
#[derive(Default)]
struct Shared {
    /// Written, not yet sent.
    pending: BytesMut,
    /// The application shut its write side down.
    closing: bool,
    /// The writer task has ended (drained after `closing`, or failed).
    done: bool,
    /// The exec status said `Failure`: its message.
    failure: Option<String>,
    /// Sending failed.
    write_error: Option<String>,
    /// The writer task waits for data.
    writer_waker: Option<Waker>,
    /// The application waits for room in `pending`, or for the shutdown to finish.
    app_waker: Option<Waker>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn broken(&self) -> Option<io::Error> {
        self.failure
            .as_ref()
            .or(self.write_error.as_ref())
            .map(|m| io::Error::new(io::ErrorKind::BrokenPipe, m.clone()))
    }

    fn wake_app(&mut self) {
        if let Some(w) = self.app_waker.take() {
            w.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
    }
}

/// The exec request for a command in `container`: stdin, stdout and stderr, no TTY.
pub(crate) fn attach_params(container: &str) -> AttachParams {
    AttachParams::default()
        .container(container)
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .tty(false)
}

impl ExecStream {
    /// Starts `buildctl dial-stdio` in `container` of `pod`.
    pub async fn dial(
        pods: &Api<Pod>,
        pod: &str,
        container: &str,
        stderr: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Self, Error> {
        Self::spawn(pods, pod, container, &DIAL_STDIO, stderr).await
    }

    /// Starts `command` in `container` of `pod`, with its stdin and stdout as this stream.
    pub async fn spawn(
        pods: &Api<Pod>,
        pod: &str,
        container: &str,
        command: &[&str],
        stderr: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Self, Error> {
        let url = format!("{}/{pod}/exec", pods.resource_url());
        let exec_error = |source| Error::Exec {
            pod: pod.to_owned(),
            source: crate::RequestError::new("Get", url.clone(), source),
        };
        let mut request = kube::core::Request::new(pods.resource_url())
            .exec(pod, command.iter().copied(), &attach_params(container))
            .map_err(|e| exec_error(kube::Error::BuildRequest(e)))?;
        request.extensions_mut().insert("exec");
        let client = kube::Client::from(pods.clone());
        let connection = client.connect(request).await.map_err(exec_error)?;
        let close_stdin = connection.supports_stream_close();
        Ok(Self::over(connection.into_stream(), close_stdin, stderr))
    }

    /// The stream over an established exec WebSocket (`close_stdin`: the sub-protocol can close
    /// stdin, `v5.channel.k8s.io`).
    fn over<S>(socket: S, close_stdin: bool, stderr: Arc<dyn Fn(&str) + Send + Sync>) -> Self
    where
        S: Stream<Item = Result<Message, tungstenite::Error>>
            + Sink<Message, Error = tungstenite::Error>
            + Send
            + 'static,
    {
        let (sink, incoming) = socket.split();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let writer = tokio::spawn(write_loop(sink, shared.clone(), close_stdin));
        ExecStream {
            incoming: Box::pin(incoming),
            stdout: Bytes::new(),
            stderr_line: Vec::new(),
            stderr,
            shared,
            writer,
            ended: false,
        }
    }

    fn stderr_bytes(&mut self, mut data: &[u8]) {
        while let Some(at) = data.iter().position(|&b| b == b'\n') {
            self.stderr_line.extend_from_slice(&data[..at]);
            self.stderr_line();
            data = &data[at + 1..];
        }
        self.stderr_line.extend_from_slice(data);
    }

    fn stderr_line(&mut self) {
        let line = String::from_utf8_lossy(&self.stderr_line);
        (self.stderr)(line.trim_end_matches('\r'));
        self.stderr_line.clear();
    }

    fn status(&mut self, json: &[u8]) {
        let Ok(status) = serde_json::from_slice::<serde_json::Value>(json) else {
            return;
        };
        if status.get("status").and_then(|s| s.as_str()) == Some("Failure") {
            let message = status
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("exec failed")
                .to_owned();
            let mut shared = lock(&self.shared);
            shared.failure = Some(message);
            shared.wake_app();
        }
    }

    fn end(&mut self) {
        self.ended = true;
        if !self.stderr_line.is_empty() {
            self.stderr_line();
        }
    }
}

/// Sends what the application wrote, a message of up to [`STDIN_MESSAGE_MAX`] bytes at a time,
/// until the application shuts down or the socket fails.
async fn write_loop<S>(mut sink: S, shared: Arc<Mutex<Shared>>, close_stdin: bool)
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    loop {
        let next = std::future::poll_fn(|cx| {
            let mut s = lock(&shared);
            if !s.pending.is_empty() {
                let n = s.pending.len().min(STDIN_MESSAGE_MAX);
                let chunk = s.pending.split_to(n);
                s.wake_app();
                Poll::Ready(Some(stdin_message(&chunk)))
            } else if s.closing {
                Poll::Ready(None)
            } else {
                s.writer_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let sent = match next {
            Some(message) => sink.send(message).await,
            None => {
                let closed = if close_stdin {
                    sink.send(Message::Binary(Bytes::from_static(&[
                        CHANNEL_CLOSE,
                        CHANNEL_STDIN,
                    ])))
                    .await
                } else {
                    sink.flush().await
                };
                let mut s = lock(&shared);
                if let Err(e) = closed {
                    s.write_error = Some(format!("exec stream: {e}"));
                }
                s.done = true;
                s.wake_app();
                return;
            }
        };
        if let Err(e) = sent {
            let mut s = lock(&shared);
            s.write_error = Some(format!("exec stream: {e}"));
            s.done = true;
            s.wake_app();
            return;
        }
    }
}

/// One stdin message: the channel byte, then the data.
fn stdin_message(data: &[u8]) -> Message {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(CHANNEL_STDIN);
    message.extend_from_slice(data);
    Message::Binary(message.into())
}

impl Drop for ExecStream {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

impl AsyncRead for ExecStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.stdout.is_empty() {
                let n = self.stdout.len().min(buf.remaining());
                let chunk = self.stdout.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                return match lock(&self.shared).failure.clone() {
                    Some(message) => Poll::Ready(Err(io::Error::other(message))),
                    None => Poll::Ready(Ok(())),
                };
            }
            match self.incoming.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) | Poll::Ready(Some(Ok(Message::Close(_)))) => self.end(),
                Poll::Ready(Some(Err(e))) => {
                    self.end();
                    if lock(&self.shared).failure.is_none() {
                        return Poll::Ready(Err(io::Error::other(format!("exec stream: {e}"))));
                    }
                }
                Poll::Ready(Some(Ok(Message::Binary(mut data)))) if !data.is_empty() => {
                    let channel = data.split_to(1)[0];
                    match channel {
                        CHANNEL_STDOUT => self.stdout = data,
                        CHANNEL_STDERR => self.stderr_bytes(&data),
                        CHANNEL_STATUS => self.status(&data),
                        _ => {}
                    }
                }
                Poll::Ready(Some(Ok(_))) => {}
            }
        }
    }
}

impl AsyncWrite for ExecStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut s = lock(&self.shared);
        if let Some(e) = s.broken() {
            return Poll::Ready(Err(e));
        }
        if s.closing || s.done {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "exec stream: stdin is shut down",
            )));
        }
        let room = STDIN_BUFFER_MAX.saturating_sub(s.pending.len());
        if room == 0 {
            s.app_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut written = 0;
        for buf in bufs {
            let n = buf.len().min(room - written);
            s.pending.extend_from_slice(&buf[..n]);
            written += n;
            if written == room {
                break;
            }
        }
        if written > 0 {
            s.wake_writer();
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Written bytes are the writer task's to send, as a socket's send buffer is the kernel's:
    /// nothing more to wait for unless the stream has failed.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.shared).broken() {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = lock(&self.shared);
        s.closing = true;
        if s.done {
            return match s.broken() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Ready(Ok(())),
            };
        }
        s.wake_writer();
        s.app_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Retries `connect` with exponential backoff (`initial`, doubling) while it fails, at most
/// `attempts` times; returns the last error. Use it around "exec + protocol handshake", so a pod
/// whose BuildKit is not serving yet is retried, as buildx does since v0.31.
pub async fn with_retry<T, E, F, Fut>(attempts: u32, initial: Duration, connect: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    with_retry_while(attempts, initial, |_| true, connect).await
}

/// [`with_retry`], but an error for which `retry` says no is returned at once (a refusal
/// that waiting cannot change, such as a 403 Forbidden).
pub async fn with_retry_while<T, E, F, Fut>(
    attempts: u32,
    initial: Duration,
    retry: impl Fn(&E) -> bool,
    mut connect: F,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = initial;
    let mut attempt = 1;
    loop {
        match connect(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= attempts || !retry(&e) => return Err(e),
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;
