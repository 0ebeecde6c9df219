//! The local control socket: operators' commands (`xvs list`, `drain`, `weight`,
//! `reload`, `zero` ...) reach the running director over a Unix stream socket
//! that only its owner may use. Layer: binary (control side).
//!
//! Protocol, one request per connection: the client writes one line of
//! space-separated words and shuts its write side; the server answers `ok\n`
//! followed by text, or `error: <reason>\n`, and closes. The server never blocks
//! the control loop: the listener is non-blocking and each accepted connection
//! has a short read timeout (a client that sends nothing costs at most that).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Where the socket is when the configuration does not say.
pub const DEFAULT_SOCKET: &str = "/run/xvs/xvs.sock";
/// Longest request line.
const MAX_REQUEST: u64 = 4096;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// The listening socket of a running director; removed on drop.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path` (owner-only: mode 0600; its directory is created 0700 if
    /// missing). A stale socket file of a dead director is replaced; a live
    /// one is an error (two directors would fight over it).
    pub fn bind(path: &Path) -> Result<ControlSocket> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("control socket directory {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("control socket directory {}", dir.display()))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "control socket {}: another director is listening there",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale control socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("control socket {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("control socket: non-blocking")?;
        Ok(ControlSocket {
            listener,
            path: path.to_owned(),
        })
    }

    /// Serves every request waiting now with `handle(words) -> Ok(text) | Err(reason)`.
    pub fn serve(&self, mut handle: impl FnMut(&[&str]) -> Result<String>) {
        while let Ok((stream, _)) = self.listener.accept() {
            if let Err(e) = serve_one(stream, &mut handle) {
                tracing::debug!(error = %format!("{e:#}"), "control request failed");
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one(
    mut stream: UnixStream,
    handle: &mut impl FnMut(&[&str]) -> Result<String>,
) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let reply = match handle(&words) {
        Ok(text) => format!("ok\n{text}"),
        Err(e) => format!("error: {e:#}\n"),
    };
    stream.write_all(reply.as_bytes())?;
    Ok(())
}

/// Client side: sends `words` to the director at `socket`; its text on `ok`,
/// an error with its reason otherwise.
pub fn request(socket: &Path, words: &[String]) -> Result<String> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "control socket {}: is xvs running (and are you its owner)?",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{}\n", words.join(" ")).as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    match reply.split_once('\n') {
        Some(("ok", text)) => Ok(text.to_owned()),
        Some((status, _)) if status.starts_with("error: ") => {
            bail!("{}", &status["error: ".len()..])
        }
        _ => bail!("unexpected reply from the director: {reply:?}"),
    }
}
