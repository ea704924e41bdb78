//! The flagd-server binary: parse options, set up logging, open the store, serve.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use flagd_server::config::{Config, LogFormat};
use flagd_server::replication::ReplicaOptions;
use flagd_server::service::{Service, Startup};
use flagd_server::snapshot_cache::CacheFile;
use tracing_subscriber::EnvFilter;

// mimalloc rather than the system allocator: a request allocates a few dozen small blocks
// (headers, body, context, answer), and glibc's malloc and free were about a sixth of the
// instructions a request costs (benches/README.md, "Server load").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let config = Config::parse();
    init_tracing(config.log_format);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("flagd-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn announce(startup: Startup) {
    if let Some(token) = startup.generated_admin_token {
        println!("Generated an admin token (shown once, store it now):\n\n    {token}\n");
    }
}

/// After a start from the snapshot cache: retries the database every second, then
/// finishes starting from it (writes work again, the cache is no longer served).
async fn reconnect(service: Arc<Service>, admin_token: Option<String>) {
    loop {
        tokio::time::sleep(RECONNECT_EVERY).await;
        if service.store().prepare().await.is_err() {
            continue;
        }
        match service.finish_start(admin_token.as_deref()).await {
            Ok(startup) => {
                tracing::info!("the database answers: serving from it, writes enabled");
                announce(startup);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e.for_operator(), "the database answers but loading from it failed; retrying");
            }
        }
    }
}

const RECONNECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a stopping server tries to remove itself from the cluster view.
const LEAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colour codes only for a person at a terminal: in a file or a journal they are noise,
    // and they break a plain `grep ' ERROR '`.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Two runtimes: the default one answers HTTP and evaluates, the control plane's runs
/// everything else, `--control-nice` levels lower (see `flagd_server::control`).
fn run(config: Config) -> Result<(), BoxError> {
    let control = flagd_server::control::runtime(config.control_nice)?;
    let serving = tokio::runtime::Runtime::new()?;
    let served = serving.block_on(serve(config, control.handle().clone()));
    control.shutdown_timeout(LEAVE_TIMEOUT);
    served
}

/// Opens the store and starts the service; run on the control plane, which the service
/// then keeps as its own.
async fn start(config: Config) -> Result<Arc<Service>, BoxError> {
    let store = flagd_server::store::open(&config.database_url)?;
    Ok(match (store.prepare().await, &config.snapshot_cache) {
        (Ok(()), _) => {
            let (service, startup) =
                Service::start(store, config.admin_token.as_deref()).await.map_err(|e| e.for_operator())?;
            announce(startup);
            service
        }
        (Err(e), Some(path)) if path.exists() => {
            let cache = CacheFile::read(path)?;
            tracing::warn!(error = %e, cache = %path.display(), seq = cache.seq,
                "the database is unreachable: serving the snapshot cache, read-only, until it answers");
            let service = Service::start_from_cache(store, cache)?;
            tokio::spawn(reconnect(Arc::clone(&service), config.admin_token.clone()));
            service
        }
        (Err(e), _) => return Err(e.into()),
    })
}

async fn serve(config: Config, control: tokio::runtime::Handle) -> Result<(), BoxError> {
    let service = control.spawn(start(config.clone())).await??;
    service.set_import_limit(usize::from(config.max_import_mib) * 1024 * 1024);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    let options = ReplicaOptions {
        sync_interval: config.sync_interval,
        address: address.to_string(),
        snapshot_cache: config.snapshot_cache.clone(),
        memory: config.replica_memory,
    };
    let replica = flagd_server::replication::spawn(Arc::clone(&service), options);
    tracing::info!(listen = %address, database = %redact(&config.database_url), replica = service.id(), "flagd-server ready");
    let http = flagd_server::HttpOptions { cors_origins: config.cors_origins() };
    if !http.cors_origins.is_empty() {
        let origins: Vec<String> = http.cors_origins.iter().map(ToString::to_string).collect();
        tracing::info!(origins = %origins.join(", "), "OFREP answers browsers on these origins");
    }
    flagd_server::run(listener, Arc::clone(&service), &http, shutdown_signal()).await?;
    // The cache loop stopped when the server began to stop; a write acknowledged while the
    // requests drained is in the database, and must be in the cache a boot without the
    // database would serve.
    if let Some(path) = &config.snapshot_cache {
        flagd_server::replication::write_cache_at_exit(&service, path).await;
    }
    // Leave the cluster view before exiting, unless the database does not answer.
    if tokio::time::timeout(LEAVE_TIMEOUT, replica).await.is_err() {
        tracing::warn!("could not leave the cluster view in time; it drops out by itself");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
