//! Who started a run: recorded with it (`deployments.actor`), shown by `status`, the
//! API and the dashboard.
//!
//! Stored as text so that every front end and both databases read it the same way:
//! `cli:USER@HOST`, `token:NAME`, `webhook:TRIGGER#DELIVERY`, `watch:USER@HOST`, and
//! `rollback:RUN by ACTOR` for a rollback (which names who asked for it).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A command typed on this machine (`phased run`, `phased rollback`).
    Cli { user: String, host: String },
    /// An API caller, by its token's name (the dashboard's sessions carry one too).
    Token(String),
    /// A push webhook: the trigger's name and the forge's delivery id, when it sent one.
    Webhook { trigger: String, delivery: Option<String> },
    /// `phased watch`, for the user who started it.
    Watch { user: String, host: String },
    /// A rollback of `of` (the run whose release it made live again), asked by `by`.
    Rollback { of: String, by: Box<Actor> },
}

impl Actor {
    /// The user running this process, on this machine.
    pub fn cli() -> Actor {
        let (user, host) = user_at_host();
        Actor::Cli { user, host }
    }

    /// `phased watch` started by the user running this process.
    pub fn watch() -> Actor {
        let (user, host) = user_at_host();
        Actor::Watch { user, host }
    }

    /// Reads the stored form back; text that is none of the forms is kept as a token
    /// name would be shown, never refused (an older or newer Phased may have written it).
    pub fn parse(text: &str) -> Actor {
        if let Some((of, by)) = text.strip_prefix("rollback:").and_then(|rest| rest.split_once(" by ")) {
            return Actor::Rollback { of: of.to_string(), by: Box::new(Actor::parse(by)) };
        }
        let user_host = |rest: &str| {
            let (user, host) = rest.split_once('@').unwrap_or((rest, ""));
            (user.to_string(), host.to_string())
        };
        match text.split_once(':') {
            Some(("cli", rest)) => {
                let (user, host) = user_host(rest);
                Actor::Cli { user, host }
            }
            Some(("watch", rest)) => {
                let (user, host) = user_host(rest);
                Actor::Watch { user, host }
            }
            Some(("webhook", rest)) => match rest.split_once('#') {
                Some((trigger, delivery)) => {
                    Actor::Webhook { trigger: trigger.to_string(), delivery: Some(delivery.to_string()) }
                }
                None => Actor::Webhook { trigger: rest.to_string(), delivery: None },
            },
            Some(("token", name)) => Actor::Token(name.to_string()),
            _ => Actor::Token(text.to_string()),
        }
    }

    /// For people: `root@build-1 (cli)`, `token ci`, `webhook web (delivery 42)`,
    /// `rollback of 1a2b3c4d, by token ci`.
    pub fn describe(&self) -> String {
        match self {
            Actor::Cli { user, host } => format!("{user}@{host} (cli)"),
            Actor::Token(name) => format!("token {name}"),
            Actor::Webhook { trigger, delivery: Some(d) } => format!("webhook {trigger} (delivery {d})"),
            Actor::Webhook { trigger, delivery: None } => format!("webhook {trigger}"),
            Actor::Watch { user, host } => format!("watch by {user}@{host}"),
            Actor::Rollback { of, by } => {
                format!("rollback of {}, by {}", of.chars().take(8).collect::<String>(), by.describe())
            }
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Cli { user, host } => write!(f, "cli:{user}@{host}"),
            Actor::Token(name) => write!(f, "token:{name}"),
            Actor::Webhook { trigger, delivery: Some(d) } => write!(f, "webhook:{trigger}#{d}"),
            Actor::Webhook { trigger, delivery: None } => write!(f, "webhook:{trigger}"),
            Actor::Watch { user, host } => write!(f, "watch:{user}@{host}"),
            Actor::Rollback { of, by } => write!(f, "rollback:{of} by {by}"),
        }
    }
}

/// The login name (`USER`, `LOGNAME`, else the numeric uid) and the host name.
fn user_at_host() -> (String, String) {
    let user =
        ["USER", "LOGNAME"].iter().filter_map(|name| std::env::var(name).ok()).find(|v| !v.is_empty()).unwrap_or_else(
            || {
                use std::os::unix::fs::MetadataExt;
                // No login name (a service, a container): the uid, which owns `/proc/self`.
                std::fs::metadata("/proc/self").map_or_else(|_| "unknown".to_string(), |m| format!("uid {}", m.uid()))
            },
        );
    (user, crate::process::hostname())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_as_written() {
        let forms = [
            Actor::Cli { user: "ana".into(), host: "build-1".into() },
            Actor::Token("ci".into()),
            Actor::Webhook { trigger: "web".into(), delivery: Some("72d3-11".into()) },
            Actor::Webhook { trigger: "web".into(), delivery: None },
            Actor::Watch { user: "ana".into(), host: "laptop".into() },
            Actor::Rollback { of: "1a2b3c4d-0000".into(), by: Box::new(Actor::Token("ops".into())) },
        ];
        for actor in forms {
            assert_eq!(Actor::parse(&actor.to_string()), actor, "{actor}");
        }
        assert_eq!(Actor::parse("something-else"), Actor::Token("something-else".into()));
    }
}
