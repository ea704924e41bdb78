//! The command line: global options and one subcommand per operation.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES_HELP;
use crate::output::Format;

const ABOUT: &str = "The command line for flagd feature flags: people and deploy scripts.";

const LONG_ABOUT: &str = "\
The command line for flagd feature flags: people and deploy scripts.

Connects to FLAGD_URL (default http://127.0.0.1:8013) with the token in FLAGD_TOKEN;
--url and --token override them.

Every command that changes what an environment serves needs --env ENV, so nobody
changes production by accident; reads without --env show every environment.
(`create` makes a flag that is disabled everywhere and takes no --env; `token create`
takes --env for an evaluate token, the environment it evaluates in, and refuses one for
read and admin tokens; `token list`, `token revoke`, `environments` and `wait` cover
every environment and refuse --env; `promote` names its target with --to.)

Output is a table for people; --output json prints the server's JSON for scripts.
--wait makes a write return only once every replica in the cluster view serves the change.";

/// Where flagd-server listens by default; also what an empty `FLAGD_URL` means.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8013";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(name = "flagctl", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// The flagd server.
    #[arg(long, env = "FLAGD_URL", default_value = DEFAULT_URL, global = true)]
    pub url: String,
    /// The API token (read role for reads, admin for writes).
    #[arg(long, env = "FLAGD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A PEM file of certificate authorities to trust besides the system's, for an https://
    /// FLAGD_URL whose certificate a private authority signed.
    #[arg(long, env = "FLAGD_CA_CERT", global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// The environment (required for writes; reads without it show every environment).
    #[arg(long, global = true, value_name = "ENV")]
    pub env: Option<String>,
    /// `table` for people, `json` for scripts (the server's JSON).
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// How long one request may take. The default outlasts the server's own lock waits
    /// (25 s each), so that a write held up there gets the server's answer.
    #[arg(long, global = true, default_value = "60s", value_parser = crate::duration::positive, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// How long --wait (and `wait`) may take before giving up with exit code 5.
    #[arg(long, global = true, default_value = "30s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub wait_timeout: Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List flags and their state in each environment (or in --env).
    List,
    /// Show a flag: its definition and states, or with --env its whole configuration.
    Get {
        /// Flag key.
        key: String,
    },
    /// Create a flag; it starts DISABLED in every environment.
    Create(CreateArgs),
    /// Enable a flag in --env: its rules and rollout apply.
    Enable(EnableArgs),
    /// Disable a flag in --env (the kill switch): everyone gets the off variant.
    Disable(DisableArgs),
    /// Set the share of companies that get the on variant in --env (or explicit weights).
    Rollout(RolloutArgs),
    /// Add companies to the allow list in --env (they get the on variant); --remove takes them off.
    Allow(CompanyArgs),
    /// Add companies to the deny list in --env (they get the off variant); --remove takes them off.
    Deny(CompanyArgs),
    /// Segments: named cohorts of companies, per environment.
    #[command(subcommand)]
    Segment(SegmentCommand),
    /// Copy a flag's configuration from one environment to another.
    Promote(PromoteArgs),
    /// Evaluate a flag for a company: prints value, variant and reason.
    Eval(EvalArgs),
    /// The audit log, newest first.
    Audit(AuditArgs),
    /// Print --env as a file to import (`flagctl export --env staging > flags.json`).
    Export(ExportArgs),
    /// Import a flagd (or flagctl export) file into --env; prints the changes.
    Import(ImportArgs),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The replicas every --wait waits on: list them, or forget one gone for good.
    #[command(subcommand)]
    Replica(ReplicaCommand),
    /// List environments.
    Environments,
    /// Wait until change SEQ (a write's `version`) is applied; a SEQ no write has reached
    /// yet is not found (exit 4).
    Wait {
        /// The change sequence number.
        #[arg(value_parser = change_seq)]
        seq: i64,
    },
    /// A guarded gradual rollout: raise the percentage step by step, run a health check
    /// after each step, and disable the flag when a check fails.
    #[command(long_about = crate::ramp::LONG_ABOUT)]
    Ramp(RampArgs),
}

/// `--reason` and `--wait`, shared by writes.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Why, for the audit log.
    #[arg(long, value_parser = reason)]
    pub reason: Option<String>,
    /// Return only when every replica in the cluster view serves the change (see --wait-timeout).
    #[arg(long)]
    pub wait: bool,
}

