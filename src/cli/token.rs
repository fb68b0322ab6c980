//! `phased token create|list|revoke`: the API tokens of `phased serve`.

use serde_json::json;

use crate::cli::store::{open_existing, open_store, store_error};
use crate::cli::{OutputFormat, StoreArgs, exit, usage_error};
use crate::reporter::{note_line, out_line};
use crate::serve::auth;
use crate::store::{Role, TokenRow};

#[derive(clap::Args, Debug)]
pub(super) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TokenCommand {
    /// Make a token and print it, once (only its hash is stored).
    Create {
        /// A name for it (who or what uses it: `ci`, `alice`).
        name: String,
        /// `read` looks, `deploy` also starts, cancels and resumes runs, `admin` everything.
        #[arg(long, value_enum, default_value_t = Role::Deploy)]
        role: Role,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The tokens: name, role, created, last used (never the tokens themselves).
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a token: requests with it are refused from now on.
    Revoke {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(super) fn token(args: TokenArgs) -> u8 {
    match args.command {
        TokenCommand::Create { name, role, store } => {
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return usage_error(
                    format!("`{name}` is not a token name"),
                    Some("use letters, digits, `-`, `_` and `.`"),
                );
            }
            let mut db = match open_store(&store) {
                Ok(db) => db,
                Err(code) => return code,
            };
            let token = auth::new_token();
            let row = TokenRow {
                name: name.clone(),
                role,
                hash: auth::hash(&token),
                created_at: crate::clock::now(),
                last_used_at: None,
            };
            match db.create_token(&row) {
                Ok(true) => {
                    out_line(format_args!("{token}"));
                    note_line(format_args!(
                        "token `{name}` ({}) created; it is shown this once: send it as `Authorization: Bearer <token>`",
                        role.as_str()
                    ));
                    exit::OK
                }
                Ok(false) => usage_error(
                    format!("a token named `{name}` exists already"),
                    Some("revoke it first (`phased token revoke NAME`), or pick another name"),
                ),
                Err(e) => store_error(&e, &store.db),
            }
        }
        TokenCommand::List { format, store } => {
            let rows = match open_existing(&store) {
                Ok(Some(db)) => match db.tokens() {
                    Ok(rows) => rows,
                    Err(e) => return store_error(&e, &store.db),
                },
                Ok(None) => Vec::new(),
                Err(code) => return code,
            };
            match format {
                OutputFormat::Json => {
                    let list: Vec<_> = rows
                        .iter()
                        .map(|t| json!({"name": t.name, "role": t.role, "created_at": t.created_at, "last_used_at": t.last_used_at}))
                        .collect();
                    out_line(format_args!("{}", serde_json::to_string_pretty(&list).expect("JSON")));
                }
                OutputFormat::Human if rows.is_empty() => {
                    note_line(format_args!("no tokens yet; make one with `phased token create NAME`"));
                }
                OutputFormat::Human => {
                    out_line(format_args!("{:<24}  {:<7}  {:<24}  last used", "name", "role", "created"));
                    for t in &rows {
                        let used = t.last_used_at.as_deref().unwrap_or("-");
                        out_line(format_args!("{:<24}  {:<7}  {:<24}  {used}", t.name, t.role.as_str(), t.created_at));
                    }
                }
            }
            exit::OK
        }
        TokenCommand::Revoke { name, store } => {
            let mut db = match open_existing(&store) {
                Ok(Some(db)) => db,
                Ok(None) => {
                    return usage_error(
                        format!("no token `{name}`: there is no database at `{}`", crate::store::shown(&store.db)),
                        None,
                    );
                }
                Err(code) => return code,
            };
            match db.revoke_token(&name) {
                Ok(true) => {
                    note_line(format_args!("token `{name}` revoked"));
                    exit::OK
                }
                Ok(false) => usage_error(format!("no token `{name}`"), Some("`phased token list` shows them")),
                Err(e) => store_error(&e, &store.db),
            }
        }
    }
}
