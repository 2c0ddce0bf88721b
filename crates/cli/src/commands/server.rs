//! `gantry server` (run the controller, back up and restore its data directory) and
//! `gantry audit verify`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use gantry_server::server::{self, Config};

/// The data directory when none is given: relative to where the server is started.
const DEFAULT_DATA_DIR: &str = "gantry-data";

/// The address when none is given: loopback, where plain HTTP is allowed.
const DEFAULT_LISTEN: &str = "127.0.0.1:7700";

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    action: Option<ServerAction>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum ServerAction {
    /// Write a consistent copy of the database (safe while the server runs).
    Backup {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// The backup file to create; it must not exist.
        #[arg(long)]
        to: PathBuf,
    },
    /// Replace the data directory's database with a backup (the server must be stopped).
    Restore {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        #[arg(long)]
        from: PathBuf,
        /// The audit checkpoint file (default: beside the data directory).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Where the database, the audit key and the bootstrap token live.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The address to listen on. Plain HTTP is served on loopback only; any other address
    /// needs --tls-cert and --tls-key.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where signed audit checkpoints are appended (default: beside the data directory).
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// The organisation directory (topology, policy, pipeline files), re-applied on change.
    #[arg(long)]
    organisation: Option<PathBuf>,
    /// The supply home the controller builds with (keys, store, reviews, blocks) [default:
    /// $GANTRY_HOME]; without one the controller builds nothing.
    #[arg(long)]
    supply_home: Option<PathBuf>,
    /// How often each pipeline's source is polled for a new mainline head.
    #[arg(long, default_value = "3s")]
    poll_interval: gantry_model::Duration,
    /// A pipeline's trusted base, `PIPELINE=COMMIT` (or `PIPELINE=root`): the commit its first
    /// build's range starts after. Repeat for each pipeline.
    #[arg(long = "trusted-base", value_name = "PIPELINE=COMMIT")]
    trusted_bases: Vec<String>,
    /// Log lines as JSON objects (for collectors) or as text.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    action: AuditAction,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Recompute the audit chain and check it against every signed checkpoint.
    Verify {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// The checkpoint file (default: beside the data directory).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The base64 ed25519 public key that must have signed every checkpoint (default: the
        /// key of the first checkpoint).
        #[arg(long)]
        public_key: Option<String>,
    },
}

pub fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        None => run(args.run),
        Some(ServerAction::Backup { data_dir, to }) => {
            let connection =
                gantry_server::SqliteStore::open_read_only(&data_dir.join("gantry.db"))?;
            gantry_server::sqlite::backup(&connection, &to)?;
            eprintln!("backed up {} to {}", data_dir.display(), to.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(ServerAction::Restore { data_dir, from, checkpoints }) => {
            let checkpoints =
                checkpoints.unwrap_or_else(|| gantry_server::audit::default_checkpoints(&data_dir));
            let moved = gantry_server::server::restore(&data_dir, &from, &checkpoints)?;
            eprintln!("restored {} from {}", data_dir.display(), from.display());
            if let Some(moved) = moved {
                eprintln!(
                    "the audit checkpoints of the replaced history were kept in {}",
                    moved.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(gantry_server::tls::TlsFiles { cert, key }),
        _ => None,
    };
    if tls.is_none() && !server::plain_http_allowed(&args.listen) {
        bail!(
            "--listen {}: plain HTTP is served on loopback only; give --tls-cert and --tls-key \
             to serve HTTPS on this address, or listen on 127.0.0.1 or [::1]",
            args.listen
        );
    }
    // Read before anything opens the data directory: a bad certificate changes nothing.
    let tls_config = tls.as_ref().map(|files| files.server_config()).transpose()?;
    init_logging(args.log_format);
    let mut config = Config::new(args.data_dir.clone(), args.listen);
    config.tls = tls;
    if let Some(checkpoints) = args.checkpoints {
        config.checkpoints = checkpoints;
    }
    config.organisation = args.organisation;
    if let Some(home) = gantry_supply::home::configured_root(args.supply_home) {
        let mut builds = gantry_server::builds::BuildConfig::new(home);
        builds.poll_interval =
            std::time::Duration::from_secs(args.poll_interval.as_seconds().max(1));
        for entry in &args.trusted_bases {
            let Some((pipeline, commit)) = entry.split_once('=') else {
                bail!("--trusted-base {entry:?}: write PIPELINE=COMMIT (or PIPELINE=root)");
            };
            builds.trusted_bases.insert(pipeline.to_string(), commit.to_string());
        }
        config.builds = Some(builds);
    } else if !args.trusted_bases.is_empty() {
        bail!("--trusted-base needs a supply home to build with: --supply-home or $GANTRY_HOME");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (controller, opened) = server::open(&config, gantry_model::Timestamp::now())?;
        if let Some(path) = &opened.bootstrap_token {
            eprintln!(
                "bootstrap admin token written to {} (readable by its owner only)",
                path.display()
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let address = listener.local_addr()?;
        let rounds = {
            let (controller, organisation) = (controller.clone(), config.organisation.clone());
            tokio::task::spawn_blocking(move || server::start_rounds(controller, organisation))
                .await??
        };
        // Scraping and alarm evaluation run on a thread of their own, beside the round loop.
        let alarms = gantry_server::alarms::start(controller.clone(), Default::default())?;
        // The one line on stdout: scripts and tests read the bound address from it.
        let scheme = if tls_config.is_some() { "https" } else { "http" };
        println!("gantry server listening on {scheme}://{address} (epoch {})", controller.epoch());
        let shutdown = async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        match tls_config {
            Some(tls) => server::serve_tls(controller, listener, tls, rounds, shutdown).await?,
            None => server::serve(controller, listener, rounds, shutdown).await?,
        }
        tokio::task::spawn_blocking(move || drop(alarms)).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let AuditAction::Verify { data_dir, checkpoints, public_key } = args.action;
    match gantry_server::audit::verify_data_dir(
        &data_dir,
        checkpoints.as_deref(),
        public_key.as_deref(),
    )? {
        Ok(verified) => {
            println!(
                "audit log verifies: {} records, {} checkpoints, signed through record {}",
                verified.records, verified.checkpoints, verified.checkpointed_through
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(tampered) => {
            eprintln!("error: the audit log does not verify: {tampered}");
            Ok(ExitCode::FAILURE)
        }
    }
}