/// The type of a new flag's variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlagType {
    /// true/false (default variants `on`/`off`).
    Bool,
    /// Strings.
    String,
    /// Numbers.
    Number,
    /// JSON objects.
    Object,
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Flag key: `[a-z0-9][a-z0-9_.-]*`.
    pub key: String,
    /// Variant type; inferred from the --variant values when left out (bool without variants).
    #[arg(long = "type", value_enum)]
    pub flag_type: Option<FlagType>,
    /// A variant, `name=value` (repeat); a bool flag without variants gets on=true, off=false.
    #[arg(long = "variant", value_name = "NAME=VALUE")]
    pub variants: Vec<String>,
    /// The variant served when disabled or denied (default: the one named `off`).
    #[arg(long)]
    pub off_variant: Option<String>,
    /// The variant served to allowed companies and rollouts (default: the one named `on`).
    #[arg(long)]
    pub on_variant: Option<String>,
    /// What the flag is for.
    #[arg(long)]
    pub description: Option<String>,
    /// Who to ask about it.
    #[arg(long)]
    pub owner: Option<String>,
    /// A label (repeat).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

/// `enable`.
#[derive(Debug, Args)]
pub struct EnableArgs {
    /// Flag key.
    pub key: String,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// `disable`: the reason is required, a kill switch must say why.
#[derive(Debug, Args)]
pub struct DisableArgs {
    /// Flag key.
    pub key: String,
    /// Why, for the audit log (required).
    #[arg(long, value_parser = reason)]
    pub reason: String,
    /// Return only when every replica in the cluster view serves the change (see --wait-timeout).
    #[arg(long)]
    pub wait: bool,
}

/// `rollout`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Flag key.
    pub key: String,
    /// Percent of companies that get the on variant (0 to 100, up to three decimals).
    #[arg(required_unless_present = "weights", conflicts_with = "weights", value_parser = crate::flags::percent)]
    pub percentage: Option<f64>,
    /// Explicit weights instead, in bucket order: `--weight on=10 --weight off=90`.
    #[arg(long = "weight", value_name = "VARIANT=PERCENT")]
    pub weights: Vec<String>,
    /// Context attribute to bucket by (e.g. userId). Without it the rollout keeps the
    /// bucketing of the rollout it replaces (companyId for a new one), so that raising the
    /// percentage keeps everyone who had the feature; `--bucket-by companyId` goes back to
    /// the default.
    #[arg(long)]
    pub bucket_by: Option<String>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// `allow` and `deny`.
#[derive(Debug, Args)]
pub struct CompanyArgs {
    /// Flag key.
    pub key: String,
    /// Company ids.
    #[arg(required = true, value_name = "COMPANY")]
    pub companies: Vec<String>,
    /// Take the companies off the list instead.
    #[arg(long)]
    pub remove: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// `segment …`.
#[derive(Debug, Subcommand)]
pub enum SegmentCommand {
    /// List the segments of --env (or of every environment).
    List,
    /// Show a segment of --env (or wherever it exists).
    Get {
        /// Segment key.
        key: String,
    },
    /// Create a segment of --env, or change the parts of one that the options name.
    ///
    /// On an existing segment, --company replaces its companies, --condition its conditions
    /// and --description its description; a part no option names is kept as it is. With
    /// none of them (and no --file) an existing segment is left unchanged. --file replaces
    /// the whole segment with the file's: what the file leaves out is removed, and it takes
    /// none of --company, --condition, --description.
    Set(SegmentSetArgs),
    /// Delete a segment of --env (no flag may use it).
    Delete {
        /// Segment key.
        key: String,
    },
}

/// `segment set`.
#[derive(Debug, Args)]
pub struct SegmentSetArgs {
    /// Segment key.
    pub key: String,
    /// A member company (repeat); together they replace an existing segment's companies.
    #[arg(long = "company", value_name = "ID")]
    pub companies: Vec<String>,
    /// An attribute condition, `ATTRIBUTE OP VALUE` (e.g. 'plan in pro,enterprise'); repeat.
    /// Together they replace an existing segment's conditions.
    #[arg(long = "condition", value_name = "'ATTR OP VALUE'")]
    pub conditions: Vec<String>,
    /// What the cohort is; replaces an existing segment's description.
    #[arg(long)]
    pub description: Option<String>,
    /// Read the whole segment (JSON) from this file instead (`-` for stdin); it replaces an
    /// existing segment entirely, so this is how to empty its companies or conditions.
    #[arg(long, conflicts_with_all = ["companies", "conditions", "description"])]
    pub file: Option<PathBuf>,
    /// Return only when every replica in the cluster view serves the change (see --wait-timeout).
    #[arg(long)]
    pub wait: bool,
}

/// `promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Flag key.
    pub key: String,
    /// The environment to copy from.
    #[arg(long)]
    pub from: String,
    /// The environment to copy to.
    #[arg(long)]
    pub to: String,
    /// Copy the enabled/disabled state too (by default the target keeps its own).
    #[arg(long)]
    pub include_state: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Flag key.
    pub key: String,
    /// The company to evaluate for.
    #[arg(long)]
    pub company: String,
    /// A context attribute, `name=value` (repeat); numbers, true/false and JSON stay typed.
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    pub attrs: Vec<String>,
    /// The context's targetingKey (e.g. a user id).
    #[arg(long)]
    pub targeting_key: Option<String>,
}

/// `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this flag.
    pub key: Option<String>,
    /// Only events since: a duration ago (`1h`, `7d`), an RFC 3339 time or Unix milliseconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Only this actor (a token's name).
    #[arg(long)]
    pub actor: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file (`-` for stdin): a flagd file or a `flagctl export`.
    pub file: PathBuf,
    /// Show the changes without making them.
    #[arg(long)]
    pub dry_run: bool,
    /// Make --env exactly the file: flags it does not mention get a new flag's configuration
    /// there (disabled, no allow or deny list, no rules, no rollout), other segments are
    /// deleted.
    #[arg(long)]
    pub replace: bool,
    /// Why, for the audit log.
    #[arg(long, value_parser = reason)]
    pub reason: Option<String>,
    /// Return only when every replica in the cluster view serves the import (see --wait-timeout).
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
}

