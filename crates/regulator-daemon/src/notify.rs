//! The systemd notification protocol (`Type=notify`): `READY=1` once the daemon serves and
//! its policies run, `RELOADING=1` then `READY=1` around each reload, `STOPPING=1` when the
//! drain starts, and a `STATUS=` line `systemctl status` shows. A datagram to the socket
//! systemd names in `$NOTIFY_SOCKET`; without it (not under systemd) nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// Where notifications go, if anywhere. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Target>,
}

#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    /// A Linux abstract socket (`@name` in `$NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

impl Notifier {
    /// The socket named by `$NOTIFY_SOCKET`, or none.
    #[must_use]
    pub fn from_env() -> Self {
        std::env::var_os("NOTIFY_SOCKET").map_or_else(Self::default, |s| Self::to(&s))
    }

    /// Notifications to the socket `socket` (`@name` for an abstract one).
    #[must_use]
    pub fn to(socket: &std::ffi::OsStr) -> Self {
        use std::os::unix::ffi::OsStrExt as _;
        let bytes = socket.as_bytes();
        let target = match bytes.split_first() {
            None => None,
            Some((b'@', name)) => Some(Target::Abstract(name.to_vec())),
            Some(_) => Some(Target::Path(PathBuf::from(socket))),
        };
        Self { target }
    }

    /// The daemon serves and its policies run.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// A reload starts; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        self.send("RELOADING=1\nSTATUS=reloading");
    }

    /// The drain starts.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining");
    }

    /// Best effort: a notification that cannot be sent is logged, never fatal (systemd then
    /// times the start out by itself, which says more than a daemon that refused to run).
    fn send(&self, message: &str) {
        let Some(target) = &self.target else { return };
        let sent = UnixDatagram::unbound().and_then(|socket| match target {
            Target::Path(path) => socket.send_to(message.as_bytes(), path),
            Target::Abstract(name) => send_abstract(&socket, name, message),
        });
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not notify systemd");
        }
    }
}

/// Sends to a Linux abstract socket (`@name`).
#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &str) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt as _;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message.as_bytes(), &addr)
}

/// Abstract sockets exist only on Linux, and so does systemd.
#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> std::io::Result<usize> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets are Linux only",
    ))
}
