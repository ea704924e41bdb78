//! flagctl: the command line for flagd, for people and deploy scripts.
//!
//! It talks to the admin API of one flagd-server (`FLAGD_URL`, `FLAGD_TOKEN`), prints
//! tables or the server's JSON, and reports every outcome through a documented exit code
//! (see [`exit`]). Writes need `--env`; `--wait` returns once a change is applied;
//! `ramp` rolls a flag out step by step behind a health check.

mod api;
mod audit;
mod cli;
mod duration;
mod exit;
mod flags;
mod output;
mod ramp;
mod replicas;
mod segments;
mod session;
mod signals;
mod tokens;
mod transfer;
mod wait;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::Failure;
use crate::session::Session;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own codes: 0 for --help/--version, 2 for usage errors.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&Failure::Server(format!("cannot start the async runtime: {e}; check system limits"))),
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    }
}

fn fail(failure: &Failure) -> ExitCode {
    output::note(&format!("flagctl: {failure}"));
    ExitCode::from(failure.exit_code())
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let session = Session::new(cli)?;
    let s = &session;
    match &cli.command {
        Command::List => flags::list(s).await,
        Command::Get { key } => flags::get(s, key).await,
        Command::Create(args) => flags::create(s, args).await,
        Command::Enable(args) => flags::enable(s, args).await,
        Command::Disable(args) => flags::disable(s, args).await,
        Command::Rollout(args) => flags::rollout(s, args).await,
        Command::Allow(args) => flags::companies(s, "allow", args).await,
        Command::Deny(args) => flags::companies(s, "deny", args).await,
        Command::Segment(command) => segments::run(s, command).await,
        Command::Promote(args) => flags::promote(s, args).await,
        Command::Eval(args) => flags::eval(s, args).await,
        Command::Audit(args) => audit::run(s, args).await,
        Command::Export(args) => transfer::export(s, args).await,
        Command::Import(args) => transfer::import(s, args).await,
        Command::Token(command) => tokens::run(s, command).await,
        Command::Replica(command) => replicas::run(s, command).await,
        Command::Environments => flags::environments(s).await,
        Command::Wait { seq } => wait::command(s, *seq).await,
        Command::Ramp(args) => ramp::run(s, args).await,
    }
}
