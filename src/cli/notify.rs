//! `phased notify`: sends the notifications still pending (a receiver that was down,
//! a process that died before sending), retrying with backoff for up to `--wait`.

use crate::cli::store::{open_existing, store_error};
use crate::cli::{StoreArgs, exit};
use crate::reporter::{err_line, note_line};

#[derive(clap::Args, Debug)]
pub(super) struct NotifyArgs {
    /// How long to keep retrying the ones that fail (they stay pending after it).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = super::serve::parse_duration)]
    wait: std::time::Duration,
    #[command(flatten)]
    store: StoreArgs,
}

pub(super) fn notify(args: NotifyArgs) -> u8 {
    let mut store = match open_existing(&args.store) {
        Ok(Some(store)) => store,
        Ok(None) => {
            note_line(format_args!(
                "nothing to send: there is no database at `{}`",
                crate::store::shown(&args.store.db)
            ));
            return exit::OK;
        }
        Err(code) => return code,
    };
    let secrets = crate::secrets::Secrets::from_env();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    let left = runtime.block_on(async {
        crate::notify::deliver(store.as_mut(), &secrets, None, args.wait).await?;
        store.due_notifications(None, i64::MAX)
    });
    match left {
        Ok(left) if left.is_empty() => {
            note_line(format_args!("every notification is sent"));
            exit::OK
        }
        Ok(left) => {
            for n in &left {
                err_line(format_args!(
                    "pending: the `{}` notification of run {} ({} attempt(s): {})",
                    n.outcome,
                    n.run,
                    n.attempts,
                    n.last_error.as_deref().unwrap_or("")
                ));
            }
            exit::FAILED
        }
        Err(e) => store_error(&e, &args.store.db),
    }
}
