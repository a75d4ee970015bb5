//! The client's side of the control socket: one request, one answer.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{IO_TIMEOUT, Request, Response};

/// Why a client could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket.
    #[error("callguard is not running (no daemon answers on {0})")]
    NotRunning(PathBuf),
    /// Talking to it failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// Socket.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// It did not answer in time.
    #[error("the daemon did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer is not a response.
    #[error("unexpected answer from the daemon: {0}")]
    BadAnswer(String),
}

/// Sends one request and reads its answer.
pub async fn request(path: &Path, req: &Request) -> Result<Response, ClientError> {
    let io = |source: io::Error| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NotRunning(path.to_path_buf()));
        }
        Err(e) => return Err(io(e)),
    };
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let mut text = serde_json::to_string(req).map_err(|e| io(io::Error::other(e)))?;
        text.push('\n');
        write.write_all(text.as_bytes()).await.map_err(io)?;
        let mut line = String::new();
        BufReader::new(read.take(16 * 1024 * 1024))
            .read_line(&mut line)
            .await
            .map_err(io)?;
        serde_json::from_str::<Response>(&line).map_err(|e| ClientError::BadAnswer(e.to_string()))
    };
    // The status probe of the notification server may take a few seconds on a busy desktop.
    let limit = IO_TIMEOUT * 2;
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| ClientError::Timeout(limit))?
}
