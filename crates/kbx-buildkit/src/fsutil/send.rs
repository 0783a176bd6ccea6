//! fsutil's sender: STAT packets for the filtered tree, DATA for each requested file, and the
//! FIN handshake. Memory stays flat: the walk and the file reads run on blocking threads and
//! feed one bounded channel.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::wire::{Packet, PacketType};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::walk::{Filter, walk};
use crate::Error;

/// Size of one DATA packet: within fsutil's 32 KiB – 1 MiB range, far below the 4 MiB message
/// limit of old daemons.
pub(crate) const CHUNK: usize = 256 * 1024;

/// How many packets may wait to be sent.
const QUEUE: usize = 16;

type Out = mpsc::Sender<Result<Packet, Status>>;

/// What the daemon may request: the absolute path of each regular file, by STAT index.
#[derive(Default)]
struct Table {
    files: Vec<Option<PathBuf>>,
    requested: Vec<bool>,
}

/// Starts sending `root` on one `DiffCopy` call and returns the outgoing packet stream.
pub(crate) fn start(
    root: PathBuf,
    filter: Filter,
    inbound: Streaming<Packet>,
) -> mpsc::Receiver<Result<Packet, Status>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(root, filter, inbound, tx));
    rx
}

async fn run(root: PathBuf, filter: Filter, mut inbound: Streaming<Packet>, out: Out) {
    let table = Arc::new(Mutex::new(Table::default()));

    // The walk: STATs in order, then the empty end-of-stats STAT.
    let walk_out = out.clone();
    let walk_table = Arc::clone(&table);
    let walker = tokio::task::spawn_blocking(move || {
        let result = walk(&root, &filter, &mut |entry| {
            {
                let mut t = walk_table.lock().map_err(|_| poisoned())?;
                t.files.push(entry.file);
                t.requested.push(false);
            }
            let p = Packet {
                r#type: PacketType::PacketStat as i32,
                stat: Some(entry.stat),
                ..Packet::default()
            };
            walk_out
                .blocking_send(Ok(p))
                .map_err(|_| Error::Session("receiver went away".to_owned()))
        });
        match result {
            Ok(()) => {
                let _ = walk_out.blocking_send(Ok(Packet::default()));
            }
            Err(e) => {
                let _ = walk_out.blocking_send(Ok(err_packet(&e.to_string())));
            }
        }
    });

    // The file reader: one blocking thread, files in request order.
    let (req_tx, mut req_rx) = mpsc::unbounded_channel::<(u32, PathBuf)>();
    let data_out = out.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; CHUNK];
        while let Some((id, path)) = req_rx.blocking_recv() {
            if let Err(e) = send_file(id, &path, &mut buf, &data_out) {
                let _ = data_out.blocking_send(Ok(err_packet(&e.to_string())));
                return;
            }
        }
    });

    let result = loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(status) => break Err(status),
        };
        match PacketType::try_from(msg.r#type) {
            Ok(PacketType::PacketReq) => {
                let path = {
                    let Ok(mut t) = table.lock() else {
                        break Err(Status::internal("file table poisoned"));
                    };
                    let idx = msg.id as usize;
                    match t.files.get(idx).cloned().flatten() {
                        Some(p) if !t.requested[idx] => {
                            t.requested[idx] = true;
                            Some(p)
                        }
                        _ => None,
                    }
                };
                match path {
                    Some(p) => {
                        if req_tx.send((msg.id, p)).is_err() {
                            break Err(Status::internal("file reader stopped"));
                        }
                    }
                    None => {
                        let text = format!("invalid file request {}", msg.id);
                        let _ = out.send(Ok(err_packet(&text))).await;
                        break Err(Status::invalid_argument(text));
                    }
                }
            }
            Ok(PacketType::PacketFin) => {
                // Every requested file has been received; answer FIN and finish.
                drop(req_tx);
                let _ = reader.await;
                let _ = out
                    .send(Ok(Packet {
                        r#type: PacketType::PacketFin as i32,
                        ..Packet::default()
                    }))
                    .await;
                break Ok(());
            }
            Ok(PacketType::PacketErr) => {
                break Err(Status::aborted(format!(
                    "error from receiver: {}",
                    String::from_utf8_lossy(&msg.data)
                )));
            }
            _ => {
                break Err(Status::invalid_argument(format!(
                    "unexpected packet type {} from receiver",
                    msg.r#type
                )));
            }
        }
    };
    walker.abort();
    if let Err(status) = result {
        let _ = out.send(Err(status)).await;
    }
}

fn send_file(id: u32, path: &PathBuf, buf: &mut [u8], out: &Out) -> crate::Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let gone = || Error::Session("receiver went away".to_owned());
    loop {
        let n = f.read(buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        let p = Packet {
            r#type: PacketType::PacketData as i32,
            id,
            data: buf[..n].to_vec(),
            ..Packet::default()
        };
        out.blocking_send(Ok(p)).map_err(|_| gone())?;
    }
    out.blocking_send(Ok(Packet {
        r#type: PacketType::PacketData as i32,
        id,
        ..Packet::default()
    }))
    .map_err(|_| gone())
}

pub(crate) fn err_packet(text: &str) -> Packet {
    Packet {
        r#type: PacketType::PacketErr as i32,
        data: text.as_bytes().to_vec(),
        ..Packet::default()
    }
}

fn poisoned() -> Error {
    Error::Session("file table poisoned".to_owned())
}
