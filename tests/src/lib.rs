//! End-to-end tests of flagd: real processes, real clients.
//!
//! The harness: [`server_binary`] builds (once per test process) and finds the real
//! `flagd-server` executable, [`Server`] runs it on a free loopback port with its own
//! SQLite database (or one of [`databases`], a fresh one on every configured backend) and
//! a known admin token, and [`Client`] is a small blocking HTTP client for the admin and
//! OFREP APIs. A [`Proxy`] stands between a client and a server (or a server and its
//! database) to break the link on purpose.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The admin token every [`Server`] is started with unless [`ServerOptions`] says otherwise.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-not-a-secret";

/// Everything the harness can fail with, as a message meant for a test failure report.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(pub String);

// `unwrap()` in tests prints `Debug`: show the message (often multi-line logs) as is.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self(format!("I/O error: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self(format!("JSON error: {e}"))
    }
}

impl From<ureq::Error> for Error {
    fn from(e: ureq::Error) -> Self {
        Self(format!("HTTP error: {e}"))
    }
}

/// The root of the cargo workspace (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), Path::to_path_buf)
}

// ---------------------------------------------------------------------------------------
// The server binary
// ---------------------------------------------------------------------------------------

/// The `flagd-server` executable: `$FLAGD_SERVER_BIN` if set, otherwise built by cargo
/// (once per process). Cargo, not a guessed `target/debug` path, names the file, so
/// `CARGO_TARGET_DIR`, `--target` and profile settings are all honoured.
pub fn server_binary() -> Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf>> = OnceLock::new();
    BINARY.get_or_init(|| binary_from_env_or_cargo("FLAGD_SERVER_BIN", "flagd-server", "flagd-server")).clone()
}

/// The `flagctl` executable: `$FLAGCTL_BIN` if set, otherwise built by cargo (once per
/// process), found the same way as [`server_binary`].
pub fn flagctl_binary() -> Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf>> = OnceLock::new();
    BINARY.get_or_init(|| binary_from_env_or_cargo("FLAGCTL_BIN", "flagd-client", "flagctl")).clone()
}

fn binary_from_env_or_cargo(variable: &str, package: &str, bin: &str) -> Result<PathBuf> {
    match std::env::var_os(variable) {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            if path.is_file() { Ok(path) } else { Err(Error(format!("{variable}={} is not a file", path.display()))) }
        }
        _ => build_binary(package, bin),
    }
}

