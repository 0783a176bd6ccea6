//! The exec stream's framing, against an in-memory WebSocket peer playing the kubelet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::*;

/// An exec stream and the server end of its WebSocket, joined by a pipe of `capacity` bytes.
async fn pair(
    capacity: usize,
    close_stdin: bool,
) -> (
    ExecStream,
    WebSocketStream<DuplexStream>,
    Arc<Mutex<Vec<String>>>,
) {
    let (client, server) = tokio::io::duplex(capacity);
    let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let stream = ExecStream::over(
        client,
        close_stdin,
        Arc::new(move |line: &str| sink.lock().unwrap().push(line.to_owned())),
    );
    (stream, server, lines)
}

fn binary(channel: u8, data: &[u8]) -> Message {
    let mut m = vec![channel];
    m.extend_from_slice(data);
    Message::Binary(m.into())
}

/// The regression this pins: stdin must not travel in kube-client's 1–4 KiB messages. Under
/// back-pressure, the 16 KiB writes-and-flushes gRPC makes are joined into messages of
/// [`STDIN_MESSAGE_MAX`] bytes, each starting with the stdin channel byte.
#[tokio::test]
async fn stdin_travels_in_large_messages_under_back_pressure() {
    let (mut stream, mut server, _) = pair(64 << 10, false).await;
    let total = 4 << 20;
    let data: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
    let reader = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut sizes = Vec::new();
        let mut received = Vec::new();
        while received.len() < total {
            match server.next().await {
                Some(Ok(Message::Binary(m))) => {
                    assert_eq!(
                        m[0], CHANNEL_STDIN,
                        "every stdin message starts with channel 0"
                    );
                    sizes.push(m.len() - 1);
                    received.extend_from_slice(&m[1..]);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        (sizes, received)
    });
    for chunk in data.chunks(16 << 10) {
        stream.write_all(chunk).await.unwrap();
        stream.flush().await.unwrap();
    }
    let (sizes, received) = reader.await.unwrap();
    assert!(received == data, "stdin bytes arrive whole and in order");
    assert_eq!(sizes.iter().max(), Some(&STDIN_MESSAGE_MAX), "{sizes:?}");
    assert!(
        sizes.len() <= total / STDIN_MESSAGE_MAX + 4,
        "{} messages for {total} bytes: {sizes:?}",
        sizes.len()
    );
}

/// Coalescing must not delay a lone request: a small write goes out without more writes.
#[tokio::test]
async fn a_lone_small_write_goes_out_at_once() {
    let (mut stream, mut server, _) = pair(64 << 10, false).await;
    stream.write_all(b"PRI * HTTP/2.0").await.unwrap();
    stream.flush().await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), server.next())
        .await
        .expect("the message was sent without more writes")
        .unwrap()
        .unwrap();
    assert_eq!(message, binary(CHANNEL_STDIN, b"PRI * HTTP/2.0"));
}

#[tokio::test]
async fn stdout_stderr_lines_and_a_failure_status_are_told_apart() {
    let (mut stream, mut server, lines) = pair(64 << 10, false).await;
    for m in [
        binary(CHANNEL_STDOUT, b"hello "),
        binary(CHANNEL_STDERR, b"line one\nline "),
        binary(CHANNEL_STDOUT, b"world"),
        binary(CHANNEL_STDERR, b"two\r\nunfinished"),
        binary(
            CHANNEL_STATUS,
            br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit code 1","reason":"NonZeroExitCode"}"#,
        ),
    ] {
        server.send(m).await.unwrap();
    }
    server.close(None).await.unwrap();
    let mut out = vec![0; 64];
    let mut got = Vec::new();
    let err = loop {
        match stream.read(&mut out).await {
            Ok(0) => panic!("a failed command must not read as a clean end"),
            Ok(n) => got.extend_from_slice(&out[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"hello world");
    assert!(err.to_string().contains("non-zero exit code"), "{err}");
    assert_eq!(
        *lines.lock().unwrap(),
        ["line one", "line two", "unfinished"]
    );
    let write = stream.write_all(b"more").await.unwrap_err();
    assert_eq!(write.kind(), std::io::ErrorKind::BrokenPipe);
    assert!(write.to_string().contains("non-zero exit code"), "{write}");
}

#[tokio::test]
async fn a_success_status_then_close_reads_as_end_of_file() {
    let (mut stream, mut server, _) = pair(64 << 10, false).await;
    server.send(binary(CHANNEL_STDOUT, b"done")).await.unwrap();
    server
        .send(binary(
            CHANNEL_STATUS,
            br#"{"metadata":{},"status":"Success"}"#,
        ))
        .await
        .unwrap();
    server.close(None).await.unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"done");
}

#[tokio::test]
async fn shutdown_sends_what_is_buffered_then_closes_stdin_on_v5() {
    for close_stdin in [true, false] {
        let (mut stream, mut server, _) = pair(64 << 10, close_stdin).await;
        stream.write_all(b"last bytes").await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(
            server.next().await.unwrap().unwrap(),
            binary(CHANNEL_STDIN, b"last bytes")
        );
        if close_stdin {
            assert_eq!(
                server.next().await.unwrap().unwrap(),
                Message::Binary(vec![CHANNEL_CLOSE, CHANNEL_STDIN].into())
            );
        }
        assert!(stream.write_all(b"late").await.is_err(), "stdin is shut");
        drop(stream);
        let rest = tokio::time::timeout(Duration::from_secs(5), server.next())
            .await
            .expect("dropping the stream ends the session");
        assert!(
            matches!(rest, None | Some(Err(_))),
            "nothing more after the shutdown: {rest:?}"
        );
    }
}

#[test]
fn exec_request_is_a_plain_stdio_stream_to_the_container() {
    let params = attach_params("buildkitd");
    assert_eq!(params.container.as_deref(), Some("buildkitd"));
    assert!(params.stdin && params.stdout && params.stderr);
    assert!(!params.tty, "a TTY would mangle the gRPC bytes");
}
