//! The `failover-dns` binary: parse the command line, start logging, call the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

mod cli;

use cli::{Cli, Command, CommandError, LogFormat};
use tracing_subscriber::EnvFilter;

/// jemalloc, with its background thread purging freed memory (the crate's `background_threads`
/// feature: without the thread, freed pages are purged only when the allocator is next used, and
/// an idle server would keep them): a reload holds two configurations for a moment, and glibc's
/// malloc kept the memory of the replaced one for the life of the process
/// (`scripts/reload-storm.sh` measures it).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let arguments: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(code) = cli::docs::run_if_asked(&arguments) {
        return code;
    }
    let cli = cli::parse();
    let workers = match &cli.command {
        None => cli.serve.workers,
        Some(Command::Serve(args)) => args.workers,
        Some(_) => Some(1),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = workers {
        runtime.worker_threads(usize::from(workers));
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => {
            eprintln!("failover-dns: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    // Serving logs state changes at info; the one-shot commands only warn.
    let serving = matches!(cli.command, None | Some(Command::Serve(_)));
    let default_filter = if serving { "info" } else { "warn" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli::run(cli).await {
        Ok(code) => code,
        // A reader that went away (`failover-dns status | head`) is not an error.
        Err(CommandError::Io(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("failover-dns: {error}");
            ExitCode::FAILURE
        }
    }
}