fn build_binary(package: &str, bin: &str) -> Result<PathBuf> {
    // Inside `cargo test` this is the very cargo that runs us, with the same toolchain.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "-p", package, "--bin", bin, "--message-format=json-render-diagnostics"])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error(format!("cannot run {}: {e}", Path::new(&cargo).display())))?;
    if !out.status.success() {
        return Err(Error(format!(
            "`cargo build -p {package} --bin {bin}` failed ({}); see the compiler output above",
            out.status
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .filter(|m| m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")))
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| Error(format!("`cargo build -p {package}` reported no {bin} executable")))
}

// ---------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/flagd-e2e-{prefix}-{pid}-{unique}`.
    pub fn new(prefix: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("flagd-e2e-{prefix}-{}-{nanos}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| Error(format!("cannot create {}: {e}", path.display())))?;
        Ok(Self(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------

/// A database made for one test, dropped with it (the server backends' by their own
/// command-line client).
#[derive(Debug)]
pub struct Database {
    /// Its `--database-url`.
    pub url: String,
    /// The command-line client and the arguments that reach this database, the SQL last.
    client: Option<(&'static str, Vec<String>)>,
    drop_with: Option<(&'static str, Vec<String>)>,
    dir: TempDir,
}

impl Database {
    /// Where the database server listens; `None` for SQLite, a file.
    pub fn address(&self) -> Option<SocketAddr> {
        let (_, authority) = authority(&self.url)?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, host_port)| host_port);
        let default_port = if self.url.starts_with("mysql") { 3306 } else { 5432 };
        let found = host_port.to_socket_addrs().or_else(|_| (host_port, default_port).to_socket_addrs());
        found.ok()?.next()
    }

    /// Runs `sql` on this database with its server's command-line client; returns what it
    /// printed, tab-separated and without headers. `None` for SQLite.
    pub fn sql(&self, sql: &str) -> Option<Result<String>> {
        let (program, args) = self.client_args(sql)?;
        Some(run_checked(program, &args.iter().map(String::as_str).collect::<Vec<_>>(), self.dir.path()))
    }

    /// Starts `sql` on this database in the background (a lock held for a while, say); the
    /// client is killed when the returned guard drops. `None` for SQLite.
    pub fn sql_in_background(&self, sql: &str) -> Option<Result<KilledOnDrop>> {
        let (program, args) = self.client_args(sql)?;
        let started = Command::new(program)
            .args(&args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(KilledOnDrop)
            .map_err(|e| Error(format!("cannot run `{program}`: {e}")));
        Some(started)
    }

    fn client_args(&self, sql: &str) -> Option<(&'static str, Vec<String>)> {
        let (program, args) = self.client.as_ref()?;
        Some((program, args.iter().cloned().chain([sql.to_owned()]).collect()))
    }

    /// The URL of the same database reached at `address` instead (a [`Proxy`] in front of
    /// its server).
    pub fn url_through(&self, address: SocketAddr) -> Result<String> {
        let (at, authority) =
            authority(&self.url).ok_or_else(|| Error(format!("`{}` names no server to reach", self.url)))?;
        let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
        let rest = &self.url[at + authority.len()..];
        Ok(format!("{}{user}{address}{rest}", &self.url[..at]))
    }
}

/// Where the authority (`user@host:port`) of a `scheme://` URL starts, and the authority.
fn authority(url: &str) -> Option<(usize, &str)> {
    let at = url.find("://")? + 3;
    let authority = url[at..].split('/').next().unwrap_or_default();
    Some((at, authority))
}

/// A child process killed (and reaped) when this drops.
#[derive(Debug)]
pub struct KilledOnDrop(Child);

impl KilledOnDrop {
    /// Takes charge of `child`.
    pub fn new(child: Child) -> Self {
        Self(child)
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((program, args)) = &self.drop_with {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = run_checked(program, &args, self.dir.path());
        }
    }
}

/// A fresh database on every configured backend, each named (`sqlite`, `mariadb`,
/// `postgres`): SQLite always; MariaDB and PostgreSQL when `FLAGD_TEST_MYSQL_URL` /
/// `FLAGD_TEST_POSTGRES_URL` name a server (as for the store contract), each database
/// created there for `test` and dropped afterwards. A set URL that does not answer fails.
pub fn databases(test: &str) -> Result<Vec<(&'static str, Database)>> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("flagd_e2e_{test}_{}_{nanos}", std::process::id());
    let dir = TempDir::new("database")?;
    let url = format!("sqlite:{}", dir.path().join("flagd.db").display());
    let mut out = vec![("sqlite", Database { url, client: None, drop_with: None, dir })];
    if let Some(base) = configured("FLAGD_TEST_MYSQL_URL") {
        let (host, port, user) = mysql_parts(&base)?;
        let login = [format!("-u{user}"), format!("-h{host}"), format!("-P{port}")];
        let cli = |sql: String| login.iter().cloned().chain(["-e".into(), sql]).collect::<Vec<_>>();
        let dir = TempDir::new("database")?;
        let create = cli(format!("CREATE DATABASE {name}"));
        run_checked("mysql", &create.iter().map(String::as_str).collect::<Vec<_>>(), dir.path())?;
        let drop_with = Some(("mysql", cli(format!("DROP DATABASE {name}"))));
        let client = login.iter().cloned().chain(["-NB".into(), format!("-D{name}"), "-e".into()]).collect();
        out.push((
            "mariadb",
            Database { url: sibling(&base, &name)?, client: Some(("mysql", client)), drop_with, dir },
        ));
    }
    if let Some(base) = configured("FLAGD_TEST_POSTGRES_URL") {
        let dir = TempDir::new("database")?;
        run_checked("psql", &[&base, "-qc", &format!("CREATE DATABASE {name}")], dir.path())?;
        let drop_with = Some(("psql", vec![base.clone(), "-qc".into(), format!("DROP DATABASE {name} WITH (FORCE)")]));
        let url = sibling(&base, &name)?;
        let client = Some(("psql", vec![url.clone(), "-qAtc".into()]));
        out.push(("postgres", Database { url, client, drop_with, dir }));
    }
    Ok(out)
}

fn configured(variable: &str) -> Option<String> {
    std::env::var(variable).ok().filter(|url| !url.is_empty())
}

/// `url` with its database replaced by `name`.
fn sibling(url: &str, name: &str) -> Result<String> {
    let (server, _) = url.rsplit_once('/').ok_or_else(|| Error(format!("no database in `{url}`")))?;
    Ok(format!("{server}/{name}"))
}

/// `mysql://USER[:PASS]@HOST:PORT/DB` → host, port, user (the tests' URLs carry no password).
fn mysql_parts(url: &str) -> Result<(String, String, String)> {
    let unreadable = || Error(format!("`{url}` is not mysql://USER@HOST:PORT/DB"));
    let rest = url.split_once("://").ok_or_else(unreadable)?.1;
    let (user, rest) = rest.split_once('@').ok_or_else(unreadable)?;
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    Ok((host.to_owned(), port.to_owned(), user.split(':').next().unwrap_or_default().to_owned()))
}

// ---------------------------------------------------------------------------------------
// A running server
// ---------------------------------------------------------------------------------------

/// How to start a [`Server`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `--database-url`; `None` means a new SQLite file in the server's temp dir.
    /// Several servers given the same URL are replicas of one store.
    pub database_url: Option<String>,
    /// `--admin-token`.
    pub admin_token: String,
    /// Further command-line arguments.
    pub args: Vec<String>,
    /// Further environment variables for the server process.
    pub env: Vec<(String, String)>,
    /// How long `/healthz` may take to answer after the process started.
    pub startup_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            database_url: None,
            admin_token: ADMIN_TOKEN.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

/// A running `flagd-server` process, killed on drop. Its stdout and stderr go to files
/// in its temp dir; [`Server::logs`] reads them for failure reports.
#[derive(Debug)]
pub struct Server {
    child: Child,
    address: SocketAddr,
    base_url: String,
    admin_token: String,
    dir: TempDir,
}

/// Attempts at a free port: another process may take the port between our probe and the
/// server's bind.
const PORT_ATTEMPTS: usize = 3;

impl Server {
    /// Starts a server with [`ServerOptions::default`].
    pub fn start() -> Result<Self> {
        Self::start_with(&ServerOptions::default())
    }

    /// Starts a server and waits until `/healthz` answers.
    pub fn start_with(options: &ServerOptions) -> Result<Self> {
        let binary = server_binary()?;
        let mut last = Error("no attempt made".into());
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(&binary, options) {
                Ok(server) => return Ok(server),
                Err(Attempt::PortTaken(e)) => last = e,
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(last)
    }

    fn try_start(binary: &Path, options: &ServerOptions) -> std::result::Result<Self, Attempt> {
        let dir = TempDir::new("server").map_err(Attempt::Failed)?;
        let port = free_port().map_err(Attempt::Failed)?;
        let listen = format!("127.0.0.1:{port}");
        let child = spawn(binary, options, dir.path(), &listen).map_err(Attempt::Failed)?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let base_url = format!("http://{address}");
        let mut server = Self { child, address, base_url, admin_token: options.admin_token.clone(), dir };
        server.wait_healthy(options.startup_timeout)?;
        Ok(server)
    }

    /// Starts the process again after it exited or was killed: same address, same
    /// directory (so the same default SQLite database), same `options`.
    pub fn restart(&mut self, options: &ServerOptions) -> Result<()> {
        let listen = self.base_url.trim_start_matches("http://").to_owned();
        self.child = spawn(&server_binary()?, options, self.dir.path(), &listen)?;
        self.wait_healthy(options.startup_timeout)?;
        Ok(())
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    fn wait_healthy(&mut self, timeout: Duration) -> std::result::Result<(), Attempt> {
        let deadline = Instant::now() + timeout;
        let probe = Client::new(&self.base_url, None).with_timeout(Duration::from_secs(2));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let logs = self.logs();
                let e = Error(format!("flagd-server exited during start-up ({status}):\n{logs}"));
                let port_taken = logs.contains("in use") || logs.contains("os error 98");
                return Err(if port_taken { Attempt::PortTaken(e) } else { Attempt::Failed(e) });
            }
            if probe.get("/healthz").is_ok_and(|r| r.status == 200) && listens_on(self.child.id(), self.address.port())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Attempt::Failed(Error(format!(
                    "flagd-server did not answer {}/healthz within {timeout:?}:\n{}",
                    self.base_url,
                    self.logs()
                ))));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// The admin token the server was started with.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A client sending the admin token.
    pub fn admin(&self) -> Client {
        Client::new(&self.base_url, Some(&self.admin_token))
    }

    /// A client sending `token` (or none).
    pub fn client(&self, token: Option<&str>) -> Client {
        Client::new(&self.base_url, token)
    }

    /// The server's stdout and stderr so far.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("--- stdout ---\n{}--- stderr ---\n{}", read("stdout.log"), read("stderr.log"))
    }

    /// The server's own temp dir (its SQLite database lives here by default).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Server {
    /// Sends SIGTERM and waits (up to `deadline`) for the process to exit.
    pub fn terminate(&mut self, deadline: Duration) -> Result<std::process::ExitStatus> {
        signal(self.child.id(), "-TERM")?;
        let until = std::time::Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > until {
                return Err(Error(format!("the server did not exit within {deadline:?} of SIGTERM")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Attempt {
    PortTaken(Error),
    Failed(Error),
}

impl From<Attempt> for Error {
    fn from(a: Attempt) -> Self {
        match a {
            Attempt::PortTaken(e) | Attempt::Failed(e) => e,
        }
    }
}

/// Starts `flagd-server` listening on `listen`, its logs appended to files in `dir`.
fn spawn(binary: &Path, options: &ServerOptions, dir: &Path, listen: &str) -> Result<Child> {
    let database_url =
        options.database_url.clone().unwrap_or_else(|| format!("sqlite:{}", dir.join("flagd.db").display()));
    let log = |name: &str| std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name));
    Command::new(binary)
        .args(["--listen", listen, "--database-url", &database_url, "--admin-token", &options.admin_token])
        .args(&options.args)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log("stdout.log")?)
        .stderr(log("stderr.log")?)
        .spawn()
        .map_err(|e| Error(format!("cannot start {}: {e}", binary.display())))
}

/// Sends `signal` (as `kill` takes it: `-TERM`, `-STOP`, `-CONT`, …) to process `pid`.
/// SIGSTOP makes a server hang as a stuck one does: it keeps its port and its connections
/// but answers nothing, and records no heartbeat.
pub fn signal(pid: u32, signal: &str) -> Result<()> {
    run_checked("kill", &[signal, &pid.to_string()], Path::new(".")).map(drop)
}

/// A server stopped with SIGSTOP: it keeps its port and accepts connections but answers
/// nothing, as a hung server does. SIGCONT on drop, also when an assertion failed.
#[derive(Debug)]
pub struct Hung(u32);

impl Hung {
    /// Stops `server` until the result is dropped.
    pub fn new(server: &Server) -> Result<Self> {
        signal(server.pid(), "-STOP")?;
        Ok(Self(server.pid()))
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        let _ = signal(self.0, "-CONT");
    }
}

/// A loopback port nobody listened on a moment ago, and never handed out before by this
/// process: tests run side by side, and the kernel may offer a port it gave one of them to
/// another before the first server has bound it.
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        if HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner).insert(port) {
            return Ok(port);
        }
    }
}

/// Whether process `pid` holds the socket listening on loopback `port`. A `/healthz` answer
/// alone does not say so: another process (another test's server) may have bound the port
/// first, and this one is then still on its way to failing with "address in use".
#[cfg(target_os = "linux")]
fn listens_on(pid: u32, port: u16) -> bool {
    let sockets: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| Some(target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned()))
        .collect();
    tcp_sockets().iter().any(|s| s.local_port == port && s.listening && sockets.contains(&s.inode))
}

/// One IPv4 TCP socket of this host, as `/proc/net/tcp` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    /// Its local port.
    pub local_port: u16,
    /// Its peer's port (0 for a listening socket).
    pub remote_port: u16,
    /// Whether it listens.
    pub listening: bool,
    /// Bytes received and not yet read by the process holding it.
    pub unread: u64,
    /// Its inode, which `/proc/PID/fd` links name as `socket:[INODE]`.
    pub inode: String,
}

/// Every IPv4 TCP socket of this host, from `/proc/net/tcp` (`sl local_address rem_address
/// st tx_queue:rx_queue … inode`, addresses as hex `IP:PORT`, state 0A for LISTEN); none
/// where that cannot be read.
pub fn tcp_sockets() -> Vec<TcpSocket> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = |address: &str| address.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    let row = |line: &str| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        Some(TcpSocket {
            local_port: port(fields.get(1)?)?,
            remote_port: port(fields.get(2)?)?,
            listening: *fields.get(3)? == "0A",
            unread: u64::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()?,
            inode: (*fields.get(9)?).to_owned(),
        })
    };
    table.lines().skip(1).filter_map(row).collect()
}

#[cfg(not(target_os = "linux"))]
fn listens_on(_pid: u32, _port: u16) -> bool {
    true
}

// ---------------------------------------------------------------------------------------
// A link that breaks
// ---------------------------------------------------------------------------------------

/// What a [`Proxy`] does with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Passes bytes both ways until either side closes or the proxy is cut.
    Forward,
    /// Passes the request, and of the answer its head and first server-sent event, then
    /// closes: a change stream cut as soon as it opened.
    FirstEventOnly,
    /// Takes what the client sends and never answers: a peer that accepts and hangs, as a
    /// balancer before a dead backend may.
    BlackHole,
}

type Router = dyn Fn(&str) -> Route + Send + Sync;

/// A TCP proxy on loopback in front of one backend, which breaks the link on purpose: it
/// routes HTTP connections by their first request line ([`Proxy::http`]), and it cuts every
/// connection and refuses new ones until restored ([`Proxy::cut`]). It stops when dropped.
pub struct Proxy {
    address: SocketAddr,
    state: Arc<ProxyState>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy").field("address", &self.address).field("backend", &self.state.backend).finish()
    }
}

struct ProxyState {
    backend: SocketAddr,
    /// `None` for a plain TCP proxy, which reads nothing before forwarding: a database
    /// server speaks first.
    route: Option<Box<Router>>,
    links: Mutex<Links>,
    /// Each HTTP connection's request line and when it came.
    requests: Mutex<Vec<(Instant, String)>>,
    stopped: AtomicBool,
}

/// Whether the proxy is cut, and the sockets of its connections: one lock, so that no
/// connection slips past a cut.
#[derive(Default)]
struct Links {
    cut: bool,
    live: Vec<TcpStream>,
}

impl Proxy {
    /// A proxy passing every connection to `backend` untouched until it is cut.
    pub fn tcp(backend: SocketAddr) -> Result<Self> {
        Self::start(backend, None)
    }

    /// A proxy to the HTTP server at `backend` that treats each connection as `route` says
    /// for its first request line (`GET /api/v1/stream HTTP/1.1`). A client's pools keep
    /// its change stream's connection apart from its other requests'.
    pub fn http(backend: SocketAddr, route: impl Fn(&str) -> Route + Send + Sync + 'static) -> Result<Self> {
        Self::start(backend, Some(Box::new(route)))
    }

    fn start(backend: SocketAddr, route: Option<Box<Router>>) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let address = listener.local_addr()?;
        let state = Arc::new(ProxyState {
            backend,
            route,
            links: Mutex::default(),
            requests: Mutex::default(),
            stopped: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&state);
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                if accepting.stopped.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(inbound) = inbound {
                    let state = Arc::clone(&accepting);
                    std::thread::spawn(move || state.serve(inbound));
                }
            }
        });
        Ok(Self { address, state })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://` and [`Proxy::address`].
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Closes every connection, and from now on each new one at once, until
    /// [`Proxy::restore`]: the backend is unreachable.
    pub fn cut(&self) {
        let mut links = self.state.links();
        links.cut = true;
        for socket in links.live.drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Passes new connections again after [`Proxy::cut`].
    pub fn restore(&self) {
        self.state.links().cut = false;
    }

    /// When each HTTP connection whose request line starts with `prefix` came, in order.
    pub fn requests(&self, prefix: &str) -> Vec<Instant> {
        let requests = self.state.requests.lock().unwrap_or_else(PoisonError::into_inner);
        requests.iter().filter(|(_, line)| line.starts_with(prefix)).map(|(at, _)| *at).collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Relaxed);
        self.cut();
        // Wakes the accepting thread, which then sees that it is to stop.
        let _ = TcpStream::connect(self.address);
    }
}

