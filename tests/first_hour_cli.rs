//! The CLI of the first hour (issue 23): `status` as a short table (a default limit,
//! short ids, age, duration, the progress a FAILED run reached and its failed node,
//! colour on a terminal only), filters that say what matched nothing, `@last` wherever
//! a run id is taken, `rollback --to` by a prefix, a FAILED run's `next:` command, and
//! shell completion of run ids, targets and pipeline names through a real bash.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use support::Env;

/// Three nodes; the last fails: the run reaches 66% before it does.
const BAD: &str = "version: 1\nname: bad\nnodes:\n  a: {phase: BUILDING, uses: noop}\n  \
                   b: {phase: BUILDING, uses: noop, needs: [a]}\n  c: {phase: HEALTH_CHECK, uses: fail, needs: [b]}\n";
const ONE: &str = "version: 1\nname: noop\nnodes:\n  a: {phase: BUILDING, uses: noop}\n";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `phased ARGS`, expecting `code`; its stdout.
fn expect(env: &Env, args: &[&str], code: i32) -> String {
    let out = env.run(args);
    assert_eq!(out.status.code(), Some(code), "phased {args:?}\n{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// `pipelines/noop.yaml` run `n` times (newest last), each with a generated id.
fn noop_runs(env: &Env, n: usize) {
    env.write("pipelines/noop.yaml", ONE);
    for _ in 0..n {
        expect(env, &["run", "noop"], 0);
        // Distinct creation times: "newest" is by when a run was created.
        std::thread::sleep(Duration::from_millis(3));
    }
}

#[test]
fn the_status_table_is_cut_to_twenty_with_short_ids_age_duration_and_the_failed_node() {
    let env = Env::new();
    let bad = env.write("bad.yaml", BAD);
    expect(&env, &["run", bad.to_str().unwrap(), "--id", "2aff1ec3-aaaa-0000-failed"], 1);
    noop_runs(&env, 1);
    expect(&env, &["run", "noop", "--id", "2aff1ec3-bbbb-0000-ok"], 0);
    noop_runs(&env, 22);

    let table = expect(&env, &["status"], 0);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + 20 + 1, "a header, 20 runs and what was left out:\n{table}");
    assert_eq!(lines[21], "showing 20 of 25 runs, newest first; `--limit N` shows more (`--limit 0`: all)");
    for column in ["id", "pipeline", "status", "phase", "%", "age", "duration", "failed node"] {
        assert!(lines[0].contains(column), "a `{column}` column: {}", lines[0]);
    }
    // A generated id (a UUID) is shown by its first 8 characters, enough to name it.
    let first = lines[1].split_whitespace().next().unwrap();
    assert_eq!(first.len(), 8, "{table}");
    assert_eq!(env.status(first)["pipeline"], "noop", "the short id names the run");
    let words: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(words[7] == "ago" && words[8].ends_with('s'), "its age and duration: {}", lines[1]);

    let all = expect(&env, &["status", "--limit", "0"], 0);
    assert_eq!(all.lines().count(), 1 + 25, "`--limit 0` shows every run:\n{all}");
    // Two ids with the same first 8 characters are shown as far as they differ.
    let failed = all.lines().find(|l| l.contains(" FAILED ")).unwrap();
    let words: Vec<&str> = failed.split_whitespace().collect();
    assert_eq!(words[0], "2aff1ec3-a", "{all}");
    assert!(all.lines().any(|l| l.starts_with("2aff1ec3-b ")), "{all}");
    // A FAILED run shows the progress it reached, not 0, and the node that failed.
    assert_eq!(&words[1..6], ["bad", "-", "failed", "FAILED", "66"], "{failed}");
    assert!(words[7] == "ago" && words[8].ends_with('s'), "age, duration: {failed}");
    assert_eq!(words[9..], ["c"], "{failed}");
    assert_eq!(env.status(words[0])["id"], "2aff1ec3-aaaa-0000-failed", "the shown id names it");
    assert_eq!(expect(&env, &["status", "--limit", "2"], 0).lines().count(), 1 + 2 + 1);

    // JSON is for scripts: every run unless --limit says otherwise, the fields as before.
    let json: serde_json::Value = serde_json::from_str(&expect(&env, &["status", "--format", "json"], 0)).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 25);
    let row = list.iter().find(|r| r["status"] == "failed").unwrap();
    assert_eq!(
        (row["phase_progress"].as_u64(), row["phase_metadata"]["progressReached"].as_u64()),
        (Some(0), Some(66))
    );
    for key in ["id", "pipeline", "target", "phase", "phase_metadata", "phase_updated_at", "attempt", "created_at"] {
        assert!(row.get(key).is_some(), "`{key}` is still there: {row}");
    }
}

