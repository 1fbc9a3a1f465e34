//! The daemon from command line to shutdown: load and validate the mode
//! plugin, parse the rest of the command line against its options,
//! supervise it, serve HTTP, and stop cleanly on SIGINT/SIGTERM.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{self, EXIT_USAGE};
use crate::config::{self, Config};
use crate::plugin::{self, Bounds, ConfiguredPlugin, PluginEngine, PluginRuntime};
use crate::spec_store::SpecStore;

/// Exit code when the daemon cannot start for a reason other than usage.
pub const EXIT_FAILURE: i32 = 1;

/// How long plugins get to stop after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Run the daemon with these arguments (program name first); the process
/// exit code.
pub async fn main(args: Vec<OsString>) -> i32 {
    let early_logs = crate::logging::early();
    let peek = cli::peek(&args);
    let mode_path = match config::mode_plugin_path(&peek) {
        Ok(path) => path,
        Err(e) => {
            // Without a plugin, --help and --version still work, and a bad
            // daemon flag is reported before the missing plugin.
            if let Err(clap_error) = cli::command(None).try_get_matches_from(&args) {
                let _ = clap_error.print();
                return clap_error.exit_code();
            }
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let specs = Arc::new(SpecStore::default());
    let cache_dir = match (&peek.plugin_cache_dir, peek.no_plugin_cache) {
        (_, true) => None,
        (Some(dir), false) => Some(dir.into()),
        (None, false) => plugin::default_cache_dir(),
    };
    let runtime =
        match PluginEngine::new(cache_dir).and_then(|e| PluginRuntime::new(e, Bounds::default())) {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("error: cannot set up the plugin runtime: {e:#}");
                return EXIT_FAILURE;
            }
        };
    let loaded = match runtime
        .load_config_source(&mode_path, specs.subscribe())
        .await
    {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {}: {e}", mode_path.display());
            return EXIT_USAGE;
        }
    };
    if let Some(name) = cli::colliding_option(&loaded.info) {
        eprintln!(
            "error: {}: plugin option --{name} collides with a daemon option",
            mode_path.display()
        );
        return EXIT_USAGE;
    }
    let config = match Config::parse(&args, mode_path.clone(), &loaded.info) {
        Ok(config) => config,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let configured = match loaded.configure(&config.mode.options).await {
        Ok(configured) => configured,
        Err(e) => {
            eprintln!("error: {}: {e}", mode_path.display());
            return EXIT_USAGE;
        }
    };
    if let Err(e) = crate::logging::init(&config.log, config.verbose) {
        eprintln!("error: cannot open the log file: {e}");
        return EXIT_USAGE;
    }
    drop(early_logs);
    match run(config, configured, specs).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// Serve until SIGINT or SIGTERM.
async fn run(config: Config, mode: ConfiguredPlugin, specs: Arc<SpecStore>) -> anyhow::Result<()> {
    use anyhow::Context;
    let listen = format!("{}:{}", config.listen.host, config.listen.port);
    let listener = TcpListener::bind((config.listen.host.as_str(), config.listen.port))
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        plugin = %mode.info.name,
        file = %mode.path.display(),
        listen,
        "vpcrouter started"
    );
    let (stop, shutdown) = watch::channel(false);
    let source = plugin::spawn(mode, specs, shutdown.clone());
    let app = crate::http::router(&[&source]);
    let mut http_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });
    let signal = shutdown_signal().await;
    tracing::info!(signal, "shutting down");
    let _ = stop.send(true);
    let stopped = async {
        source.join().await;
        let _ = server.await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, stopped).await.is_err() {
        tracing::warn!("plugins did not stop within {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
