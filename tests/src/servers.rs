//! Real servers the relay's tests start and stop themselves: a Postgres cluster of their own
//! (to restart it mid-run), nats-server with JetStream, and a webhook receiver that records every
//! request and answers as each path is told to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", program]);
    c
}

fn pg_bin() -> PathBuf {
    PathBuf::from(
        std::env::var("STEWARD_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
    )
}

/// A Postgres cluster of one test's own, run by the `postgres` OS user on a private port and
/// socket directory, with steward preloaded.
pub struct PgCluster {
    pub dir: PathBuf,
    pub port: u16,
}

impl PgCluster {
    pub fn start(name: &str) -> PgCluster {
        let dir = PathBuf::from(format!("/tmp/steward-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Command::new("chown")
            .args(["postgres:postgres", &dir.to_string_lossy()])
            .status()
            .unwrap()
            .success());
        let data = dir.join("data");
        let out = as_postgres(&pg_bin().join("initdb").to_string_lossy())
            .args([
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\n\
             max_connections = 100\nshared_preload_libraries = 'steward'\n",
            dir.display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        let c = PgCluster { dir, port };
        c.pg_ctl(&["start", "-w", "-l", &c.dir.join("log").to_string_lossy()]);
        c
    }

    fn pg_ctl(&self, args: &[&str]) {
        let out = as_postgres(&pg_bin().join("pg_ctl").to_string_lossy())
            .args(["-D", &self.dir.join("data").to_string_lossy()])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops (fast: sessions are cut) and starts again.
    pub fn restart(&self) {
        self.pg_ctl(&[
            "restart",
            "-w",
            "-m",
            "fast",
            "-l",
            &self.dir.join("log").to_string_lossy(),
        ]);
    }

    pub fn conninfo(&self, db: &str, user: &str) -> String {
        format!(
            "host={} port={} dbname={db} user={user}",
            self.dir.display(),
            self.port
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = as_postgres(&pg_bin().join("pg_ctl").to_string_lossy())
            .args([
                "-D",
                &self.dir.join("data").to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nats-server with JetStream (`-js`), its store in a directory of its own that outlives a
/// restart.
pub struct NatsServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start(name: &str) -> NatsServer {
        let dir = std::env::temp_dir().join(format!("steward-nats-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut n = NatsServer {
            port: free_port(),
            dir,
            child: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let bin = std::env::var("STEWARD_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let child = Command::new(bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server (Debian's package; cargo xtask test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM, then waits) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How the receiver answers on a path.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200.
    Ok,
    /// This status for the next `n` requests, then 200; with a `Retry-After` of that many
    /// seconds if given.
    Fail {
        status: u16,
        n: usize,
        retry_after: Option<u64>,
    },
    /// 410 Gone.
    Gone,
    /// Never answers (until the relay gives up on the request).
    Hang,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
    pub status: u16,
}

#[derive(Default)]
struct State {
    answers: HashMap<String, Answer>,
    requests: Vec<Request>,
    /// Requests on a path that finished (answered, or cut off).
    finished: HashMap<String, usize>,
}

/// A webhook receiver on 127.0.0.1: records every request, answers as told.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

struct Finish(Arc<Mutex<State>>, String);
impl Drop for Finish {
    fn drop(&mut self) {
        *self
            .0
            .lock()
            .unwrap()
            .finished
            .entry(self.1.clone())
            .or_default() += 1;
    }
}

impl Receiver {
    /// Starts on `rt`; it runs as long as the runtime does.
    pub fn start(rt: &tokio::runtime::Runtime) -> Receiver {
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
                let s = s.clone();
                async move {
                    let path = uri.path().to_string();
                    let _finish = Finish(s.clone(), path.clone());
                    let answer = {
                        let mut st = s.lock().unwrap();
                        let a = st.answers.get(&path).cloned().unwrap_or(Answer::Ok);
                        let (status, next) = match &a {
                            Answer::Ok => (200, None),
                            Answer::Gone => (410, None),
                            Answer::Hang => (0, None),
                            Answer::Fail {
                                status,
                                n,
                                retry_after,
                            } => {
                                let next = if *n > 1 {
                                    Answer::Fail {
                                        status: *status,
                                        n: n - 1,
                                        retry_after: *retry_after,
                                    }
                                } else {
                                    Answer::Ok
                                };
                                (*status, Some(next))
                            }
                        };
                        if let Some(next) = next {
                            st.answers.insert(path.clone(), next);
                        }
                        st.requests.push(Request {
                            path: path.clone(),
                            headers: headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                                })
                                .collect(),
                            body,
                            at: Instant::now(),
                            status,
                        });
                        a
                    };
                    let mut h = axum::http::HeaderMap::new();
                    let status = match answer {
                        Answer::Ok => 200,
                        Answer::Gone => 410,
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            200
                        }
                        Answer::Fail {
                            status,
                            retry_after,
                            ..
                        } => {
                            if let Some(r) = retry_after {
                                h.insert("retry-after", r.to_string().parse().unwrap());
                            }
                            status
                        }
                    };
                    (axum::http::StatusCode::from_u16(status).unwrap(), h, "")
                }
            },
        );
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn answer(&self, path: &str, a: Answer) {
        self.state
            .lock()
            .unwrap()
            .answers
            .insert(path.to_string(), a);
    }

    /// Every request so far on `path`, in arrival order.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn finished(&self, path: &str) -> usize {
        *self.state.lock().unwrap().finished.get(path).unwrap_or(&0)
    }

    /// Waits until `path` has had `n` requests answered 2xx with distinct webhook-ids, or
    /// `limit` passes; returns how many it has.
    pub fn wait_delivered(&self, path: &str, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.delivered_ids(path).len();
            if got >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The distinct webhook-ids answered 2xx on `path`, in the order first answered.
    pub fn delivered_ids(&self, path: &str) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.requests(path)
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .filter_map(|r| r.headers.get("webhook-id").cloned())
            .filter(|id| seen.insert(id.clone()))
            .collect()
    }
}

/// Checks every request with the `standardwebhooks` package (PyPI), the oracle written
/// independently of steward's signer, with its default timestamp tolerance; and checks that a
/// changed body, id or timestamp fails it. Panics naming the first request that does not verify.
pub fn verify_with_standardwebhooks(secret: &str, requests: &[Request]) {
    let python = std::env::var("STEWARD_PYTHON")
        .expect("STEWARD_PYTHON (a Python with standardwebhooks) is set by cargo xtask test");
    let lines: Vec<String> = requests
        .iter()
        .map(|r| {
            serde_json::json!({
                "secret": secret,
                "body": r.body,
                "headers": {
                    "webhook-id": r.headers.get("webhook-id"),
                    "webhook-timestamp": r.headers.get("webhook-timestamp"),
                    "webhook-signature": r.headers.get("webhook-signature"),
                },
            })
            .to_string()
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/verify_webhooks.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for l in &lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks refused a request: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("verified {}", requests.len())),
        "{said}"
    );
}
