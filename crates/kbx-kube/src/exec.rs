//! The BuildKit connection: `buildctl dial-stdio` in a pod, over the exec API.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncWrite, BufReader, ReadBuf, ReadHalf, SimplexStream,
    WriteHalf,
};

use crate::Error;

/// The command run in the pod.
pub const DIAL_STDIO: [&str; 2] = ["buildctl", "dial-stdio"];

/// A byte stream to BuildKit in a pod: writes go to `buildctl dial-stdio`'s stdin, reads come
/// from its stdout. Its stderr goes to the `stderr` callback, one line at a time.
///
/// When the exec session ends, reads return end-of-file (or the failure the API server
/// reported) and writes fail with `BrokenPipe`; dropping the stream ends the session.
pub struct ExecStream {
    stdout: ReadHalf<SimplexStream>,
    stdin: WriteHalf<SimplexStream>,
    failure: Arc<Mutex<Option<String>>>,
    process: kube::api::AttachedProcess,
}

impl std::fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStream").finish_non_exhaustive()
    }
}

/// The size of the pipes between kbx and kube-client's exec connection (stdin and stdout).
///
/// kube-client's default is 1 KiB: its message loop reads stdin in chunks of up to
/// [`KUBE_STDIN_CHUNK`] bytes, one WebSocket message each, so a 1 KiB pipe cuts every message to
/// 1 KiB and slows the build context down. 1 MiB lets every message be a full
/// chunk and keeps data in flight in both directions.
pub(crate) const EXEC_PIPE_SIZE: usize = 1 << 20;

/// The most stdin bytes kube-client puts in one WebSocket message: `tokio_util`'s
/// `ReaderStream` default capacity, which its exec message loop uses.
pub(crate) const KUBE_STDIN_CHUNK: usize = 4096;

const _: () = assert!(
    EXEC_PIPE_SIZE >= 1 << 20,
    "the exec pipes must hold at least 1 MiB"
);
const _: () = assert!(
    EXEC_PIPE_SIZE.is_multiple_of(KUBE_STDIN_CHUNK),
    "the exec pipes must hold whole WebSocket messages"
);

/// The exec request for `buildctl dial-stdio` in `container`: stdin, stdout and stderr, no TTY,
/// and [`EXEC_PIPE_SIZE`] pipes for stdin and stdout (stderr keeps kube-client's 1 KiB; it is
/// read line by line and carries only BuildKit's messages).
pub(crate) fn attach_params(container: &str) -> AttachParams {
    AttachParams::default()
        .container(container)
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .tty(false)
        .max_stdin_buf_size(EXEC_PIPE_SIZE)
        .max_stdout_buf_size(EXEC_PIPE_SIZE)
}

impl ExecStream {
    /// Starts `buildctl dial-stdio` in the first container (`buildkitd`) of `pod`.
    pub async fn dial(
        pods: &Api<Pod>,
        pod: &str,
        container: &str,
        stderr: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Self, Error> {
        let params = attach_params(container);
        let mut process = pods
            .exec(pod, DIAL_STDIO, &params)
            .await
            .map_err(|source| Error::Exec {
                pod: pod.to_owned(),
                source,
            })?;
        let failure = Arc::new(Mutex::new(None));
        if let Some(err) = process.stderr() {
            let sink = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    sink(&line);
                }
            });
        }
        if let Some(status) = process.take_status() {
            let failure = failure.clone();
            tokio::spawn(async move {
                if let Some(s) = status.await
                    && s.status.as_deref() == Some("Failure")
                    && let Ok(mut f) = failure.lock()
                {
                    *f = Some(s.message.unwrap_or_else(|| "exec failed".to_owned()));
                }
            });
        }
        let (Some(stdout), Some(stdin)) = (process.stdout(), process.stdin()) else {
            return Err(Error::Exec {
                pod: pod.to_owned(),
                source: kube::Error::Service("exec session without stdin/stdout".into()),
            });
        };
        Ok(Self {
            stdout,
            stdin,
            failure,
            process,
        })
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

impl Drop for ExecStream {
    fn drop(&mut self) {
        self.process.abort();
    }
}

impl AsyncRead for ExecStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stdout).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => match self.failure() {
                Some(message) => Poll::Ready(Err(io::Error::other(message))),
                None => Poll::Ready(Ok(())),
            },
            other => other,
        }
    }
}

impl AsyncWrite for ExecStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(message) = self.failure() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, message)));
        }
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

/// Retries `connect` with exponential backoff (`initial`, doubling) while it fails, at most
/// `attempts` times; returns the last error. Use it around "exec + protocol handshake", so a pod
/// whose BuildKit is not serving yet is retried, as buildx does since v0.31.
pub async fn with_retry<T, E, F, Fut>(
    attempts: u32,
    initial: Duration,
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
            Err(e) if attempt >= attempts => return Err(e),
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pipes must not fall back to kube-client's 1 KiB: pinned here so that a refactor of
    /// the exec request cannot drop them silently.
    #[test]
    fn exec_pipes_hold_a_mebibyte_of_whole_messages() {
        let params = attach_params("buildkitd");
        assert_eq!(params.max_stdin_buf_size, Some(EXEC_PIPE_SIZE));
        assert_eq!(params.max_stdout_buf_size, Some(EXEC_PIPE_SIZE));
        assert_eq!(params.max_stderr_buf_size, None);
        for size in [params.max_stdin_buf_size, params.max_stdout_buf_size] {
            let size = size.unwrap_or_default();
            assert!(size >= 1 << 20, "{size} bytes");
            assert!(size.is_multiple_of(KUBE_STDIN_CHUNK), "{size} bytes");
        }
    }

    #[test]
    fn exec_request_is_a_plain_stdio_stream_to_the_container() {
        let params = attach_params("buildkitd");
        assert_eq!(params.container.as_deref(), Some("buildkitd"));
        assert!(params.stdin && params.stdout && params.stderr);
        assert!(!params.tty, "a TTY would mangle the gRPC bytes");
    }
}