impl ProxyState {
    fn links(&self) -> MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serve(&self, mut inbound: TcpStream) {
        // Also checked before connecting to the backend, not only when registering: a
        // database counts connections closed before their handshake as errors, and may
        // block a host that makes too many.
        if self.links().cut {
            let _ = inbound.shutdown(Shutdown::Both);
            return;
        }
        let (route, head) = match &self.route {
            Some(router) => {
                let Some((line, head)) = read_request_line(&mut inbound) else { return };
                let route = router(&line);
                self.requests.lock().unwrap_or_else(PoisonError::into_inner).push((Instant::now(), line));
                (route, head)
            }
            None => (Route::Forward, Vec::new()),
        };
        let outbound = match route {
            Route::BlackHole => None,
            Route::Forward | Route::FirstEventOnly => match TcpStream::connect(self.backend) {
                Ok(outbound) => Some(outbound),
                Err(_) => return,
            },
        };
        {
            let mut links = self.links();
            let sockets = std::iter::once(&inbound).chain(&outbound).map(TcpStream::try_clone);
            let clones: io::Result<Vec<TcpStream>> = sockets.collect();
            match clones {
                Ok(clones) if !links.cut => links.live.extend(clones),
                _ => {
                    for socket in std::iter::once(&inbound).chain(&outbound) {
                        let _ = socket.shutdown(Shutdown::Both);
                    }
                    return;
                }
            }
        }
        let Some(mut outbound) = outbound else {
            // A black hole reads what the client sends, so that the client's writes go
            // through and it waits for the answer.
            let _ = io::copy(&mut inbound, &mut io::sink());
            return;
        };
        let (Ok(()), Ok(inbound_copy), Ok(outbound_copy)) =
            (outbound.write_all(&head), inbound.try_clone(), outbound.try_clone())
        else {
            // The copies in `links` keep the sockets open: close them for the client to see.
            let _ = inbound.shutdown(Shutdown::Both);
            let _ = outbound.shutdown(Shutdown::Both);
            return;
        };
        pipe(inbound_copy, outbound_copy);
        match route {
            Route::FirstEventOnly => first_event_only(outbound, inbound),
            Route::Forward | Route::BlackHole => pipe(outbound, inbound),
        }
    }
}

