//! A real `redis-server` (the Debian package, or `$REDIS_SERVER`) for a test: on a free loopback
//! port, persisting nothing (`--save "" --appendonly no`), killed when dropped. A test can stop it
//! and start it again on the same port (an outage), or freeze it (a Redis that hangs).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
};

/// Overrides where `redis-server` is looked for (else on `PATH`).
pub const SERVER_VAR: &str = "REDIS_SERVER";

/// How long redis-server gets to answer. It does within milliseconds; the margin is for a machine
/// busy compiling the rest of the workspace.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How many free ports [`Redis::start`] tries, when another process takes the one it picked
/// before redis-server binds it.
const START_ATTEMPTS: usize = 5;

/// The `redis-server` binary: `$REDIS_SERVER` when set, else the first on `PATH`.
pub fn server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(SERVER_VAR) {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file())
}

/// Whether `redis-server` is installed. When it is not, a test skips what needs it with a note,
/// unless `REQUIRE_REDIS=1` (the test command) makes that a failure.
pub fn installed() -> bool {
    let found = server().is_some();
    if !found {
        assert_ne!(
            std::env::var("REQUIRE_REDIS").as_deref(),
            Ok("1"),
            "REQUIRE_REDIS=1 but redis-server is not installed: run apt-get install redis-server \
             (or point {SERVER_VAR} at a redis-server binary)"
        );
        eprintln!(
            "note: redis-server is not installed, the part of this test that needs Redis is \
             skipped (apt-get install redis-server installs it)"
        );
    }
    found
}

/// A running redis-server; killed when dropped.
pub struct Redis {
    binary: PathBuf,
    port: u16,
    /// Everything but the port: the same on a restart.
    args: Vec<String>,
    tls: Option<Tls>,
    child: Option<Child>,
    output: Arc<Mutex<String>>,
}

/// The certificates of a Redis that speaks TLS only: a test CA and a server certificate it
/// signed for `localhost` and `127.0.0.1`, in a folder removed with them.
struct Tls {
    dir: PathBuf,
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Redis {
    /// A Redis on a free port of 127.0.0.1, without a password.
    pub async fn start() -> Redis {
        Redis::start_with(&[]).await
    }

    /// [`Redis::start`] with more `redis-server` arguments, e.g. `["--requirepass", "x"]`.
    pub async fn start_with(args: &[&str]) -> Redis {
        Redis::launch(args, None).await
    }

    /// A Redis that speaks TLS only, with a certificate for `localhost` signed by a CA of its
    /// own ([`Redis::ca_file`]); [`Redis::url`] is `rediss://localhost:<port>`. Needs `openssl`.
    pub async fn start_tls() -> Redis {
        let tls = Tls::generate().await;
        let args: Vec<String> = [
            ("--tls-cert-file", "server.pem"),
            ("--tls-key-file", "server.key"),
            ("--tls-ca-cert-file", "ca.pem"),
        ]
        .into_iter()
        .flat_map(|(flag, file)| [flag.to_owned(), tls.dir.join(file).display().to_string()])
        .chain(["--tls-auth-clients".to_owned(), "no".to_owned()])
        .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Redis::launch(&args, Some(tls)).await
    }

    async fn launch(args: &[&str], tls: Option<Tls>) -> Redis {
        let binary = server().expect("redis-server is installed (check testkit::redis::installed)");
        let mut redis = Redis {
            binary,
            port: 0,
            args: args.iter().map(|&arg| arg.to_owned()).collect(),
            tls,
            child: None,
            output: Arc::default(),
        };
        for attempt in 1..=START_ATTEMPTS {
            redis.port = free_port().await;
            match redis.spawn().await {
                Ok(()) => return redis,
                Err(said) if attempt < START_ATTEMPTS && said.contains("already in use") => {}
                Err(said) => panic!("redis-server did not start: {said}"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    /// Starts the process on `self.port` and waits until it answers, or says why it did not.
    async fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut command = Command::new(&self.binary);
        command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        if self.tls.is_some() {
            command.args(["--port", "0", "--tls-port", &port]);
        } else {
            command.args(["--port", &port]);
        }
        let mut child = command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.output = Arc::default();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncReadUnpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncReadUnpin>),
        ]
        .into_iter()
        .flatten()
        {
            let output = self.output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut output = output.lock().expect("output lock");
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // Let the readers catch up with what it said before it exited.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(format!("it exited ({status}): {}", self.output()));
            }
            if self.answers().await {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer on port {} within {START_TIMEOUT:?}: {}",
                    self.port,
                    self.output()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether it serves on its port: a `PING` gets a reply (`+PONG`, or `-NOAUTH` with a
    /// password). TLS cannot be spoken here, so for TLS an accepted connection has to do.
    async fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if self.tls.is_some() {
            return true;
        }
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut reply = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), stream.read(&mut reply)).await,
            Ok(Ok(1)) if matches!(reply[0], b'+' | b'-')
        )
    }

    /// What redis-server printed so far.
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://localhost:<port>` for TLS (the name its
    /// certificate is for).
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("rediss://localhost:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The CA that signed a TLS Redis's certificate (PEM), for a client's trust store
    /// (`SSL_CERT_FILE`); `None` without TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|tls| tls.dir.join("ca.pem"))
    }

    /// Kills it (SIGKILL: an outage, not a shutdown); its data is gone. Idempotent.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts it again, empty, on the same port and with the same arguments.
    pub async fn restart(&mut self) {
        self.stop().await;
        if let Err(said) = self.spawn().await {
            panic!(
                "redis-server did not start again on port {}: {said}",
                self.port
            );
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and the port accepts, but nothing answers,
    /// as with a Redis stuck on a slow disk or a full machine.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused Redis go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("redis-server is running");
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}: {status}");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SIGKILL ends a paused process too.
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

trait AsyncReadUnpin: tokio::io::AsyncRead + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + Unpin + Send + 'static> AsyncReadUnpin for T {}

/// A port that was free on 127.0.0.1 a moment ago.
async fn free_port() -> u16 {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port")
        .local_addr()
        .expect("bound address")
        .port()
}

impl Tls {
    /// A CA and a server certificate for `localhost`/127.0.0.1 signed by it (P-256, one day),
    /// made with the `openssl` command line. The server certificate is not a CA: rustls refuses
    /// a CA certificate presented as a server's.
    async fn generate() -> Tls {
        static DIRS: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "testkit-redis-tls-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the certificate folder");
        let tls = Tls { dir };
        let ext = tls.dir.join("server.ext");
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("write the extensions");
        openssl(
            &tls.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=testkit Redis CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        )
        .await;
        openssl(
            &tls.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        )
        .await;
        openssl(
            &tls.dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        )
        .await;
        tls
    }
}

async fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run openssl (the TLS Redis needs it to make its certificates)");
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}