/// `token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its value is shown once.
    Create {
        /// A label; the audit log names writers by it.
        name: String,
        /// `read`, `admin`, or `evaluate` (bound to --env, for OFREP clients).
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id (see `flagctl token list`).
        id: String,
    },
}

/// `flagctl replica`.
#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// List the replicas in the cluster view: each one's applied change and when it was
    /// last heard from (a silent one may be killed, or cut off from the database and still
    /// serving what it had; --wait fails naming it until it is back or forgotten).
    List,
    /// Take a replica known to be gone for good (killed, its host lost) out of the cluster
    /// view, so that waits stop failing on it before the server's --replica-memory forgets
    /// it. A running one (heard from within 3 s) is refused (exit 3).
    Forget {
        /// The replica's id (see `flagctl replica list`).
        id: String,
    },
}

/// `flagctl export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// `flagd`: a flagd flag-definition file, for flagd and its tools (company lists become
    /// JSON Logic). flagd cannot express a `matches` condition (regular expression) nor
    /// `before`/`after` on an attribute (on `$now` it can), nor a fallthrough that is
    /// targeting on a flag with an off variant: while the environment has one, the flagd
    /// export is refused as a whole (exit 2, naming each).
    /// `native`: flagd-server's own format, which always works, keeps lists as lists and
    /// imports back exactly: the one for backups and for copying between environments.
    #[arg(long, value_enum, default_value_t = ExportFormat::Flagd)]
    pub format: ExportFormat,
}

/// The formats `flagctl export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A flagd flag-definition file.
    Flagd,
    /// flagd-server's own format.
    Native,
}

impl ExportFormat {
    /// The name the server's `format` query parameter takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flagd => "flagd",
            Self::Native => "native",
        }
    }
}

/// Token roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Evaluation in one environment (OFREP).
    Evaluate,
    /// Reads of the admin API.
    Read,
    /// Everything.
    Admin,
}

impl Role {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evaluate => "evaluate",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

/// `ramp`.
#[derive(Debug, Args)]
pub struct RampArgs {
    /// Flag key.
    pub key: String,
    /// Percentages in increasing order, e.g. 1,5,25,50,100.
    #[arg(long, value_delimiter = ',', required = true, value_parser = crate::flags::percent)]
    pub steps: Vec<f64>,
    /// How long to wait after each step before its health check (e.g. 10m; 0s in tests).
    #[arg(long, value_parser = crate::duration::parse, value_name = "DURATION")]
    pub every: Duration,
    /// Health check, run with `sh -c` after each step; a non-zero exit disables the flag.
    /// (`--check true` ramps on the timer alone.)
    #[arg(long, value_name = "CMD")]
    pub check: String,
    /// Enable the flag after the first step when it is disabled (otherwise ramp refuses).
    #[arg(long)]
    pub enable_if_disabled: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Added to each step's audit reason.
    #[arg(long, value_parser = reason)]
    pub reason: Option<String>,
}

/// An audit reason (clap value parser): a blank one would be stored and explain nothing,
/// so it is refused before anything is sent.
fn reason(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("the reason is blank: say why, for the audit log; nothing was changed".to_owned());
    }
    Ok(text.to_owned())
}

/// A change sequence number (clap value parser): writes are numbered from 1, so zero or a
/// negative number can only be a typo, which waiting would report as applied.
fn change_seq(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(seq) if seq >= 1 => Ok(seq),
        _ => Err("write a change sequence number, 1 or more: the `version` a write answered with".to_owned()),
    }
}