#[test]
fn a_filter_that_matches_nothing_says_so_and_what_was_meant_and_status_takes_any_case() {
    let env = Env::new();
    let bad = env.write("bad.yaml", BAD);
    expect(&env, &["run", bad.to_str().unwrap(), "--id", "broken"], 1);
    noop_runs(&env, 2);

    let failed = expect(&env, &["status", "--status", "FAILED"], 0);
    assert!(failed.contains("broken") && !failed.contains("noop"), "{failed}");
    assert!(expect(&env, &["status", "--status", "Succeeded"], 0).contains("noop"));

    let typo = expect(&env, &["status", "--pipeline", "nop"], 0);
    assert_eq!(typo.trim(), "no run matches `--pipeline nop` (did you mean `noop`?)");
    let none = expect(&env, &["status", "--pipeline", "noop", "--status", "cancelled"], 0);
    assert_eq!(none.trim(), "no run matches `--pipeline noop --status cancelled`; `phased status` lists every run (3)");
    assert!(!none.contains("no runs yet"), "{none}");
    // A database with no run at all still says how to start one.
    let empty = Env::new();
    expect(&empty, &["token", "create", "ci"], 0);
    let said = expect(&empty, &["status", "--pipeline", "noop"], 0);
    assert_eq!(said.trim(), "no runs yet; start one with `phased run PIPELINE`");
}

