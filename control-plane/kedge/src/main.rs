//! kedge: Kubernetes for fleets of small edge devices. This binary is the
//! control plane (`kedge server`) and its admin commands. It is thin: flags,
//! logging, and a call into the library crates that do the work.

mod control;
use kedge_agent::duration;
mod endpoint;
mod local_agent;
mod server;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "kedge",
    version,
    about = "Kubernetes for fleets of small edge devices"
)]
struct Cli {
    /// Turn on debug logs (RUST_LOG overrides).
    #[arg(long, global = true)]
    debug: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane.
    Server(Box<server::ServerArgs>),
    /// Manage join tokens.
    Token(token::TokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if cli.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| match cli.command {
            Command::Server(args) => runtime.block_on(server::run(*args)),
            Command::Token(args) => runtime.block_on(token::run(args)),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The chain of causes, one line, without a backtrace: these are
            // messages for the person at the terminal.
            eprintln!("kedge: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
