//! `kbx dial-stdio`: standard input and output become a byte stream to one node's BuildKit,
//! so any BuildKit client can use a kbx builder, e.g. `buildctl --addr unix:///tmp/bk.sock`
//! after `socat UNIX-LISTEN:/tmp/bk.sock,fork EXEC:'kbx dial-stdio --builder kube'`.
//!
//! As buildx: the node is the first (or the first listing `--platform`), the pod is chosen with
//! the working directory as the sticky key, and a builder that does not run is booted first.

use std::time::Duration;

use kbx_store::Store;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

use crate::builders;
use crate::cli::DialStdioArgs;
use crate::driver;
use crate::error::Error;
use crate::progress;

/// Runs `kbx dial-stdio` on the builder `builder` (`--builder`), else the current one.
pub(crate) async fn run(args: DialStdioArgs, builder: Option<String>) -> Result<(), Error> {
    let store = Store::open_default()?;
    let ng = {
        let txn = store.txn()?;
        builders::find_builder(&txn, builder.as_deref())?
    };
    let nodes = ng.nodes();
    let node = match &args.platform {
        None => nodes.first(),
        Some(p) => {
            let wanted = crate::build_options::platforms(std::slice::from_ref(p))?;
            nodes.iter().find(|n| {
                n.platforms
                    .iter()
                    .flatten()
                    .any(|have| wanted.contains(have))
            })
        }
    }
    .ok_or_else(|| match &args.platform {
        Some(p) => Error::msg(format!("no node of {} lists platform {p}", ng.name)),
        None => Error::msg(format!("builder {} has no nodes", ng.name)),
    })?;
    let key = std::env::current_dir().map_err(|source| Error::Read {
        path: ".".to_owned(),
        source,
    })?;
    let mode = progress::resolve_for_stderr(args.progress)?;
    let stream = driver::raw_stream(&ng, node, key.as_os_str().as_encoded_bytes(), mode).await?;
    proxy(tokio::io::stdin(), tokio::io::stdout(), stream)
        .await
        .map_err(|source| Error::Io {
            what: format!("proxying to {}", node.name),
            source,
        })
}

/// How long the daemon may go on answering after standard input ended.
const LINGER: Duration = Duration::from_secs(2);

/// Copies `input` to `stream` and `stream` to `output` until the stream ends, or until
/// [`LINGER`] after `input` ends (its end is passed on as a shutdown of the stream's writing
/// half).
///
/// # Deviation
/// Buildx waits for the daemon's side to end. An exec stream to a Kubernetes API server that
/// speaks only WebSocket `v4.channel.k8s.io` cannot pass on the end of standard input, so the
/// pod's `buildctl dial-stdio` would never end and neither would kbx; kbx stops [`LINGER`]
/// after its input ends.
async fn proxy<I, O, S>(mut input: I, mut output: O, stream: S) -> std::io::Result<()>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut from, mut to) = tokio::io::split(stream);
    let up = async {
        tokio::io::copy(&mut input, &mut to).await?;
        to.shutdown().await
    };
    let down = async {
        tokio::io::copy(&mut from, &mut output).await?;
        output.flush().await
    };
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut down => r,
        r = &mut up => {
            r?;
            tokio::time::timeout(LINGER, down).await.unwrap_or(Ok(()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn bytes_flow_both_ways_and_the_end_of_input_is_passed_on() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let daemon = tokio::spawn(async move {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.unwrap();
            theirs.write_all(b"pong").await.unwrap();
            got
        });
        let mut out = Vec::new();
        proxy(&b"ping"[..], &mut out, ours).await.unwrap();
        assert_eq!(daemon.await.unwrap(), b"ping");
        assert_eq!(out, b"pong");
    }

    #[tokio::test(start_paused = true)]
    async fn a_daemon_that_never_ends_is_left_after_the_linger_time() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut out = Vec::new();
        let started = tokio::time::Instant::now();
        proxy(&b""[..], &mut out, ours).await.unwrap();
        assert!(started.elapsed() >= LINGER);
    }
}