#[test]
fn at_last_names_the_newest_run_for_every_command_and_rollback_to_takes_a_prefix() {
    let env = Env::new();
    let app = env.write(
        "app.yaml",
        "version: 1\nname: app\ninputs:\n  version: {type: string, required: true}\n\
         concurrency: {key: web, policy: queue}\nrollback: app-rollback\n\
         nodes:\n  deploy: {phase: BUILDING, uses: shell, with: {run: 'echo deployed'}}\n",
    );
    env.write(
        "app-rollback.yaml",
        "version: 1\nname: app-rollback\ninputs:\n  release: {type: object, required: true}\n\
         concurrency: {key: web, policy: queue}\nnodes:\n  switch: {phase: CREATING_SYMLINKS, uses: noop}\n",
    );
    let app = app.to_str().unwrap();
    expect(&env, &["run", app, "--id", "release-one-1111", "-i", "version=1"], 0);
    std::thread::sleep(Duration::from_millis(3));
    expect(&env, &["run", app, "--id", "release-two-2222", "-i", "version=2"], 0);

    // `--to` by a unique start of the id, as every other command takes it.
    let back = env.run(&["rollback", "web", "--to", "release-o", "--id", "back"]);
    assert_eq!(back.status.code(), Some(0), "{}", stderr(&back));
    assert_eq!(env.status("back")["inputs"]["release"]["id"], "release-one-1111");
    let ambiguous = env.run(&["rollback", "web", "--to", "release"]);
    assert_eq!(ambiguous.status.code(), Some(2));
    assert!(stderr(&ambiguous).contains("`release` is the start of several runs"), "{}", stderr(&ambiguous));

    let bad = env.write("bad.yaml", BAD);
    std::thread::sleep(Duration::from_millis(3));
    expect(&env, &["run", bad.to_str().unwrap(), "--id", "newest-failed"], 1);
    for alias in ["@last", "last"] {
        assert_eq!(env.status(alias)["id"], "newest-failed", "`status {alias}`");
    }
    assert!(expect(&env, &["status", "@last"], 0).starts_with("run       newest-failed\n"));
    let logs = env.run(&["logs", "@last"]);
    assert_eq!(logs.status.code(), Some(0), "{}", stderr(&logs));
    let plan = expect(&env, &["plan", "--resume", "@last"], 0);
    assert!(plan.starts_with("resuming run newest-failed"), "{plan}");
    let cancel = env.run(&["cancel", "@last"]);
    assert!(stderr(&cancel).contains("run `newest-failed` already failed"), "{}", stderr(&cancel));
    // Fixed on disk, resumed by its alias.
    env.write("bad.yaml", &BAD.replace("uses: fail", "uses: noop"));
    let resume = env.run(&["resume", "@last", "--reload"]);
    assert_eq!(resume.status.code(), Some(0), "{}", stderr(&resume));
    assert_eq!(env.status("newest-failed")["status"], "succeeded");

    // An id that starts with `last` is still found by that prefix; `@last` cannot be an id.
    expect(&env, &["run", app, "--id", "last-one", "-i", "version=3"], 0);
    assert_eq!(env.status("last")["id"], "last-one");
    let empty = Env::new();
    expect(&empty, &["token", "create", "ci"], 0);
    let none = empty.run(&["status", "@last"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("no run in `") && stderr(&none).contains("yet"), "{}", stderr(&none));
}

#[test]
fn a_failed_run_shows_the_progress_it_reached_and_what_to_run_next() {
    let env = Env::new();
    let bad = env.write("bad.yaml", BAD);
    let out = env.run(&["run", bad.to_str().unwrap(), "--id", "fell"]);
    assert_eq!(out.status.code(), Some(1));
    let said = stdout(&out);
    let last = said.lines().last().unwrap();
    assert!(last.starts_with("[ 66%] FAILED "), "the progress reached, not 0%: {said}");

    let detail = expect(&env, &["status", "fell"], 0);
    assert!(detail.contains("phase     FAILED after 66%\nfailed    at node `c` (HEALTH_CHECK)\n"), "{detail}");
    let next = detail.lines().last().unwrap();
    assert_eq!(next, "next:     phased resume fell  (fix the cause first)");

    // Fixed on disk since the run started: resuming it as it was would fail again.
    env.write("bad.yaml", &BAD.replace("uses: fail", "uses: noop"));
    let detail = expect(&env, &["status", "fell"], 0);
    let next = detail.lines().last().unwrap();
    assert!(
        next.starts_with("next:     phased resume fell --reload  (its pipeline changed since the run started"),
        "{detail}"
    );
    // The command as printed works.
    let command = next.trim_start_matches("next:").split("  (").next().unwrap();
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    expect(&env, &args, 0);
    assert_eq!(env.status("fell")["status"], "succeeded");
    assert!(!expect(&env, &["status", "fell"], 0).contains("next:"), "nothing to do for an ACTIVE run");
}

/// What `phased ARGS` prints on a real terminal (a pseudo-terminal made by `script`),
/// as the bytes it wrote, colour codes included.
fn on_a_terminal(env: &Env, args: &str, no_color: bool) -> String {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_phased"));
    let mut script = Command::new("script");
    script.args(["-qfec", &command, "/dev/null"]).env("PHASED_DB", env.db()).current_dir(env.dir.path());
    if no_color {
        script.env("NO_COLOR", "1");
    } else {
        script.env_remove("NO_COLOR");
    }
    let out = script.output().expect("`script` (util-linux) runs");
    assert!(out.status.success(), "{}", stdout(&out));
    stdout(&out)
}

#[test]
fn statuses_are_in_colour_on_a_terminal_and_plain_in_a_pipe_or_with_no_color() {
    let env = Env::new();
    let bad = env.write("bad.yaml", BAD);
    expect(&env, &["run", bad.to_str().unwrap(), "--id", "red"], 1);
    noop_runs(&env, 1);

    let screen = on_a_terminal(&env, "status", false);
    assert!(screen.contains("\u{1b}[32msucceeded"), "green on a terminal: {screen:?}");
    assert!(screen.contains("\u{1b}[31m\u{1b}[1mfailed"), "red on a terminal: {screen:?}");
    let detail = on_a_terminal(&env, "status red", false);
    assert!(detail.contains("status    \u{1b}[31m\u{1b}[1mfailed"), "{detail:?}");

    for (what, text) in [
        ("NO_COLOR", on_a_terminal(&env, "status", true)),
        ("--color never", on_a_terminal(&env, "status --color never", false)),
        ("a pipe", stdout(&env.command(&["status"]).env_remove("NO_COLOR").output().unwrap())),
        ("a pipe, one run", stdout(&env.command(&["status", "red"]).env_remove("NO_COLOR").output().unwrap())),
    ] {
        assert!(text.contains("failed") && !text.contains('\u{1b}'), "no colour with {what}: {text:?}");
    }
    let forced = stdout(&env.command(&["status", "--color", "always"]).output().unwrap());
    assert!(forced.contains("\u{1b}[32msucceeded"), "{forced:?}");
}

/// What bash completes for each command line of `lines` (the word under the cursor
/// last), through the registration `COMPLETE=bash phased` prints, as a shell would.
fn bash_completes(env: &Env, lines: &[&str]) -> Vec<Vec<String>> {
    let mut script = format!(
        "source <(COMPLETE=bash {}) || exit 9\n\
         complete_line() {{\n  COMP_WORDS=($1 \"$2\"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_TYPE=9; COMPREPLY=()\n  \
         _clap_complete_phased phased \"$2\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n  \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"; echo '--end--'\n}}\n",
        env!("CARGO_BIN_EXE_phased")
    );
    for line in lines {
        let (before, word) = line.rsplit_once(' ').unwrap();
        script.push_str(&format!("complete_line '{before}' '{word}'\n"));
    }
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("PHASED_DB", env.db())
        .env_remove("PHASED_PIPELINES")
        .env_remove("COMPLETE")
        .current_dir(env.dir.path())
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let mut answers: Vec<Vec<String>> = text
        .split("--end--\n")
        .map(|block| block.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
        .collect();
    answers.pop();
    assert_eq!(answers.len(), lines.len(), "{text}");
    answers
}

