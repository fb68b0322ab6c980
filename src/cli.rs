//! The command line: argument definitions, and the dispatch to each command. This is
//! the only layer that prints and chooses exit codes.

mod complete;
mod failed;
mod init;
mod inputs;
mod load;
mod logs;
mod migrate;
mod notify;
mod plan;
mod prune;
mod releases;
mod run;
mod serve;
mod stats;
mod status;
mod store;
mod terminal;
mod token;
mod validate;
mod values;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub(crate) use failed::failed;

/// Exit codes, the same for every command.
pub mod exit {
    /// Success (valid; the deployment is ACTIVE).
    pub const OK: u8 = 0;
    /// The pipeline is invalid (`validate`), or the deployment FAILED.
    pub const FAILED: u8 = 1;
    /// Invalid pipeline or usage: bad flag, unreadable path, wrong input.
    pub const USAGE: u8 = 2;
    /// Environment problem: database unreadable, Docker unreachable.
    pub const ENVIRONMENT: u8 = 3;
    /// Interrupted by a signal; the run stays resumable.
    pub const INTERRUPTED: u8 = 130;
}

const AFTER_HELP: &str = "\
Exit codes: 0 done; 1 what was checked or run failed (validate found a problem, the
deployment FAILED, a `reject` policy refused it); 2 the command could not start (a bad
flag or input, an unknown run, a pipeline that does not compile); 3 the environment
failed (database, Docker), the run stays resumable; 130 stopped (Ctrl-C, cancel), resumable.

Environment: PHASED_DB (--db), PHASED_PIPELINES (--pipelines), PHASED_DURABILITY,
PHASED_SECRET_<NAME> (secrets.<name> in templates), PHASED_LOG (e.g. debug),
PHASED_ALLOW_PRIVATE_NOTIFY (--allow-private-notify).

Docs: README.md (quick start), docs/tutorial.md (your own deployment type),
docs/pipeline-format.md (the YAML format), docs/events.md (--format jsonl),
docs/troubleshooting.md.";

#[derive(Parser, Debug)]
#[command(
    name = "phased",
    version,
    about = "Declarative, resumable deployment pipelines",
    long_about = "Phased runs deployments described as YAML pipelines: a DAG of nodes, each reporting a \
                  phase and a share of the progress. It validates pipelines offline, shows what a run \
                  would do, runs them with checkpoints in SQLite and resumes interrupted runs.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Show what phased itself does on stderr (`-v` info, `-vv` debug; `PHASED_LOG` wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Say only what went wrong: no progress, no notes (the output a command exists for stays).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a starter deployment type (or a copy of a built-in one) that validates as written.
    Init(init::InitArgs),
    /// Check pipeline files without running anything; report every problem at once.
    #[command(after_help = "Exit codes: 0 valid, 1 invalid, 2 the command could not run (bad flag, unreadable path).")]
    Validate(validate::Args),
    /// Show what `run` would do: nodes in order, phases, progress, rendered parameters.
    Plan(plan::Args),
    /// Start a deployment; live progress; exit 0 ACTIVE, 1 FAILED, 130 interrupted.
    Run(run::RunArgs),
    /// Continue an interrupted or failed run at the node that did not finish.
    Resume(run::ResumeArgs),
    /// Show one run (phase, progress, nodes, metadata, history) or a table of runs.
    Status(status::StatusArgs),
    /// Stop a run; it can be resumed later.
    Cancel(status::CancelArgs),
    /// Print what a run's steps printed (every node, or one); `-f` follows until it ends.
    Logs(logs::LogsArgs),
    /// List a target's releases (its succeeded runs), newest first, and which one is live.
    Releases(releases::ReleasesArgs),
    /// Make an earlier release of a target live again, as a new run (the pipeline's `rollback:`).
    Rollback(run::RollbackArgs),
    /// Send the notifications still pending (a receiver that was down, a process that died first).
    Notify(notify::NotifyArgs),
    /// Per phase and node: runs, p50/p95 durations, success rates; what fails most and why.
    Stats(stats::StatsArgs),
    /// Forget old runs, their logs and work folders; never the live release or the ones kept for rollback.
    Prune(prune::PruneArgs),
    /// Deploy, then redeploy after every burst of changes under --path, until Ctrl-C.
    Watch(watch::WatchArgs),
    /// Serve the HTTP API and the live event streams on this database.
    Serve(serve::ServeArgs),
    /// Make, list and revoke the API tokens of `phased serve`.
    Token(token::TokenArgs),
    /// Copy a SQLite database (runs, history, checkpoints, events, tokens) into PostgreSQL.
    Migrate(migrate::MigrateArgs),
    /// Print the JSON Schema of the pipeline format (for editors).
    Schema,
    /// List the built-in actions with their parameters and outputs.
    Actions(ActionsArgs),
    /// Print a static completion script for a shell (`phased completions bash >
    /// ~/.local/share/bash-completion/completions/phased`); `source <(COMPLETE=bash phased)`
    /// also completes run ids, targets and pipeline names.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, as roff (`phased man | man -l -`).
    Man,
}

/// Where pipelines are looked up by name.
#[derive(clap::Args, Debug, Clone)]
pub struct CatalogArgs {
    /// Folder of pipeline files looked up by name (then the built-in catalog).
    #[arg(long, value_name = "DIR", default_value = "pipelines", env = "PHASED_PIPELINES")]
    pub pipelines: PathBuf,
}

