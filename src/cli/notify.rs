//! `phased notify`: sends the notifications still pending (a receiver that was down,
//! a process that died before sending): each at most `--attempts` times, after the
//! backoff recorded in the outbox, waiting at most `--wait` for one to come due. A
//! receiver that is down holds it for seconds, never for a minute.

use crate::cli::store::{open_existing, store_error};
use crate::cli::{StoreArgs, exit};
use crate::reporter::{err_line, note_line};

#[derive(clap::Args, Debug)]
pub(super) struct NotifyArgs {
    /// How many times each pending notification is tried by this command (then it
    /// stays pending, its backoff recorded, for the next `phased notify` or `phased serve`).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    attempts: u32,
    /// The longest it waits for a notification's backoff to end (one due later stays
    /// pending).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::parse_duration)]
    wait: std::time::Duration,
    #[command(flatten)]
    targets: NotifyTargets,
    #[command(flatten)]
    store: StoreArgs,
}

/// Where notifications may go: public addresses only, unless the operator says more
/// (every command that sends them: `run`, `resume`, `rollback`, `watch`, `notify`, `serve`).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct NotifyTargets {
    /// Send notifications to loopback, link-local and private addresses too (refused by
    /// default: a `notify:` URL, or an input in it, could reach services on this host
    /// or its network).
    #[arg(long, env = "PHASED_ALLOW_PRIVATE_NOTIFY", value_parser = clap::builder::BoolishValueParser::new())]
    allow_private_notify: bool,
    /// A host (with a port: only that port) notifications may reach at any address, a
    /// private one included; repeat for several.
    #[arg(long = "notify-allow", value_name = "HOST[:PORT]")]
    notify_allow: Vec<crate::notify::Allowed>,
}

impl NotifyTargets {
    pub(crate) fn guard(&self) -> crate::notify::Guard {
        crate::notify::Guard { allow_private: self.allow_private_notify, allow: self.notify_allow.clone() }
    }
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
    let (guard, sending) = (args.targets.guard(), crate::notify::Sending::PATIENT);
    let left = crate::app::block_on(async {
        let given_up =
            crate::notify::deliver(store.as_mut(), &secrets, &guard, None, args.wait, args.attempts, sending).await?;
        Ok((given_up, store.due_notifications(None, i64::MAX)?))
    });
    match left {
        Ok((given_up, left)) if left.is_empty() && given_up.is_empty() => {
            note_line(format_args!("every notification is sent"));
            exit::OK
        }
        Ok((given_up, left)) => {
            for n in &given_up {
                err_line(format_args!("failed: {}", crate::notify::undelivered_line(n, "")));
            }
            let now = crate::clock::now_ms();
            for n in &left {
                let next = std::time::Duration::from_secs(((n.next_at - now).max(0) as u64).div_ceil(1000));
                err_line(format_args!(
                    "pending: the `{}` notification of run {} ({} attempt(s): {}); next attempt in {}",
                    n.outcome,
                    n.run,
                    n.attempts,
                    n.last_error.as_deref().unwrap_or("not tried yet"),
                    humantime::format_duration(next)
                ));
            }
            exit::FAILED
        }
        Err(e) => store_error(&e, &args.store.db),
    }
}