#[test]
fn bash_completes_run_ids_targets_and_pipeline_names_from_the_database_and_the_folder() {
    let env = Env::new();
    env.write("pipelines/deploy-site.yaml", &ONE.replace("name: noop", "name: deploy-site"));
    env.write(
        "pipelines/service.yaml",
        "version: 1\nname: service\nconcurrency: {key: billing, policy: queue}\nnodes:\n  a: {phase: BUILDING, uses: noop}\n",
    );
    let bad = env.write("bad.yaml", BAD);
    expect(&env, &["run", "deploy-site", "--id", "2aff1ec3-one"], 0);
    expect(&env, &["run", "service", "--id", "2aff1ec3-two"], 0);
    expect(&env, &["run", bad.to_str().unwrap(), "--id", "2bbb-failed"], 1);

    let answers = bash_completes(
        &env,
        &[
            "phased status 2aff",
            "phased logs 2b",
            "phased resume 2",
            "phased status @",
            "phased releases bil",
            "phased status --target bi",
            "phased run deploy-",
            "phased watch serv",
            "phased status --pipeline deploy-",
        ],
    );
    assert_eq!(answers[0], ["2aff1ec3-two", "2aff1ec3-one"], "run ids, newest first");
    assert_eq!(answers[1], ["2bbb-failed"]);
    assert_eq!(answers[2], ["2bbb-failed"], "`resume` offers the runs it can continue");
    assert_eq!(answers[3], ["@last"]);
    assert_eq!(answers[4], ["billing"], "targets");
    assert_eq!(answers[5], ["billing"]);
    assert_eq!(answers[6], ["deploy-site"], "pipeline names from ./pipelines");
    assert_eq!(answers[7], ["service"]);
    assert_eq!(answers[8], ["deploy-site"]);

    // Another database, named on the line being completed.
    let other = Env::new();
    expect(&other, &["run", bad.to_str().unwrap(), "--id", "2ccc-elsewhere"], 1);
    let db = other.db().display().to_string();
    let answers = bash_completes(&env, &[&format!("phased status --db {db} 2")]);
    assert_eq!(answers[0], ["2ccc-elsewhere"]);
    // No database: nothing offered, and none made.
    let answers = bash_completes(&env, &["phased status --db nothing/here.db 2"]);
    assert!(answers[0].is_empty(), "{:?}", answers[0]);
    assert!(!env.path("nothing").exists());

    // The static script is still there for who installs completions as a file.
    let script = expect(&env, &["completions", "bash"], 0);
    assert!(script.contains("_phased()") && script.contains("complete -F _phased"), "{script}");
}
