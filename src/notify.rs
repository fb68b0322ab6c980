//! Notifications (`notify:`, DESIGN.md section 11): when a run ends, one outbox row per
//! matching webhook is written in the same transaction as the run's outcome; then the
//! command that ran it tries each once, quickly (it never waits on a receiver that is
//! down), and the retries, after the backoff recorded in the outbox, are those of
//! `phased notify`, `phased serve` and the next run (which also send what a process
//! that died left). A failed delivery never changes the run. The URL is stored as
//! written (it may name a secret) and rendered only to send; the body holds what the
//! run recorded (masked).
//! Where it may go is checked when it is sent (`guard`): an input can name its host.

use std::time::Duration;

use serde_json::{Value, json};

use crate::model::{NotifyFormat, NotifyOn};
use crate::plan::Plan;
use crate::secrets::Secrets;
use crate::store::{NotificationRow, RunRow, Store, StoreError, Write};

mod guard;

pub(crate) use guard::{Allowed, Guard};

/// Attempts before a notification is given up (`failed`).
pub(crate) const MOST_ATTEMPTS: u32 = 8;

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

/// How one attempt is made: how long connecting, and the whole delivery, may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sending {
    pub(crate) connect: Duration,
    pub(crate) total: Duration,
}

impl Sending {
    /// `phased notify`, `phased serve` and `watch`: a receiver may be slow to answer.
    pub(crate) const PATIENT: Sending = Sending { connect: Duration::from_secs(3), total: Duration::from_secs(10) };
    /// The command that ran the run (`run`, `resume`, `rollback`): one quick attempt, so
    /// that a receiver that is down never holds it; the retries are the outbox's.
    pub(crate) const QUICK: Sending = Sending { connect: Duration::from_secs(1), total: Duration::from_secs(2) };
}

/// What one pass did.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pass {
    pub(crate) delivered: usize,
    /// The notifications it tried (by id), delivered or not.
    pub(crate) attempted: Vec<i64>,
    /// Those that failed, as they stand after the attempt (its count, error, status).
    pub(crate) failed: Vec<NotificationRow>,
}

/// Sends every notification due now (of one run, or of all), once each.
pub(crate) async fn deliver_due(
    store: &mut dyn Store,
    secrets: &Secrets,
    guard: &Guard,
    run: Option<&str>,
    sending: Sending,
) -> Result<Pass, StoreError> {
    send_due(store, secrets, guard, run, sending, &|_| false).await
}

/// Sends the notifications due now, but those `skip` names, once each.
async fn send_due(
    store: &mut dyn Store,
    secrets: &Secrets,
    guard: &Guard,
    run: Option<&str>,
    sending: Sending,
    skip: &(dyn Fn(i64) -> bool + Sync),
) -> Result<Pass, StoreError> {
    let now = crate::clock::now_ms();
    let due = store.due_notifications(run, now)?;
    let mut pass = Pass::default();
    if due.is_empty() {
        return Ok(pass);
    }
    let masker = secrets.masker();
    for row in due {
        // Held for this attempt (a send never outlasts `total`): no other process sends it.
        let until = now + 3 * sending.total.as_millis() as i64;
        if skip(row.id) || !store.claim_notification(row.id, now, until)? {
            continue;
        }
        pass.attempted.push(row.id);
        let inputs = store.run(&row.run)?.map(|r| r.inputs).unwrap_or(Value::Null);
        let result = match url(&row, secrets, &inputs) {
            Ok(url) => guard.send(&url, &row.body, sending).await,
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
                // Said by the caller, in its own words (`-v` shows each attempt).
                tracing::info!(run = %row.run, attempt = attempts, error = %error, "A notification was not delivered.");
                store.notification_attempt(row.id, false, Some(&error), next, &at)?;
                pass.failed.push(NotificationRow {
                    status: if next.is_some() { "pending" } else { "failed" }.into(),
                    attempts,
                    next_at: next.unwrap_or(row.next_at),
                    last_error: Some(error),
                    ..row
                });
            }
        }
    }
    Ok(pass)
}

/// Delivers the due notifications (of one run, or of all), retrying each one that
/// fails after the backoff recorded in the outbox, at most `most` times each in this
/// call and never past `budget`; what is left stays pending for the next phased
/// process. Returns those given up meanwhile (no attempt left).
pub(crate) async fn deliver(
    store: &mut dyn Store,
    secrets: &Secrets,
    guard: &Guard,
    run: Option<&str>,
    budget: Duration,
    most: u32,
    sending: Sending,
) -> Result<Vec<NotificationRow>, StoreError> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut tried: std::collections::HashMap<i64, u32> = std::collections::HashMap::new();
    let mut given_up = Vec::new();
    loop {
        let spent = |id: i64, tried: &std::collections::HashMap<i64, u32>| tried.get(&id).is_some_and(|n| *n >= most);
        let pass = send_due(store, secrets, guard, run, sending, &|id| spent(id, &tried)).await?;
        for id in pass.attempted {
            *tried.entry(id).or_default() += 1;
        }
        given_up.extend(pass.failed.into_iter().filter(|n| n.status != "pending"));
        let pending = store
            .due_notifications(run, i64::MAX)?
            .into_iter()
            .filter(|n| !spent(n.id, &tried))
            .map(|n| n.next_at)
            .min();
        let Some(next_at) = pending else { return Ok(given_up) };
        let wait = Duration::from_millis((next_at - crate::clock::now_ms()).max(0) as u64);
        if tokio::time::Instant::now() + wait > deadline {
            return Ok(given_up);
        }
        tokio::time::sleep(wait).await;
    }
}

/// Who sends a pending notification again, as [`undelivered_line`] says it.
pub(crate) const RETRIED_BY_NOTIFY: &str = "`phased notify` retries it";

/// One line for people about a notification that was not delivered: which, why and
/// where (the error names the receiver's host and port, never its path), and what
/// happens next (for one still pending, `retried`).
pub(crate) fn undelivered_line(n: &NotificationRow, retried: &str) -> String {
    let which = format!("the `{}` notification ({}) of run {}", n.outcome, n.format, n.run);
    match (n.status.as_str(), n.last_error.as_deref()) {
        ("pending", None) => format!("{which} is not sent yet (kept; {retried})"),
        ("pending", Some(error)) => format!("{which} was not delivered: {error} (kept; {retried})"),
        (_, error) if n.attempts >= MOST_ATTEMPTS => format!(
            "{which} was not delivered: {} (given up after {} attempts)",
            error.unwrap_or("no error recorded"),
            n.attempts
        ),
        (_, error) => format!(
            "{which} was not delivered: {} (not retried: another attempt cannot help)",
            error.unwrap_or("no error recorded")
        ),
    }
}
