//! Tiny HTTP servers for tests: an exporter whose gauges the test sets, for a real Prometheus
//! to scrape, and a scripted server that answers badly, for the failure cases.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a [`Scripted`] server answers every request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This status and body.
    Status(u16, String),
    /// Accept the connection, read the request, never answer.
    Hang,
}

type Respond = Arc<dyn Fn(&str) -> Option<(u16, String)> + Send + Sync>;

/// A background HTTP/1.0 server on a free loopback port; stops when dropped.
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

impl Server {
    fn start(respond: Respond) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        std::thread::spawn(move || {
            let mut hung = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                        if let Some(s) = serve(stream, &respond) {
                            hung.push(s);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self {
            addr,
            stop,
            requests,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers one request; returns the stream when told to hang, so it stays open.
fn serve(mut stream: TcpStream, respond: &Respond) -> Option<TcpStream> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 8192];
    let n = stream.read(&mut buf).unwrap_or(0);
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let Some((status, body)) = respond(&path) else {
        return Some(stream);
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if body.starts_with('{') {
            "application/json"
        } else {
            "text/plain; version=0.0.4"
        },
        body.len()
    );
    None
}

/// A Prometheus exporter serving gauges the test sets.
#[derive(Debug)]
pub struct Exporter {
    server: Server,
    gauges: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl Exporter {
    /// Starts serving `/metrics` on a free loopback port.
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn start() -> std::io::Result<Self> {
        let gauges: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
        let shared = gauges.clone();
        let server = Server::start(Arc::new(move |_path: &str| {
            let mut body = String::new();
            // A poisoned lock only means another test thread panicked; serve what is there.
            let gauges = shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (series, v) in gauges.iter() {
                let _ = writeln!(body, "{series} {}", prom_float(*v));
            }
            Some((200, body))
        }))?;
        Ok(Self { server, gauges })
    }

    /// `host:port`, for a scrape config.
    #[must_use]
    pub fn target(&self) -> String {
        self.server.addr.to_string()
    }

    /// Sets a gauge; `series` is a name with optional labels: `load{tenant="acme"}`.
    ///
    /// # Panics
    /// When another thread panicked while holding the gauges.
    pub fn set(&self, series: &str, value: f64) {
        self.gauges
            .lock()
            .expect("gauges")
            .insert(series.to_owned(), value);
    }

    /// Removes a gauge.
    ///
    /// # Panics
    /// When another thread panicked while holding the gauges.
    pub fn remove(&self, series: &str) {
        self.gauges.lock().expect("gauges").remove(series);
    }
}

fn prom_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}

/// A server that answers every request the same scripted way.
#[derive(Debug)]
pub struct Scripted {
    server: Server,
}

impl Scripted {
    /// Starts answering `answer` to every request.
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn start(answer: Answer) -> std::io::Result<Self> {
        let server = Server::start(Arc::new(move |_path: &str| match &answer {
            Answer::Status(code, body) => Some((*code, body.clone())),
            Answer::Hang => None,
        }))?;
        Ok(Self { server })
    }

    /// `http://host:port`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Requests received so far (a hanging one counts from its arrival).
    #[must_use]
    pub fn requests(&self) -> usize {
        self.server.requests.load(Ordering::Relaxed)
    }
}
