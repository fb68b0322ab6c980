//! The first hour with the command line (issue 23, items 13, 15, 16, 17 and 19), through
//! the real binary in real folders: the README's quick start works as printed from an
//! empty folder (the built-in `hello` type needs nothing installed), `validate` in an
//! empty folder says where to start, `plan` shows scripts as blocks and each node's
//! `needs`, `init TYPE --name NAME` writes NAME and points editors at the schema it
//! wrote, SARIF rules say what their code means and link to it, `stats` reads like a
//! table, and `prune --dry-run` needs no age.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::Env;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The first ```sh block after `## Quick start` in README.md, one command a line,
/// without the comments.
fn quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = &readme[readme.find("## Quick start").expect("a quick start")..];
    let block = &section[section.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .map(|line| line.split("  #").next().unwrap().trim().to_string())
        .filter(|line| !line.is_empty())
        .collect()
}

/// Removes the folder the quick start's `cd "$(mktemp -d)"` made, even when the test fails.
struct Made(Option<PathBuf>);

impl Drop for Made {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn the_readme_quick_start_works_as_printed_from_an_empty_folder() {
    let commands = quick_start();
    assert!(commands[0].starts_with("cargo install"), "{commands:?}");
    assert!(commands.iter().any(|c| c == "phased run hello"), "it leads with what works anywhere: {commands:?}");
    // `cargo install` is what built this binary: its folder goes first on PATH instead.
    let bin = Path::new(env!("CARGO_BIN_EXE_phased")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let scratch = tempfile::tempdir().unwrap();
    let cwd_file = scratch.path().join("cwd");
    let mut cwd: PathBuf = scratch.path().join("start");
    std::fs::create_dir(&cwd).unwrap();
    let mut made = Made(None);
    let mut id = None::<String>;
    let mut outputs = Vec::new();
    for command in &commands[1..] {
        let line = match &id {
            Some(id) => command.replace("<id>", id),
            None => command.clone(),
        };
        assert!(!line.contains('<'), "a placeholder no earlier command printed: {line}");
        // Run as a shell would, then say where it ended up (`cd` moves the next commands).
        let script = format!("{line}\nstatus=$?\npwd > '{}'\nexit $status", cwd_file.display());
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(&cwd)
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .env_remove("PHASED_DB")
            .env_remove("PHASED_DATA_DIR")
            .env_remove("PHASED_PIPELINES")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "`{line}` in {}:\n{}", cwd.display(), text(&out));
        let now = PathBuf::from(std::fs::read_to_string(&cwd_file).unwrap().trim());
        if now != cwd {
            assert_eq!(std::fs::read_dir(&now).unwrap().count(), 0, "`{line}`: an empty folder");
            if !now.starts_with(scratch.path()) {
                made.0 = Some(now.clone());
            }
            cwd = now;
        }
        if id.is_none() && line.starts_with("phased run") {
            let said = text(&out);
            let at = said.find("run ").expect("run prints its id") + 4;
            id = Some(said[at..].split_whitespace().next().unwrap().to_string());
        }
        outputs.push((line, text(&out)));
    }
    let said = |prefix: &str| {
        outputs.iter().find(|(line, _)| line.starts_with(prefix)).map(|(_, out)| out.clone()).unwrap_or_default()
    };
    assert!(said("cat .phased/hello").contains("<h1>hello, world</h1>"), "{outputs:?}");
    assert!(said("phased validate").contains("1 file valid"), "{outputs:?}");
    assert!(said("phased releases hello").lines().filter(|l| l.contains("/hello/releases/")).count() == 2);
    assert!(outputs.last().unwrap().1.contains("is ACTIVE"), "{outputs:?}");
}

#[test]
fn hello_keeps_a_callers_greeting_as_data() {
    let env = Env::on_sqlite();
    let attack = "$(touch pwned) `touch pwned2` </h1><script>x</script>";
    let out = env.run(&["run", "hello", "-i", &format!("greeting={attack}"), "--id", "h1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!env.path("pwned").exists() && !env.path("pwned2").exists(), "the greeting ran as code");
    let page = std::fs::read_to_string(env.path("state/hello/current/index.html")).unwrap();
    assert!(page.contains("$(touch pwned) `touch pwned2` &lt;&#x2f;h1&gt;&lt;script&gt;"), "{page}");
    assert_eq!(
        env.status("h1")["phase_metadata"]["page"],
        env.path("state/hello/current/index.html").display().to_string()
    );
    // A second line would let the check match on a part of the page: refused first.
    let inputs = env.write("two.inputs.yaml", "greeting: \"a\\nb\"\n");
    let two = env.run(&["run", "hello", "--inputs", inputs.to_str().unwrap()]);
    assert_eq!(two.status.code(), Some(2), "{}", text(&two));
}

#[test]
fn validate_in_a_folder_without_pipelines_says_where_to_start() {
    let env = Env::on_sqlite();
    let out = env.run(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("`pipelines`") && said.contains("phased init"), "{said}");
    let json = env.run(&["validate", "--format", "json"]);
    assert_eq!(json.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report, serde_json::json!({"valid": true, "files": 0, "diagnostics": []}));
    // A path that was asked for is still an error.
    assert_eq!(env.run(&["validate", "nowhere"]).status.code(), Some(2));
}

#[test]
fn plan_shows_a_script_as_a_block_and_what_each_node_needs() {
    let env = Env::on_sqlite();
    env.write(
        "p.yaml",
        "version: 1\nname: p\ninputs:\n  who: {type: string, default: web}\nnodes:\n  \
         fetch: {phase: PULLING_SOURCE, uses: noop}\n  \
         lint: {phase: BUILDING, needs: [fetch], uses: noop}\n  \
         build:\n    phase: BUILDING\n    needs: [fetch, lint]\n    uses: shell\n    with:\n      \
         run: |\n        echo \"building $WHO\"\n        make all\n      env: {WHO: '{{ inputs.who }}'}\n",
    );
    let out = env.run(&["plan", "p.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = said.lines().map(str::trim).collect();
    let at = lines.iter().position(|l| *l == "run: |").unwrap_or_else(|| panic!("a block: {said}"));
    assert_eq!(lines[at + 1..at + 3], ["echo \"building $WHO\"", "make all"], "{said}");
    assert!(!said.contains("\\n") && !said.contains("\\\""), "no escaped JSON: {said}");
    assert!(lines.contains(&"needs: fetch, lint") && lines.contains(&"needs: fetch"), "{said}");
    assert!(lines.contains(&"WHO: web"), "{said}");
    // JSON keeps its names (DESIGN.md) and gains `needs`.
    let json = env.run(&["plan", "p.yaml", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let build = &plan["nodes"][2];
    assert_eq!(build["node"], "build");
    assert_eq!(build["needs"], serde_json::json!(["fetch", "lint"]));
    assert_eq!(build["with"]["run"], "echo \"building $WHO\"\nmake all\n");
    for key in ["phase", "progress_start", "progress_end", "skipped", "uses", "metadata"] {
        assert!(build.get(key).is_some(), "{key}: {build}");
    }
}

#[test]
fn init_a_type_under_a_name_writes_that_name_and_points_at_the_schema_it_wrote() {
    let env = Env::on_sqlite();
    let out = env.run(&["init", "static", "--name", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!env.path("pipelines/static.yaml").exists(), "the built-in `static` is not shadowed");
    let copy = std::fs::read_to_string(env.path("pipelines/web.yaml")).unwrap();
    assert!(copy.lines().any(|l| l == "name: web") && !copy.lines().any(|l| l == "name: static"), "{copy}");
    let schema = Command::new(env!("CARGO_BIN_EXE_phased")).arg("schema").output().unwrap().stdout;
    let starter = env.run(&["init"]);
    assert_eq!(starter.status.code(), Some(0), "{}", text(&starter));
    for file in ["pipelines/web.yaml", "pipelines/my-app.yaml"] {
        let first = std::fs::read_to_string(env.path(file)).unwrap().lines().next().unwrap().to_string();
        let target =
            first.strip_prefix("# yaml-language-server: $schema=").unwrap_or_else(|| panic!("{file}: {first}"));
        let written =
            std::fs::read(env.path("pipelines").join(target)).unwrap_or_else(|e| panic!("{file}: {target}: {e}"));
        assert_eq!(written, schema, "{file}: its `$schema` is what `phased schema` prints");
    }
    let valid = env.run(&["validate", "--deny-warnings"]);
    assert_eq!(valid.status.code(), Some(0), "{}", text(&valid));
    // The starter runs where it was made: its releases go to the data folder.
    let run = env.run(&["run", "my-app", "-q"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert_eq!(std::fs::read_to_string(env.path("state/my-app/current/index.html")).unwrap(), "version 1\n");
}

/// `(code, meaning)` of each row of the table in docs/pipeline-format.md, with whether
/// the row carries the anchor `<a id="code">`.
fn documented_codes() -> Vec<(String, String, bool)> {
    let doc = std::fs::read_to_string("docs/pipeline-format.md").unwrap();
    let section = &doc[doc.find("## Diagnostic codes").unwrap()..];
    section
        .lines()
        .filter(|l| l.starts_with("| <a id=") || l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            let code = cells[0].rsplit('`').nth(1).unwrap().to_string();
            let anchored = cells[0].starts_with(&format!("<a id=\"{code}\"></a>"));
            (code, cells[2].replace("\\|", "|"), anchored)
        })
        .collect()
}

#[test]
fn sarif_rules_say_what_their_code_means_and_link_to_its_row() {
    let out = Command::new(env!("CARGO_BIN_EXE_phased"))
        .args(["validate", "--format", "sarif", "tests/fixtures/invalid"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules = log["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    let docs = documented_codes();
    assert!(rules.len() > 20, "{}", rules.len());
    for rule in rules {
        let id = rule["id"].as_str().unwrap();
        let (_, meaning, anchored) =
            docs.iter().find(|(code, _, _)| code == id).unwrap_or_else(|| panic!("`{id}` is not documented"));
        assert!(anchored, "`{id}`: its row has no anchor");
        assert_eq!(rule["shortDescription"]["text"], meaning.as_str(), "{rule}");
        assert!(rule["help"]["text"].as_str().unwrap().starts_with(meaning.as_str()), "{rule}");
        let uri = rule["helpUri"].as_str().unwrap();
        assert!(uri.ends_with(&format!("docs/pipeline-format.md#{id}")), "{uri}");
        assert!(uri.contains("://"), "an absolute URI, as SARIF's schema wants: {uri}");
    }
    // Every code the binary knows is documented with its anchor, and the other way round.
    let known: Vec<&str> = phased::diagnostic::codes::CODES.iter().map(|c| c.code.as_str()).collect();
    let documented: Vec<&str> = docs.iter().map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(known, documented);
    for code in phased::diagnostic::codes::CODES {
        let (_, meaning, anchored) = docs.iter().find(|(c, _, _)| c == code.code.as_str()).unwrap();
        assert!(*anchored && meaning == code.meaning, "`{}`", code.code);
    }
    for code in codes_in_sources(Path::new("src")) {
        assert!(known.contains(&code.as_str()), "`{code}` is reported but not in the table of codes");
    }
}

/// The codes `src/` reports: the first argument of `Diagnostic::error(`/`warning(`,
/// and `code: "..."` fields, as text or as `DiagnosticCode::UnknownNode` (whose text is
/// `unknown-node`).
fn codes_in_sources(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(codes_in_sources(&path));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("DiagnosticCode::") {
            let name: String =
                text[at + "DiagnosticCode::".len()..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            if name.starts_with(|c: char| c.is_ascii_uppercase()) && name != "ALL" {
                let mut code = String::new();
                for c in name.chars() {
                    if c.is_ascii_uppercase() && !code.is_empty() {
                        code.push('-');
                    }
                    code.push(c.to_ascii_lowercase());
                }
                out.push(code);
            }
        }
        for start in ["Diagnostic::error(", "Diagnostic::warning(", "code: \""] {
            for (at, _) in text.match_indices(start) {
                let rest = text[at + start.len()..].trim_start();
                let rest = rest.strip_prefix('"').unwrap_or(if start.ends_with('"') { rest } else { "" });
                let Some(end) = rest.find('"') else { continue };
                let code = &rest[..end];
                if !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '-' || c.is_ascii_digit()) {
                    out.push(code.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn stats_reads_like_a_table_in_the_order_nodes_run() {
    let env = Env::on_sqlite();
    // Named so that alphabetical order is the wrong one.
    env.write(
        "z.yaml",
        "version: 1\nname: zebra\nnodes:\n  \
         zz_first: {phase: BUILDING, uses: noop}\n  \
         mm_middle: {phase: BUILDING, needs: [zz_first], uses: noop}\n  \
         aa_last: {phase: HEALTH_CHECK, needs: [mm_middle], uses: noop}\n",
    );
    for _ in 0..2 {
        assert_eq!(env.run(&["run", "z.yaml", "-q"]).status.code(), Some(0));
    }
    let out = env.run(&["stats", "zebra"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = said.lines().collect();
    let header = lines.iter().find(|l| l.contains("RUNS")).unwrap_or_else(|| panic!("{said}"));
    // Every row ends where the header does: the columns line up under it.
    let rows: Vec<&&str> = lines.iter().filter(|l| l.ends_with('%')).collect();
    assert!(rows.len() >= 6, "{said}");
    for row in &rows {
        assert_eq!(row.chars().count(), header.chars().count(), "\n{header}\n{row}");
        for name in ["RUNS", "P50", "P95", "SUCCESS"] {
            let column_end = header.find(name).unwrap() + name.len();
            let under = &row[..column_end];
            assert!(!under.ends_with(' '), "`{name}` column: a value under it ends there:\n{header}\n{row}");
        }
    }
    // No-op steps take milliseconds, not "0.0s".
    assert!(rows.iter().any(|r| r.contains(" ms ")) && !said.contains("0.0s"), "{said}");
    let nodes: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.split_whitespace().next())
        .filter(|n| n.starts_with(|c: char| c.is_ascii_lowercase()) && n.contains('_'))
        .collect();
    assert_eq!(nodes, ["zz_first", "mm_middle", "aa_last"], "{said}");

    let typo = env.run(&["stats", "zebar"]);
    assert_eq!(typo.status.code(), Some(2), "{}", text(&typo));
    assert!(text(&typo).contains("`zebar`") && text(&typo).contains("did you mean `zebra`?"), "{}", text(&typo));
}

#[test]
fn prune_dry_run_needs_no_age_and_says_what_goes_and_stays_on_one_stream() {
    let env = Env::on_sqlite();
    for id in ["old1", "old2"] {
        assert_eq!(env.run(&["run", "hello", "--id", id, "-q"]).status.code(), Some(0));
    }
    // Their age is set in the database: the only way to have month-old runs in a test.
    let conn = env.sqlite();
    conn.execute(
        "UPDATE deployments SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', created_at, '-40 days'), \
         finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', finished_at, '-40 days')",
        [],
    )
    .unwrap();
    drop(conn);
    let out = env.run(&["prune", "--dry-run", "--keep", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("--older-than 30d"), "it says which age it shows: {said}");
    assert!(said.lines().any(|l| l.starts_with("would forget old1")), "{said}");
    assert!(said.lines().any(|l| l.starts_with("would keep old2") && l.contains("newest")), "{said}");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.run(&["status", "old1"]).status.success(), "a dry run forgets nothing");

    // Forgetting takes an age given on purpose.
    let bare = env.run(&["prune"]);
    assert_eq!(bare.status.code(), Some(2), "{}", text(&bare));
    assert!(text(&bare).contains("--older-than") && text(&bare).contains("--dry-run"), "{}", text(&bare));
    assert!(env.run(&["status", "old1"]).status.success());
}