/// Reads from `client` up to the end of its first line; returns that line and every byte
/// read, which the backend must still be sent.
fn read_request_line(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut read = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        if let Some(end) = find(&read, b"\r\n") {
            return Some((String::from_utf8_lossy(&read[..end]).into_owned(), read));
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => read.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Copies the answer from `from` to `to` until its first server-sent event is complete,
/// then closes both.
fn first_event_only(mut from: TcpStream, mut to: TcpStream) {
    let mut seen = Vec::new();
    let mut chunk = [0_u8; 8192];
    while let Ok(n @ 1..) = from.read(&mut chunk) {
        if to.write_all(&chunk[..n]).is_err() {
            break;
        }
        seen.extend_from_slice(&chunk[..n]);
        // The head ends with an empty line, and so does each event after it.
        if find(&seen, b"\r\n\r\n").is_some_and(|head| find(&seen[head + 4..], b"\n\n").is_some()) {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Copies `from` to `to` on a thread of its own until either side closes, then closes `to`.
pub fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// A blocking JSON client for one server, optionally sending a bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    base_url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// One HTTP answer. A body that is not JSON is kept as a JSON string; an empty body is
/// `null`.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Value,
    /// The body as it came, for comparisons byte for byte.
    pub text: String,
}

impl Reply {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// This reply if its status is 2xx, otherwise an error naming `what`.
    pub fn success(self, what: &str) -> Result<Self> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(Error(format!("{what}: HTTP {} {}", self.status, self.body)))
        }
    }
}

impl Client {
    /// A client for `base_url` (`http://host:port`).
    pub fn new(base_url: &str, token: Option<&str>) -> Self {
        Self::with_agent(base_url, token, Duration::from_secs(30))
    }

    fn with_agent(base_url: &str, token: Option<&str>, timeout: Duration) -> Self {
        // 4xx/5xx are answers to inspect, not transport errors.
        let config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build();
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// The same client with another overall per-request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self::with_agent(&self.base_url, self.token.as_deref(), timeout)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Reply> {
        self.request("GET", path, None, &[])
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Reply> {
        self.request("POST", path, Some(body), &[])
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Result<Reply> {
        self.request("PUT", path, Some(body), &[])
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Reply> {
        self.request("DELETE", path, None, &[])
    }

    /// A request whose body is sent as given (for malformed or oversized bodies).
    pub fn request_raw(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Reply> {
        let url = format!("{}{path}", self.base_url);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let request = builder.body(body).map_err(|e| Error(format!("{method} {url}: {e}")))?;
        let response = self.agent.run(request).map_err(|e| Error(format!("{method} {url}: {e}")))?;
        Self::reply(method, &url, response)
    }

    fn reply(method: &str, url: &str, response: ureq::http::Response<ureq::Body>) -> Result<Reply> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|e| Error(format!("{method} {url}: reading the body: {e}")))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        Ok(Reply { status, headers, body, text })
    }

    /// Any request; `headers` are sent in addition to the token and content type.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Result<Reply> {
        let url = format!("{}{path}", self.base_url);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let failed = |e: ureq::http::Error| Error(format!("{method} {url}: {e}"));
        let response = match body {
            Some(body) => {
                let request = builder.header("content-type", "application/json").body(serde_json::to_vec(body)?);
                self.agent.run(request.map_err(failed)?)
            }
            None => self.agent.run(builder.body(()).map_err(failed)?),
        }
        .map_err(|e| Error(format!("{method} {url}: {e}")))?;
        Self::reply(method, &url, response)
    }

    // -- admin API ------------------------------------------------------------------------

    /// `POST /api/v1/flags`; returns the created flag.
    pub fn create_flag(&self, definition: &Value) -> Result<Value> {
        let key = definition["key"].as_str().unwrap_or("?");
        Ok(self.post("/api/v1/flags", definition)?.success(&format!("creating flag `{key}`"))?.body)
    }

    /// The configuration of `flag` in `env` and its ETag.
    pub fn config(&self, flag: &str, env: &str) -> Result<(Value, String)> {
        let what = format!("reading the config of `{flag}` in {env}");
        let reply = self.get(&config_path(flag, env))?.success(&what)?;
        let etag = reply.header("etag").ok_or_else(|| Error(format!("{what}: no ETag")))?.to_owned();
        Ok((reply.body, etag))
    }

    /// Replaces the configuration of `flag` in `env` (read-then-write with `If-Match`);
    /// returns the stored configuration.
    pub fn set_config(&self, flag: &str, env: &str, config: &Value) -> Result<Value> {
        let (_, etag) = self.config(flag, env)?;
        let reply = self.request("PUT", &config_path(flag, env), Some(config), &[("if-match", &etag)])?;
        Ok(reply.success(&format!("writing the config of `{flag}` in {env}"))?.body)
    }

    /// A quick operation: `POST …/{flag}/environments/{env}/{op}` (`enable`, `disable`,
    /// `allow`, `deny`, …) with an optional body.
    pub fn quick_op(&self, flag: &str, env: &str, op: &str, body: Option<&Value>) -> Result<Value> {
        let path = format!("{}/{op}", config_path(flag, env));
        let reply = self.request("POST", &path, body, &[])?;
        Ok(reply.success(&format!("`{op}` on `{flag}` in {env}"))?.body)
    }

    /// `PUT …/{flag}/environments/{env}/rollout {"percentage": …}`.
    pub fn set_rollout(&self, flag: &str, env: &str, percentage: f64) -> Result<Value> {
        let path = format!("{}/rollout", config_path(flag, env));
        let reply = self.put(&path, &json!({ "percentage": percentage }))?;
        Ok(reply.success(&format!("setting the rollout of `{flag}` in {env} to {percentage} %"))?.body)
    }

    /// A new token; `environment` binds an `evaluate` token. Returns its value.
    pub fn create_token(&self, name: &str, role: &str, environment: Option<&str>) -> Result<String> {
        let mut body = json!({ "name": name, "role": role });
        if let Some(env) = environment {
            body["environment"] = json!(env);
        }
        let reply = self.post("/api/v1/tokens", &body)?.success(&format!("creating {role} token `{name}`"))?;
        reply.body["value"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error(format!("creating token `{name}`: no `value` in {}", reply.body)))
    }

    /// Revokes the token called `name` (the first listed, if several are): found by name, as
    /// [`Client::create_token`] returns only the value.
    pub fn revoke_token(&self, name: &str) -> Result<()> {
        let listed = self.get("/api/v1/tokens")?.success("listing tokens")?.body;
        let tokens = listed["tokens"].as_array().map_or(&[][..], Vec::as_slice);
        let id = &tokens
            .iter()
            .find(|t| t["name"] == name)
            .ok_or_else(|| Error(format!("no token called `{name}` in {listed}")))?["id"];
        let id = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
        self.delete(&format!("/api/v1/tokens/{id}"))?.success(&format!("revoking token `{name}`"))?;
        Ok(())
    }

    // -- OFREP ----------------------------------------------------------------------------

    /// `POST /ofrep/v1/evaluate/flags/{key}` with `{"context": context}`; any status.
    pub fn ofrep(&self, key: &str, context: &Value) -> Result<Reply> {
        self.post(&format!("/ofrep/v1/evaluate/flags/{key}"), &json!({ "context": context }))
    }

    /// `POST /ofrep/v1/evaluate/flags` with `{"context": context}`; any status.
    pub fn ofrep_bulk(&self, context: &Value) -> Result<Reply> {
        self.post("/ofrep/v1/evaluate/flags", &json!({ "context": context }))
    }
}

fn config_path(flag: &str, env: &str) -> String {
    format!("/api/v1/flags/{flag}/environments/{env}")
}

// ---------------------------------------------------------------------------------------
// Helper processes
// ---------------------------------------------------------------------------------------

/// A finished process, for tests that assert on its exit code and output together.
#[derive(Debug)]
pub struct Run {
    /// The command line as shown in failure messages.
    pub shown: String,
    /// The exit code (-1 when a signal ended it).
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Run {
    /// What a finished process left.
    pub fn finished(shown: impl Into<String>, out: std::process::Output) -> Self {
        Self {
            shown: shown.into(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `command` to the end with no input; a program that cannot be started fails
    /// the test with `hint` (what to install).
    pub fn of(shown: impl Into<String>, command: &mut Command, hint: &str) -> Self {
        let shown = shown.into();
        match command.stdin(Stdio::null()).output() {
            Ok(out) => Self::finished(shown, out),
            Err(e) => {
                Self { code: -1, stdout: String::new(), stderr: format!("cannot run {shown} ({e}){hint}"), shown }
            }
        }
    }

    /// Asserts the exit code (showing both outputs when it differs); returns the run for
    /// more checks.
    pub fn code(self, expected: i32) -> Self {
        assert_eq!(
            self.code, expected,
            "{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.shown, self.stdout, self.stderr
        );
        self
    }

    /// Asserts success.
    pub fn ok(self) -> Self {
        self.code(0)
    }

    /// stdout as one JSON document.
    pub fn json(&self) -> Value {
        let parsed = serde_json::from_str(&self.stdout);
        assert!(parsed.is_ok(), "{} printed no JSON ({parsed:?}):\n{}", self.shown, self.stdout);
        parsed.unwrap_or_default()
    }

    /// stdout as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.to_owned()))).collect()
    }
}

/// Runs `program args` in `dir`, failing with its output unless it succeeds.
pub fn run_checked(program: &str, args: &[&str], dir: &Path) -> Result<String> {
    let shown = format!("`{program} {}` in {}", args.join(" "), dir.display());
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error(format!("cannot run {shown} (is `{program}` installed and on PATH?): {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(Error(format!("{shown} failed ({}):\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr))))
    }
}

/// Runs `program args` in `dir` with `input` on stdin and returns stdout, failing with
/// stderr unless it succeeds.
pub fn run_with_input(program: &Path, args: &[&str], dir: &Path, input: &[u8]) -> Result<String> {
    use std::io::Write;
    let shown = format!("`{} {}` in {}", program.display(), args.join(" "), dir.display());
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error(format!("cannot run {shown}: {e}")))?;
    // Writing from another thread: a child that prints before reading all its input
    // would otherwise deadlock against us on full pipes.
    let mut stdin = child.stdin.take().ok_or_else(|| Error(format!("{shown}: no stdin")))?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().map_err(|e| Error(format!("{shown}: {e}")))?;
    let written = writer.join().map_err(|_| Error(format!("{shown}: the stdin writer panicked")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(Error(format!("{shown} failed ({}):\n{stdout}{stderr}", out.status)));
    }
    written.map_err(|e| Error(format!("{shown}: writing its input: {e}")))?;
    Ok(stdout)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The start-up check tells the process that listens on a port from any other.
    #[test]
    fn only_the_process_holding_a_listening_port_listens_on_it() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens_on(std::process::id(), port));
        let other = KilledOnDrop(Command::new("sleep").arg("30").spawn().unwrap());
        assert!(!listens_on(other.0.id(), port));
        drop(listener);
        assert!(!listens_on(std::process::id(), port));
    }

    /// The kernel repeats itself within a few hundred ports of its 28 k (about 70 repeats
    /// in 2,000 here): the harness must not.
    #[test]
    fn a_port_is_handed_out_once() {
        let ports: Vec<u16> = (0..2000).map(|_| free_port().unwrap()).collect();
        let unique: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
    }
}