/// Where runs are recorded.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// The database of runs: a SQLite file (created if missing), or a PostgreSQL
    /// database shared by several phased processes, `postgres://USER@HOST[:PORT]/NAME`
    /// (`?sslmode=require` for TLS, checked against `PGSSLROOTCERT` or the system's
    /// roots; a password in the URL is never shown). Node logs and work folders go beside the SQLite
    /// file, or in `PHASED_DATA_DIR` (default with PostgreSQL: `.phased`).
    #[arg(long, value_name = "PATH|URL", env = "PHASED_DB", default_value = ".phased/phased.db")]
    pub db: PathBuf,
    /// `normal` survives a killed process; `full` also survives power loss (one fsync per commit).
    #[arg(long, value_enum, env = "PHASED_DURABILITY", default_value_t = crate::store::Durability::Normal)]
    pub durability: crate::store::Durability,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagnosticFormat {
    Human,
    Json,
    /// GitHub Actions workflow commands (annotations on the pull request).
    Github,
    /// A SARIF 2.1.0 log, for code-scanning dashboards.
    Sarif,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Human,
    Json,
}

pub fn main() -> ExitCode {
    complete::answer_if_asked();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    crate::reporter::set_quiet(cli.quiet);
    crate::reporter::set_verbose(cli.verbose > 0);
    // Commands that run nodes (a server too) never die of a closed output.
    if !matches!(
        cli.command,
        Command::Run(_) | Command::Resume(_) | Command::Rollback(_) | Command::Watch(_) | Command::Serve(_)
    ) {
        crate::process::stop_on_closed_output();
    }
    let code = match cli.command {
        Command::Init(args) => init::init(args),
        Command::Validate(args) => validate::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Run(args) => run::run(args),
        Command::Resume(args) => run::resume(args),
        Command::Status(args) => status::status(args),
        Command::Cancel(args) => status::cancel(args),
        Command::Logs(args) => logs::logs(args),
        Command::Prune(args) => prune::prune(args),
        Command::Releases(args) => releases::releases_command(args),
        Command::Stats(args) => stats::stats(args),
        Command::Notify(args) => notify::notify(args),
        Command::Rollback(args) => run::rollback(args),
        Command::Serve(args) => serve::serve(args),
        Command::Token(args) => token::token(args),
        Command::Migrate(args) => migrate::migrate(args),
        Command::Watch(args) => watch::watch(args),
        Command::Schema => {
            println!("{}", crate::schema::pipeline_schema_json());
            exit::OK
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "phased", &mut std::io::stdout());
            exit::OK
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => {
                    use std::io::Write;
                    let _ = std::io::stdout().write_all(&page);
                    exit::OK
                }
                Err(e) => usage_error(format!("cannot render the manual page: {e}"), None),
            }
        }
        Command::Actions(args) => {
            match args.format {
                OutputFormat::Human => print_actions(),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&actions_json()).expect("JSON")),
            }
            exit::OK
        }
    };
    ExitCode::from(code)
}

/// Diagnostics of phased itself (not of pipelines) on stderr, filtered by `PHASED_LOG`
/// (else by `-v`; `warn` by default; `PHASED_LOG=debug` shows every scheduling step).
fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PHASED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colour only on a terminal, and never with NO_COLOR (https://no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

#[derive(clap::Args, Debug)]
struct ActionsArgs {
    /// `json`: each action's name, summary, parameter schema and outputs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
}

/// The registry as JSON: what an editor plugin or a dashboard needs to offer actions.
fn actions_json() -> serde_json::Value {
    let actions: Vec<serde_json::Value> = crate::action::ACTIONS
        .iter()
        .map(|action| {
            let outputs = match action.outputs {
                crate::action::Outputs::Fixed(names) => serde_json::json!(names),
                crate::action::Outputs::Any => serde_json::json!("any"),
            };
            serde_json::json!({
                "name": action.name, "summary": action.summary, "parameters": action.schema(), "outputs": outputs,
            })
        })
        .collect();
    serde_json::Value::Array(actions)
}

fn print_actions() {
    for action in crate::action::ACTIONS {
        println!("{:<20} {}", action.name, action.summary);
        let schema = action.schema();
        let required: Vec<&str> =
            schema["required"].as_array().map(|r| r.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                // Doc comments wrap; the listing keeps one line per parameter.
                let description =
                    prop["description"].as_str().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
                let mark = if required.contains(&name.as_str()) { " (required)" } else { "" };
                println!("    with.{name}{mark}: {description}");
            }
        }
        match action.outputs {
            crate::action::Outputs::Fixed([]) => {}
            crate::action::Outputs::Fixed(names) => println!("    outputs: {}", names.join(", ")),
            crate::action::Outputs::Any => println!("    outputs: any `key=value` the action reports"),
        }
    }
}

/// Whether to color output written to stdout.
pub(crate) fn color_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints an error about the command itself (not about a pipeline) to stderr.
pub(crate) fn usage_error(message: impl std::fmt::Display, help: Option<&str>) -> u8 {
    eprintln!("error: {message}");
    if let Some(help) = help {
        eprintln!("  help: {help}");
    }
    exit::USAGE
}

/// A `--wait`, `--timeout` or `--debounce` value: `10s`, `300ms`, `2m`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::duration::Duration::parse(text).map(|d| d.0)
}
