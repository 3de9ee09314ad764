//! A TCP proxy between a client and a real server that can lose a reply or hold requests:
//! the faults a real network has, made to happen at a chosen moment.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// A proxy on a free loopback port forwarding every connection to `127.0.0.1:<upstream>`.
///
/// - [`lose_next_reply`](Self::lose_next_reply): the next bytes the server sends are thrown
///   away and that connection is reset, so the request reached the server but its reply never
///   reaches the client (what a link that drops after sending does).
/// - [`hold`](Self::hold): requests are read from clients but not passed on until
///   [`pass`](Self::pass), so a call is in flight for as long as a test needs.
///
/// Its threads end when their connections close; the listener's when the proxy is dropped.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    lose_reply: AtomicBool,
    lost: AtomicU64,
    requests: AtomicU64,
    held: Mutex<bool>,
    released: Condvar,
    stop: AtomicBool,
}

impl State {
    fn wait_while_held(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while *held {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Proxy {
    /// Starts the proxy in front of the server on loopback port `upstream`.
    ///
    /// # Errors
    /// Binding the listener.
    pub fn start(upstream: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                link(client, server, Arc::clone(&shared));
            }
        });
        Ok(Self { port, state })
    }

    /// The proxy's port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/0`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The next reply (the next bytes from the server on any connection) is lost, and its
    /// connection reset.
    pub fn lose_next_reply(&self) {
        self.state.lose_reply.store(true, Ordering::SeqCst);
    }

    /// How many replies were lost so far.
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.state.lost.load(Ordering::SeqCst)
    }

    /// How many reads of client bytes the proxy has made (each holds one request or more).
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Waits until more than `seen` reads of client bytes were made, for at most `limit`.
    /// Returns whether they were.
    #[must_use]
    pub fn wait_requests_above(&self, seen: u64, limit: Duration) -> bool {
        let start = Instant::now();
        while self.requests() <= seen {
            if start.elapsed() > limit {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Requests are read but not passed on until [`pass`](Self::pass).
    pub fn hold(&self) {
        *self
            .state
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
    }

    /// Passes on what was held, and everything after.
    pub fn pass(&self) {
        *self
            .state
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = false;
        self.state.released.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        self.pass();
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies both ways between `client` and `server` on two threads.
fn link(client: TcpStream, server: TcpStream, state: Arc<State>) {
    let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upstream = Arc::clone(&state);
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            upstream.requests.fetch_add(1, Ordering::SeqCst);
            upstream.wait_while_held();
            if server_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server_out.shutdown(Shutdown::Both);
        let _ = client_in.shutdown(Shutdown::Both);
    });
    let (mut server_in, mut client_out) = (server, client);
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if state.lose_reply.swap(false, Ordering::SeqCst) {
                state.lost.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if client_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client_out.shutdown(Shutdown::Both);
        let _ = server_in.shutdown(Shutdown::Both);
    });
}
