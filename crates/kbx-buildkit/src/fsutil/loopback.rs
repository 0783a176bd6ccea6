//! The context sender measured against an in-process fsutil receiver: the whole session stack
//! (FileSync service, HTTP/2, gRPC framing, packets) minus the daemon.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bollard_buildkit_proto::fsutil::types::{Packet, packet::PacketType};
use bollard_buildkit_proto::moby::filesync::packet::file_sync_client::FileSyncClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;
use tonic::metadata::MetadataValue;

use super::mode::is_regular;
use crate::session::{MAX_MESSAGE, SessionConfig, services};
use crate::{Error, Result};

/// What a loopback transfer moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// STAT packets received (every entry).
    pub entries: u64,
    /// Regular files whose data was received.
    pub files: u64,
    /// Bytes of file data received.
    pub bytes: u64,
}

/// Sends `dir` through this crate's FileSync service, over HTTP/2 on an in-memory pipe, to an
/// fsutil receiver in the same process that requests every file and discards the data. Used by
/// the upload benchmark to separate the client's cost from the daemon's.
///
/// # Errors
/// Protocol violations or IO errors, as [`Error::Session`].
pub async fn loopback_transfer(dir: &Path) -> Result<Transfer> {
    let cfg = SessionConfig {
        dirs: HashMap::from([("context".to_owned(), dir.to_path_buf())]),
        ..SessionConfig::default()
    };
    let (done, _) = mpsc::unbounded_channel();
    let (_, router) = services(&cfg, done);
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move {
        let incoming = tokio_stream::once(Ok::<_, std::io::Error>(server_io));
        let _ = router.serve_with_incoming(incoming).await;
    });
    let slot = Arc::new(std::sync::Mutex::new(Some(client_io)));
    let channel = crate::transport::connect_with("loopback", move || {
        let io = slot.lock().ok().and_then(|mut s| s.take());
        async move { io.ok_or_else(|| std::io::Error::other("loopback pipe already used")) }
    })
    .await?;
    let mut client = FileSyncClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::channel::<Packet>(64);
    let mut req = Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("dir-name", MetadataValue::from_static("context"));
    let proto = |e: tonic::Status| Error::Session(format!("loopback: {e}"));
    let mut inbound = client.diff_copy(req).await.map_err(proto)?.into_inner();
    let mut t = Transfer {
        entries: 0,
        files: 0,
        bytes: 0,
    };
    let mut wanted: Vec<u32> = Vec::new();
    let mut remaining = 0usize;
    let mut fin_sent = false;
    while let Some(p) = inbound.message().await.map_err(proto)? {
        match PacketType::try_from(p.r#type) {
            Ok(PacketType::PacketStat) => match p.stat {
                Some(st) => {
                    if is_regular(st.mode) {
                        wanted.push(t.entries as u32);
                    }
                    t.entries += 1;
                }
                None => {
                    remaining = wanted.len();
                    let ids = std::mem::take(&mut wanted);
                    let tx2 = tx.clone();
                    tokio::spawn(async move {
                        for id in ids {
                            let req = Packet {
                                r#type: PacketType::PacketReq as i32,
                                id,
                                ..Packet::default()
                            };
                            if tx2.send(req).await.is_err() {
                                return;
                            }
                        }
                    });
                    if remaining == 0 {
                        fin_sent = send_fin(&tx).await;
                    }
                }
            },
            Ok(PacketType::PacketData) if p.data.is_empty() => {
                t.files += 1;
                remaining = remaining.saturating_sub(1);
                if remaining == 0 {
                    fin_sent = send_fin(&tx).await;
                }
            }
            Ok(PacketType::PacketData) => t.bytes += p.data.len() as u64,
            Ok(PacketType::PacketFin) if fin_sent => break,
            _ => {
                return Err(Error::Session(format!(
                    "loopback: unexpected packet {} ({})",
                    p.r#type,
                    String::from_utf8_lossy(&p.data)
                )));
            }
        }
    }
    drop(tx);
    server.abort();
    if !fin_sent {
        return Err(Error::Session("loopback: no FIN handshake".to_owned()));
    }
    Ok(t)
}

async fn send_fin(tx: &mpsc::Sender<Packet>) -> bool {
    tx.send(Packet {
        r#type: PacketType::PacketFin as i32,
        ..Packet::default()
    })
    .await
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_moves_every_byte_and_finishes_with_fin() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("a/b")).expect("mkdir");
        std::fs::write(d.path().join("a/b/big"), vec![1u8; 1_000_003]).expect("write");
        std::fs::write(d.path().join("empty"), b"").expect("write");
        std::fs::write(d.path().join("x"), b"xyz").expect("write");
        std::os::unix::fs::symlink("x", d.path().join("l")).expect("symlink");
        let t = loopback_transfer(d.path()).await.expect("transfer");
        assert_eq!(
            t,
            Transfer {
                entries: 6,
                files: 3,
                bytes: 1_000_006
            }
        );
    }
}
