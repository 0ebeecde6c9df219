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
    /// Binds `path` (owner-only: mode 0600 — or 0660 with its group set to
    /// `group`; a missing directory is created 0700, or 0750 for the group). A
    /// stale socket file of a dead director is replaced; a live one is an error
    /// (two directors would fight over it).
    pub fn bind(path: &Path, group: Option<&str>) -> Result<ControlSocket> {
        let gid = group.map(group_id).transpose()?;
        let (dir_mode, sock_mode) = if gid.is_some() {
            (0o750, 0o660)
        } else {
            (0o700, 0o600)
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("control socket directory {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode))
                .with_context(|| format!("control socket directory {}", dir.display()))?;
            std::os::unix::fs::chown(dir, None, gid)
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
        std::os::unix::fs::chown(path, None, gid)
            .with_context(|| format!("control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(sock_mode))
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

/// The gid of group `name` (or a number), from /etc/group.
fn group_id(name: &str) -> Result<u32> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").context("reading /etc/group")?;
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let (n, _, gid) = (f.next()?, f.next()?, f.next()?);
            (n == name).then(|| gid.parse().ok()).flatten()
        })
        .next()
        .with_context(|| format!("control_group {name}: no such group in /etc/group"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xvs-ctl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("xvs.sock")
    }

    #[test]
    fn owner_only_socket_answers_requests_and_goes_away() {
        let path = scratch("owner");
        let sock = ControlSocket::bind(&path, None).expect("bind");
        let meta = std::fs::metadata(&path).expect("socket file");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        // A second director on the same path is refused.
        let again = ControlSocket::bind(&path, None).map(|_| ());
        assert!(
            format!("{again:?}").contains("another director"),
            "{again:?}"
        );
        let client = {
            let path = path.clone();
            std::thread::spawn(move || request(&path, &["ping".into(), "x".into()]))
        };
        let start = std::time::Instant::now();
        while !client.is_finished() && start.elapsed() < Duration::from_secs(5) {
            sock.serve(|words| match words {
                ["ping", arg] => Ok(format!("pong {arg}\n")),
                _ => bail!("unknown"),
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(client.join().unwrap().unwrap(), "pong x\n");
        drop(sock);
        assert!(!path.exists(), "socket file removed on drop");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_group_may_share_the_socket() {
        if !xvs_io::sys::effective_uid_is_root() {
            let reason = "ctl::a_group_may_share_the_socket: chown to another group needs root";
            assert!(
                std::env::var("XVS_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "{reason}, and XVS_REQUIRE_PRIVILEGED=1 forbids skipping"
            );
            eprintln!("SKIP: {reason}");
            return;
        }
        let path = scratch("group");
        let _sock = ControlSocket::bind(&path, Some("65534")).expect("bind with group");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, 65534));
        let err = ControlSocket::bind(&scratch("nogroup"), Some("no-such-group-xvs"))
            .map(|_| ())
            .unwrap_err();
        assert!(format!("{err:#}").contains("no such group"), "{err:#}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
