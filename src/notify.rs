//! Notifications (`notify:`, DESIGN.md section 11): when a run ends, one outbox row per
//! matching webhook is written in the same transaction as the run's outcome; then
//! they are delivered, retried with backoff, by this process or by whichever phased
//! process comes next (`phased notify`, the next run, `phased serve`) if it dies. A
//! failed delivery never changes the run. The URL is stored as written (it may name a
//! secret) and rendered only to send; the body holds what the run recorded (masked).
//! Where it may go is checked when it is sent (`guard`): an input can name its host.

use std::time::Duration;

use serde_json::{Value, json};

use crate::plan::Plan;
use crate::raw::{NotifyFormat, NotifyOn};
use crate::secrets::Secrets;
use crate::store::{NotificationRow, RunRow, Store, StoreError, Write};

mod guard;

pub(crate) use guard::{Allowed, Guard};

/// Attempts before a notification is given up (`failed`).
pub(crate) const MOST_ATTEMPTS: u32 = 8;

/// How long one delivery may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The wait before attempt `n + 1`, after `n` failed: 1 s, 2 s, 4 s, ... at most 5 min.
pub(crate) fn backoff(failed: u32) -> Duration {
    Duration::from_secs((1u64 << failed.saturating_sub(1).min(9)).min(300))
}

/// How a run ended, as recorded (its error and metadata masked).
pub(crate) struct Ending<'a> {
    pub(crate) outcome: NotifyOn,
    pub(crate) phase: &'a str,
    pub(crate) error: Option<&'a str>,
    pub(crate) metadata: &'a Value,
    pub(crate) at: &'a str,
}

/// The outbox rows of a run that ends so: one per `notify:` entry that asks for it.
pub(crate) fn outbox(plan: &Plan, run: &RunRow, ending: &Ending<'_>, now_ms: i64) -> Vec<Write> {
    let (outcome, at) = (ending.outcome, ending.at);
    plan.notify
        .iter()
        .filter(|n| n.on.contains(&outcome))
        .map(|n| {
            let body = body(n.format, run, ending);
            Write::Notification(NotificationRow {
                id: 0,
                run: run.id.clone(),
                outcome: outcome.as_str().into(),
                url_template: n.url.clone(),
                format: n.format.as_str().into(),
                body: body.to_string(),
                status: "pending".into(),
                attempts: 0,
                next_at: now_ms,
                last_error: None,
                created_at: at.into(),
                delivered_at: None,
            })
        })
        .collect()
}

fn body(format: NotifyFormat, run: &RunRow, ending: &Ending<'_>) -> Value {
    let Ending { outcome, phase, error, metadata, at } = *ending;
    let what = run.target.as_deref().unwrap_or(&run.pipeline);
    match format {
        NotifyFormat::Json => json!({
            "deployment": run.id, "pipeline": run.pipeline, "target": run.target, "outcome": outcome.as_str(),
            "phase": phase, "error": error, "failedNode": metadata.get("failedNode"), "metadata": metadata,
            "attempt": run.attempt, "finished_at": at,
        }),
        NotifyFormat::Slack => {
            let text = match outcome {
                NotifyOn::Succeeded => format!(":white_check_mark: *{what}* deployed: run `{}` is ACTIVE", run.id),
                NotifyOn::Failed => format!(
                    ":x: *{what}* FAILED at `{}`: {}\nrun `{}`; resume it with `phased resume {}`",
                    metadata.get("failedNode").and_then(Value::as_str).unwrap_or("?"),
                    error.and_then(|e| e.lines().next()).unwrap_or(""),
                    run.id,
                    run.id
                ),
                NotifyOn::Cancelled => format!(":double_vertical_bar: *{what}*: run `{}` was cancelled", run.id),
            };
            json!({"text": text})
        }
    }
}

/// The URL of a notification, rendered with the secrets and the run's inputs.
fn url(row: &NotificationRow, secrets: &Secrets, inputs: &Value) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let context = json!({
        "secrets": secrets.values(),
        "inputs": inputs,
        "deployment": {"id": row.run, "short_id": row.run.chars().take(8).collect::<String>()},
    });
    env.render_str(&row.url_template, minijinja::Value::from(minijinja::value::Serde(context)))
        .map_err(|e| format!("the URL does not render: {e}"))
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pass {
    pub(crate) delivered: usize,
    pub(crate) failed: usize,
}

/// Sends every notification due now (of one run, or of all), once each.
pub(crate) async fn deliver_due(
    store: &mut dyn Store,
    secrets: &Secrets,
    guard: &Guard,
    run: Option<&str>,
) -> Result<Pass, StoreError> {
    let now = crate::clock::now_ms();
    let due = store.due_notifications(run, now)?;
    let mut pass = Pass::default();
    if due.is_empty() {
        return Ok(pass);
    }
    let masker = secrets.masker();
    for row in due {
        let until = now + 3 * SEND_TIMEOUT.as_millis() as i64;
        if !store.claim_notification(row.id, now, until)? {
            continue;
        }
        let inputs = store.run(&row.run)?.map(|r| r.inputs).unwrap_or(Value::Null);
        let result = match url(&row, secrets, &inputs) {
            Ok(url) => guard.send(&url, &row.body, SEND_TIMEOUT).await,
            Err(message) => Err(guard::Failure { message, last: false }),
        };
        let at = crate::clock::now();
        match result {
            Ok(()) => {
                store.notification_attempt(row.id, true, None, None, &at)?;
                pass.delivered += 1;
            }
            Err(failure) => {
                let error = masker.mask(&failure.message).into_owned();
                let attempts = row.attempts + 1;
                // A refused address or a redirect stays so: it is failed at once.
                let next = (attempts < MOST_ATTEMPTS && !failure.last)
                    .then(|| crate::clock::now_ms() + backoff(attempts).as_millis() as i64);
                tracing::warn!(run = %row.run, attempt = attempts, error = %error, "A notification was not delivered.");
                store.notification_attempt(row.id, false, Some(&error), next, &at)?;
                pass.failed += 1;
            }
        }
    }
    Ok(pass)
}

/// Delivers the due notifications (of one run, or of all), retrying with backoff, for
/// at most `budget`; what is left stays pending for the next phased process.
pub(crate) async fn deliver(
    store: &mut dyn Store,
    secrets: &Secrets,
    guard: &Guard,
    run: Option<&str>,
    budget: Duration,
) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        deliver_due(store, secrets, guard, run).await?;
        let pending = match run {
            Some(run) => {
                store.notifications(run)?.into_iter().filter(|n| n.status == "pending").map(|n| n.next_at).min()
            }
            None => store.due_notifications(None, i64::MAX)?.into_iter().map(|n| n.next_at).min(),
        };
        let Some(next_at) = pending else { return Ok(()) };
        let wait = Duration::from_millis((next_at - crate::clock::now_ms()).max(0) as u64);
        if tokio::time::Instant::now() + wait > deadline {
            return Ok(());
        }
        tokio::time::sleep(wait).await;
    }
}
