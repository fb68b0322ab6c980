//! The docker and nodejs deployment types end to end, against the real Docker engine
//! that `.ci/run` starts (scripts/docker-engine): real builds from scratch-based
//! images (no registry), real containers with published ports, a real nginx routing
//! to them, real HTTP health checks, `kill -9` and resume.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Env, Nginx};

/// The TLS material scripts/docker-engine made for dockerd's tcp listener.
const TLS_DIR: &str = "/var/lib/phased-test/docker-tls";
const TLS_HOST: &str = "tcp://127.0.0.1:2376";

/// The docker CLI against the local engine.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).env("DOCKER_HOST", "unix:///var/run/docker.sock").output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A service name of this test's own (the engine is shared by parallel tests); its
/// containers and images are removed when dropped.
struct Service(String);

impl Service {
    fn new(prefix: &str) -> Service {
        Service(format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]))
    }

    /// `name state image` of each container of the service (made by `docker.run`).
    fn containers(&self) -> Vec<String> {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=phased.service={}", self.0),
            "--filter",
            "label=phased.config",
            "--format",
            "{{.Names}} {{.State}} {{.Image}}",
        ]);
        out.lines().map(str::to_string).collect()
    }

    fn images(&self) -> Vec<String> {
        let out = docker(&["images", &self.0, "--format", "{{.Repository}}:{{.Tag}}"]);
        out.lines().map(str::to_string).collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Best effort, and never a panic (this may run while a failed test unwinds).
        let quiet = |args: &[&str]| {
            Command::new("docker")
                .args(args)
                .env("DOCKER_HOST", "unix:///var/run/docker.sock")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        for id in quiet(&["ps", "-aq", "--filter", &format!("label=phased.service={}", self.0)]).lines() {
            quiet(&["rm", "-f", id]);
        }
        for image in quiet(&["images", &self.0, "--format", "{{.Repository}}:{{.Tag}}"]).lines() {
            quiet(&["rmi", "-f", image]);
        }
    }
}

/// A busybox web app: `/` says `page`, `/health` exists unless `healthy` is false; the
/// `.dockerignore` leaves out `secret.env`, and the build proves it.
fn busybox_app(page: &str, healthy: bool, start_delay: &str) -> Value {
    let mut files = json!({
        "Dockerfile": format!(
            "FROM phased-test/busybox:1\nARG NOTE=none\nCOPY . /app\nRUN test ! -e /app/secret.env && test -e /app/www/index.html\n\
             RUN echo \"$NOTE\" > /app/www/note.txt\nEXPOSE 8080\nCMD [\"sh\", \"-c\", \"sleep {start_delay}; exec httpd -f -p 8080 -h /app/www\"]\n"
        ),
        ".dockerignore": "secret.env\n",
        "secret.env": "TOKEN=do-not-ship\n",
        "www/index.html": page,
    });
    if healthy {
        files["www/health"] = json!("ok");
    }
    files
}

/// `phased run PIPELINE` with inputs given as a JSON (= YAML) file, routed through `nginx`.
fn deploy(env: &Env, pipeline: &str, id: &str, inputs: Value, nginx: Option<&Nginx>) -> std::process::Output {
    deploy_with(env, pipeline, id, inputs, nginx, &[])
}

fn deploy_with(
    env: &Env,
    pipeline: &str,
    id: &str,
    inputs: Value,
    nginx: Option<&Nginx>,
    vars: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = run_command(env, pipeline, id, inputs, nginx);
    cmd.envs(vars.iter().copied());
    cmd.output().unwrap()
}

/// `phased run PIPELINE --id ID --format jsonl` against the local engine, with the
/// inputs in a file, routed through `nginx` (or `proxy: none` without one).
fn run_command(env: &Env, pipeline: &str, id: &str, mut inputs: Value, nginx: Option<&Nginx>) -> Command {
    match nginx {
        Some(nginx) => {
            for input in nginx.inputs() {
                let (key, value) = input.split_once('=').unwrap();
                inputs[key] = json!(value);
            }
        }
        None if inputs.get("proxy").is_none() => inputs["proxy"] = json!("none"),
        None => {}
    }
    let file = env.write(&format!("{id}.inputs.yaml"), &inputs.to_string());
    phased(env, &["run", pipeline, "--id", id, "--inputs", file.to_str().unwrap(), "--format", "jsonl"])
}

/// `phased ARGS` against the local engine (whatever the environment of the test says).
fn phased(env: &Env, args: &[&str]) -> Command {
    let mut cmd = env.command(args);
    cmd.env("DOCKER_HOST", "unix:///var/run/docker.sock").env_remove("DOCKER_TLS_VERIFY");
    cmd
}

fn embedded(env: &Env, files: Value) -> Value {
    json!({"type": "embedded", "work_dir": env.path("work").display().to_string(), "files": files})
}

fn assert_ok(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The progress at which each phase was first entered (after the source), ACTIVE included.
fn entered(status: &Value) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for h in status["history"].as_array().unwrap() {
        let phase = h["phase"].as_str().unwrap();
        if !["QUEUED", "PULLING_SOURCE"].contains(&phase) && !out.iter().any(|(p, _)| p == phase) {
            out.push((phase.to_string(), h["progress"].as_u64().unwrap()));
        }
    }
    out
}

/// The phases the docker type enters, at the seed's percentages.
fn docker_phases() -> Vec<(String, u64)> {
    [("BUILDING", 20), ("COPYING_FILES", 50), ("UPDATING_ROUTES", 75), ("HEALTH_CHECK", 90), ("ACTIVE", 100)]
        .into_iter()
        .map(|(p, n)| (p.to_string(), n))
        .collect()
}

#[test]
fn a_busybox_app_is_built_run_routed_and_checked_with_the_seed_phases() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("web");
    let inputs = json!({
        "service": service.0,
        "source": embedded(&env, busybox_app("<h1>v1</h1>", true, "0")),
        "health_path": "/health",
        "secret_env": {"API_TOKEN": "api_token"},
        "env": {"GREETING": "hello"},
        "memory": "64m",
        "cpus": 0.5,
        "build_args": {"NOTE": "built by phased"},
    });
    let secret = "s3cr3t-token-4471";
    let out = deploy_with(&env, "docker", "web00001", inputs, Some(&nginx), &[("PHASED_SECRET_API_TOKEN", secret)]);
    assert_ok(&out);
    let host = format!("{}.localhost", service.0);
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "<h1>v1</h1>".to_string()));
    assert_eq!(nginx.get(&host, "/note.txt").unwrap(), (200, "built by phased\n".to_string()), "the build argument");
    // The build's steps are the node's progress, between 20 and 50.
    let build_progress: Vec<u64> = support::events(&out.stdout)
        .iter()
        .filter(|e| e["event"] == "node_progress" && e["node"] == "build")
        .map(|e| e["progress"].as_u64().unwrap())
        .collect();
    assert!(build_progress.len() >= 3, "{build_progress:?}");
    assert!(build_progress.windows(2).all(|w| w[0] <= w[1]) && build_progress.iter().all(|p| (20..50).contains(p)));
    assert!(build_progress.last() > build_progress.first(), "{build_progress:?}");

    let status = env.status("web00001");
    assert_eq!(entered(&status), docker_phases());
    let tag = format!("{}:web00001", service.0);
    let active = &status["phase_metadata"];
    assert_eq!(active["imageTag"], json!(tag.clone()), "the tag is <service>:<first 8 of the id>");
    assert_eq!(active["containerName"], json!(format!("{}-web00001", service.0)));
    assert_eq!(active["healthCheckUrl"], json!(format!("http://{}.localhost:{}/health", service.0, nginx.port)));
    assert!(active["deploymentCompletedAt"].is_string() && active["port"].as_u64().unwrap() > 0, "{active}");
    let history = status["history"].as_array().unwrap();
    let building = history.iter().find(|h| h["phase"] == "BUILDING").unwrap();
    let built = history.iter().find(|h| h["metadata"].get("imageId").is_some()).unwrap();
    let image_id = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    assert_eq!(built["metadata"]["imageId"], json!(image_id), "the output is the engine's image id");
    assert!(building["metadata"]["sourcePath"].as_str().unwrap().ends_with("/web00001/source"));
    let routes = history.iter().find(|h| h["metadata"]["routeSetup"] == "configuring").unwrap();
    assert_eq!(routes["metadata"]["containerName"], active["containerName"]);
    assert_eq!(routes["metadata"]["containerId"].as_str().unwrap().len(), 64);

    // The container: labels, the port on 127.0.0.1 only, limits, restart policy, env.
    let name = active["containerName"].as_str().unwrap();
    let inspect: Value = serde_json::from_str(&docker(&["inspect", name])).unwrap();
    let c = &inspect[0];
    assert_eq!(c["Config"]["Labels"]["phased.deployment"], "web00001");
    assert_eq!(c["Config"]["Labels"]["phased.service"], json!(service.0));
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(c["HostConfig"]["Memory"], 64 * 1024 * 1024);
    assert_eq!(c["HostConfig"]["NanoCpus"], 500_000_000);
    let binding = &c["NetworkSettings"]["Ports"]["8080/tcp"][0];
    assert_eq!(binding["HostIp"], "127.0.0.1");
    assert_eq!(binding["HostPort"].as_str().unwrap().parse::<u64>().unwrap(), active["port"].as_u64().unwrap());
    // The port is pinned in the container's configuration: a restart of the container
    // (as at a reboot or an engine restart) keeps it, so the route still leads there.
    assert_eq!(c["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"], binding["HostPort"]);
    docker(&["restart", "-t", "1", name]);
    let after: Value = serde_json::from_str(&docker(&["inspect", name])).unwrap();
    assert_eq!(after[0]["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"], binding["HostPort"]);
    wait_until("the restarted container serves", Duration::from_secs(10), || {
        nginx.get(&host, "/").is_ok_and(|r| r == (200, "<h1>v1</h1>".to_string()))
    });
    let envs: Vec<&str> = c["Config"]["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(envs.contains(&"GREETING=hello") && envs.contains(&format!("API_TOKEN={secret}").as_str()), "{envs:?}");

    // The build log is kept with the node's logs; the secret is nowhere on disk.
    let logs = env.path("state/logs/web00001");
    let build_log = std::fs::read_to_string(logs.join("build.log")).unwrap();
    assert!(build_log.contains("Step 1/") && build_log.contains("Successfully tagged"), "{build_log}");
    for entry in walk(env.dir.path()) {
        if entry.ends_with("inputs.yaml") {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(secret), "the secret leaked into {}", entry.display());
    }
    assert_eq!(service.containers().len(), 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&path));
        } else if entry.file_type().unwrap().is_file() {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_redeploy_replaces_the_container_with_zero_failed_requests() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("shop");
    let host = format!("{}.localhost", service.0);
    let inputs = |page: &str| json!({"service": service.0, "source": embedded(&env, busybox_app(page, true, "0.5")), "health_path": "/health"});
    assert_ok(&deploy(&env, "docker", "shop0001", inputs("v1"), Some(&nginx)));
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "v1".to_string()));
    let first = service.containers();

    let requests = support::RequestLoop::start(nginx.port, &host, &["v1", "v2"]);
    let out = deploy(&env, "docker", "shop0002", inputs("v2"), Some(&nginx));
    let result = requests.stop();
    assert_ok(&out);
    assert_eq!(result.failed, 0, "no request failed while the container was replaced");
    assert!(result.ok > 50, "the loop ran through the deploy");
    // While nginx reloads (some milliseconds), old and new workers both accept; once
    // the route step is done, every request gets the new version.
    let seen = result.seen;
    assert_eq!((seen.first().map(String::as_str), seen.last().map(String::as_str)), (Some("v1"), Some("v2")));
    for _ in 0..20 {
        assert_eq!(nginx.get(&host, "/").unwrap(), (200, "v2".to_string()));
    }
    // Exactly one container is left, the new one; the old image stays for a rollback.
    let now = service.containers();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0], format!("{0}-shop0002 running {0}:shop0002", service.0));
    let mut images = service.images();
    images.sort();
    assert_eq!(
        images,
        [format!("{}:shop0001", service.0), format!("{}:shop0002", service.0)],
        "kept for rollback (keep: 3)"
    );
    let retired = env.status("shop0002")["history"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|h| h["metadata"].get("retired").cloned())
        .unwrap();
    assert_eq!(retired, json!([first[0].split(' ').next().unwrap()]));
}

#[test]
fn a_new_version_that_never_answers_is_removed_and_the_old_one_keeps_serving() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("docs");
    let host = format!("{}.localhost", service.0);
    let inputs = |page: &str, healthy: bool| {
        json!({
            "service": service.0, "source": embedded(&env, busybox_app(page, healthy, "0")),
            "health_path": "/health", "ready_timeout": "3s",
        })
    };
    assert_ok(&deploy(&env, "docker", "docs0001", inputs("good", true), Some(&nginx)));
    let before = service.containers();
    let out = deploy(&env, "docker", "docs0002", inputs("broken", false), Some(&nginx));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "good".to_string()), "the old version serves");
    assert_eq!(service.containers(), before, "the new container was removed; the old one runs");

    let status = env.status("docs0002");
    assert_eq!((status["phase"].as_str(), status["phase_progress"].as_u64()), (Some("FAILED"), Some(0)));
    let meta = &status["phase_metadata"];
    assert_eq!(meta["failedNode"], "serve.container");
    let error = meta["error"].as_str().unwrap();
    let old = before[0].split(' ').next().unwrap();
    assert!(error.contains("did not answer 200 within 3s"), "{error}");
    assert!(error.contains(&format!("the previous container `{old}` keeps serving")), "{error}");
    assert_eq!(meta["containerName"], json!(format!("{}-docs0002", service.0)));
    assert_eq!(meta["imageTag"], json!(format!("{}:docs0002", service.0)));
    assert_eq!(meta["healthCheckUrl"], json!(format!("http://{host}:{}/health", nginx.port)));
    assert_eq!((meta["newContainerRemoved"].as_bool(), meta["routeRestored"].as_bool()), (Some(true), Some(false)));
}

/// A Node.js app: answers `/` with its version; with `ALLOWED_HOST` set, it refuses
/// other Host headers (as frameworks with an allowed-hosts list do).
fn node_app(version: &str) -> Value {
    json!({
        "package.json": "{\"name\": \"hello-node\", \"version\": \"1.0.0\", \"scripts\": {\"start\": \"node server.js\"}, \"engines\": {\"node\": \">=18\"}}",
        "package-lock.json": "{\"name\": \"hello-node\", \"version\": \"1.0.0\", \"lockfileVersion\": 3, \"requires\": true, \"packages\": {\"\": {\"name\": \"hello-node\", \"version\": \"1.0.0\"}}}",
        ".nvmrc": "20\n",
        "server.js": format!(
            "const http = require('http');\n\
             const allowed = process.env.ALLOWED_HOST;\n\
             http.createServer((req, res) => {{\n\
               if (allowed && !req.headers.host.startsWith(allowed)) {{ res.writeHead(400); return res.end('bad host'); }}\n\
               res.end('node {version}');\n\
             }}).listen(Number(process.env.PORT), () => console.log('listening on ' + process.env.PORT));\n"
        ),
        "node_modules/left-pad/index.js": "this folder must not reach the image",
    })
}

#[test]
fn a_nodejs_app_is_deployed_from_a_generated_dockerfile() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("node");
    let inputs = json!({
        "service": service.0, "source": embedded(&env, node_app("v1")),
        "base_image": "phased-test/node:{version}", "work_dir": env.path("work").display().to_string(),
    });
    let out = deploy(&env, "nodejs", "node0001", inputs, Some(&nginx));
    assert_ok(&out);
    assert_eq!(nginx.get(&format!("{}.localhost", service.0), "/").unwrap(), (200, "node v1".to_string()));

    let status = env.status("node0001");
    let phases = entered(&status);
    assert_eq!(phases[0], ("BUILDING".to_string(), 15));
    assert_eq!(phases[1..], docker_phases()[1..], "then the docker phases at 50, 75, 90, 100");
    let history = status["history"].as_array().unwrap();
    let generated = history.iter().find(|h| h["metadata"]["dockerfileGeneration"] == "completed").unwrap();
    assert_eq!((generated["phase"].as_str(), generated["progress"].as_u64()), (Some("BUILDING"), Some(25)));
    assert_eq!(generated["metadata"]["buildType"], "nodejs");
    let dockerfile = generated["metadata"]["dockerfileContent"].as_str().unwrap();
    assert!(dockerfile.contains("FROM phased-test/node:20\n"), "the version comes from .nvmrc: {dockerfile}");
    assert!(dockerfile.contains("RUN npm ci --no-audit --no-fund\n"), "{dockerfile}");
    assert!(dockerfile.contains("CMD [\"npm\", \"start\"]"), "{dockerfile}");
    // Progress never went back (the system Phased replaces went from 25 to 20 here).
    let progress: Vec<u64> = history.iter().map(|h| h["progress"].as_u64().unwrap()).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    let name = status["phase_metadata"]["containerName"].as_str().unwrap();
    let listing = docker(&["exec", name, "ls", "/app"]);
    assert!(listing.contains("server.js") && !listing.contains("node_modules"), "{listing}");
}

#[test]
fn a_failing_check_through_the_proxy_puts_the_route_back_and_removes_the_new_container() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("api");
    let host = format!("{}.localhost", service.0);
    let inputs = |version: &str, env_vars: Value| {
        json!({
            "service": service.0, "source": embedded(&env, node_app(version)), "env": env_vars,
            "base_image": "phased-test/node:{version}", "work_dir": env.path("work").display().to_string(),
        })
    };
    assert_ok(&deploy(&env, "nodejs", "api00001", inputs("v1", json!({})), Some(&nginx)));
    let before = service.containers();
    // v2 answers on its own port (127.0.0.1) but refuses the public host name.
    let out = deploy(&env, "nodejs", "api00002", inputs("v2", json!({"ALLOWED_HOST": "127.0.0.1"})), Some(&nginx));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "node v1".to_string()), "the route is back on v1");
    assert_eq!(service.containers(), before, "the new container was removed");
    let meta = env.status("api00002")["phase_metadata"].clone();
    assert_eq!(meta["failedNode"], "serve.health");
    assert_eq!(meta["reverted"], json!(["serve.routes", "serve.container"]), "{meta}");
    assert_eq!((meta["newContainerRemoved"].as_bool(), meta["routeRestored"].as_bool()), (Some(true), Some(true)));
    assert!(meta["error"].as_str().unwrap().contains("answered 400, expected 200"), "{meta}");
}

#[test]
fn a_failing_build_ends_failed_with_the_last_lines_of_the_build_log() {
    let env = Env::new();
    let service = Service::new("bad");
    let files = json!({"Dockerfile": "FROM phased-test/busybox:1\nRUN echo 'compiling assets' && echo 'error: missing module left-pad' >&2 && exit 3\n"});
    let out = deploy(&env, "docker", "bad00001", json!({"service": service.0, "source": embedded(&env, files)}), None);
    assert_eq!(out.status.code(), Some(1));
    let meta = env.status("bad00001")["phase_metadata"].clone();
    assert_eq!((meta["failedNode"].as_str(), meta["failedPhase"].as_str()), (Some("build"), Some("BUILDING")));
    let error = meta["error"].as_str().unwrap();
    assert!(error.contains(&format!("docker build of `{}:bad00001` failed", service.0)), "{error}");
    assert!(error.contains("returned a non-zero code: 3"), "{error}");
    assert!(error.contains("last lines of the log") && error.contains("error: missing module left-pad"), "{error}");
    // `phased status ID` says where the whole log is.
    let human = String::from_utf8_lossy(&env.run(&["status", "bad00001"]).stdout).into_owned();
    let logs = env.path("state/logs/bad00001");
    assert!(human.contains(&format!("logs      {}/<node>.log", logs.display())), "{human}");
    assert!(std::fs::read_to_string(logs.join("build.log")).unwrap().contains("error: missing module left-pad"));
    assert!(service.containers().is_empty());
}

#[test]
fn an_unreachable_engine_exits_3_naming_the_socket_and_the_run_resumes_once_it_is_back() {
    let env = Env::new();
    let service = Service::new("env");
    let socket = env.path("no-dockerd.sock");
    let inputs =
        json!({"service": service.0, "source": embedded(&env, busybox_app("up", true, "0")), "health_path": "/health"});
    let out = deploy_with(
        &env,
        "docker",
        "env00001",
        inputs,
        None,
        &[("DOCKER_HOST", &format!("unix://{}", socket.display()))],
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot reach the Docker engine at unix://{}", socket.display())), "{stderr}");
    assert!(stderr.contains("is dockerd running"), "{stderr}");
    let status = env.status("env00001");
    assert_eq!(status["status"], "failed");
    assert_eq!(status["phase_metadata"]["failedNode"], "build");

    // The engine is back (the right address): resume builds and serves, the source is not pulled again.
    let out = resume(&env, "env00001");
    assert_ok(&out);
    let events = support::events(&out.stdout);
    assert!(!events.iter().any(|e| e["event"] == "node_started" && e["node"] == "source.generate"), "source reused");
    let port = env.status("env00001")["phase_metadata"]["port"].as_u64().unwrap() as u16;
    assert_eq!(support::http_get(port, "127.0.0.1", "/").unwrap(), (200, "up".to_string()));
}

#[test]
fn docker_host_over_tcp_with_tls_works_as_the_docker_cli_does() {
    let env = Env::new();
    let service = Service::new("tls");
    let inputs = json!({"service": service.0, "source": embedded(&env, busybox_app("over tls", true, "0")), "health_path": "/health"});
    // Without the TLS settings, the engine refuses plain HTTP: exit 3, naming the host.
    let out = deploy_with(&env, "docker", "tls00001", inputs.clone(), None, &[("DOCKER_HOST", TLS_HOST)]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("Docker engine at {TLS_HOST}")));
    // With DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as for `docker`, it works.
    let tls = [("DOCKER_HOST", TLS_HOST), ("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", TLS_DIR)];
    let cli = Command::new("docker").arg("version").envs(tls).output().unwrap();
    assert!(cli.status.success(), "the docker CLI itself reaches the engine this way");
    let out = deploy_with(&env, "docker", "tls00002", inputs, None, &tls);
    assert_ok(&out);
    let port = env.status("tls00002")["phase_metadata"]["port"].as_u64().unwrap() as u16;
    assert_eq!(support::http_get(port, "127.0.0.1", "/").unwrap(), (200, "over tls".to_string()));
    let build_log = std::fs::read_to_string(env.path("state/logs/tls00002/build.log")).unwrap();
    assert!(build_log.contains(&format!("on {TLS_HOST}")), "{build_log}");
}

/// Starts `phased run docker` in the background with the inputs of `deploy`.
fn spawn_deploy(env: &Env, id: &str, inputs: Value, nginx: &Nginx) -> std::process::Child {
    run_command(env, "docker", id, inputs, Some(nginx))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn resume(env: &Env, id: &str) -> std::process::Output {
    phased(env, &["resume", id, "--format", "jsonl"]).output().unwrap()
}

fn started(out: &std::process::Output) -> Vec<String> {
    support::events(&out.stdout)
        .into_iter()
        .filter(|e| e["event"] == "node_started")
        .map(|e| e["node"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kill_9_during_the_build_then_resume_leaves_one_container_serving_the_new_version() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("crash");
    let host = format!("{}.localhost", service.0);
    let app = |page: &str, slow: bool| {
        let mut files = busybox_app(page, true, "0");
        if slow {
            let dockerfile = files["Dockerfile"].as_str().unwrap().replace("EXPOSE", "RUN sleep 3\nEXPOSE");
            files["Dockerfile"] = json!(dockerfile);
        }
        json!({"service": service.0, "source": embedded(&env, files), "health_path": "/health"})
    };
    assert_ok(&deploy(&env, "docker", "crash001", app("v1", false), Some(&nginx)));

    let mut child = spawn_deploy(&env, "crash002", app("v2", true), &nginx);
    let log = env.path("state/logs/crash002/build.log");
    wait_until("the build runs its slow step", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("RUN sleep 3")
    });
    support::kill9(&mut child);
    assert_eq!(env.status("crash002")["status"], "interrupted");
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "v1".to_string()), "v1 serves while v2 is interrupted");

    let out = resume(&env, "crash002");
    assert_ok(&out);
    let nodes = started(&out);
    assert!(nodes.contains(&"build".to_string()) && !nodes.contains(&"source.generate".to_string()), "{nodes:?}");
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "v2".to_string()));
    let containers = service.containers();
    assert_eq!(containers, vec![format!("{0}-crash002 running {0}:crash002", service.0)], "exactly one container");
}

#[test]
fn kill_9_after_the_container_was_created_then_resume_reuses_it() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("half");
    let host = format!("{}.localhost", service.0);
    // The new version takes 3 s to listen, which leaves time to kill phased while it waits.
    let app = |page: &str, delay: &str| json!({"service": service.0, "source": embedded(&env, busybox_app(page, true, delay)), "health_path": "/health"});
    assert_ok(&deploy(&env, "docker", "half0001", app("v1", "0"), Some(&nginx)));

    let mut child = spawn_deploy(&env, "half0002", app("v2", "3"), &nginx);
    // (A build's intermediate containers carry the deployment label too; only the
    // container `docker.run` made is labelled with its node.)
    let filters = ["--filter", "label=phased.deployment=half0002", "--filter", "label=phased.node=serve.container"];
    let list = |extra: &[&str]| docker(&[&["ps", "-aq"], extra, &filters[..]].concat());
    wait_until("the new container exists", Duration::from_secs(60), || !list(&[]).is_empty());
    support::kill9(&mut child);
    let made = list(&["--no-trunc"]);
    assert_eq!(made.lines().count(), 1);
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "v1".to_string()), "v1 serves while v2 is interrupted");

    let out = resume(&env, "half0002");
    assert_ok(&out);
    let nodes = started(&out);
    assert!(nodes.contains(&"serve.container".to_string()) && !nodes.contains(&"build".to_string()), "{nodes:?}");
    let reused = support::events(&out.stdout)
        .into_iter()
        .find(|e| e["event"] == "node_succeeded" && e["node"] == "serve.container")
        .unwrap();
    assert_eq!(reused["metadata"]["containerId"], json!(made.trim()), "the half-made container was reused");
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "v2".to_string()));
    assert_eq!(service.containers(), vec![format!("{0}-half0002 running {0}:half0002", service.0)]);
}

#[test]
fn through_caddy_a_failed_check_puts_the_previous_upstream_back() {
    let env = Env::new();
    let caddy = support::Caddy::start(&env.path("caddy"));
    let service = Service::new("cad");
    let host = format!("{}.localhost", service.0);
    let inputs = |version: &str, env_vars: Value| {
        json!({
            "service": service.0, "source": embedded(&env, node_app(version)), "env": env_vars,
            "base_image": "phased-test/node:{version}", "work_dir": env.path("work").display().to_string(),
            "proxy": "caddy", "caddy_admin": caddy.admin, "listen": format!("127.0.0.1:{}", caddy.port),
        })
    };
    let run = |id: &str, inputs: Value| run_command(&env, "nodejs", id, inputs, None).output().unwrap();
    assert_ok(&run("cad00001", inputs("v1", json!({}))));
    assert_ok(&run("cad00002", inputs("v2", json!({}))));
    assert_eq!(caddy.get(&host, "/").unwrap(), (200, "node v2".to_string()));
    let out = run("cad00003", inputs("v3", json!({"ALLOWED_HOST": "127.0.0.1"})));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(caddy.get(&host, "/").unwrap(), (200, "node v2".to_string()), "caddy routes to v2 again");
    assert_eq!(service.containers(), vec![format!("{0}-cad00002 running {0}:cad00002", service.0)]);
    let meta = env.status("cad00003")["phase_metadata"].clone();
    assert_eq!(meta["routeRestored"], true, "{meta}");
}

#[test]
fn a_fixed_host_port_is_published_and_a_redeploy_on_it_says_what_to_do() {
    let env = Env::new();
    let service = Service::new("fixed");
    let port = support::free_port();
    let inputs = |page: &str| {
        json!({
            "service": service.0, "source": embedded(&env, busybox_app(page, true, "0")),
            "health_path": "/health", "host_port": port,
        })
    };
    assert_ok(&deploy(&env, "docker", "fixed001", inputs("one"), None));
    assert_eq!(support::http_get(port, "127.0.0.1", "/").unwrap(), (200, "one".to_string()));
    let out = deploy(&env, "docker", "fixed002", inputs("two"), None);
    assert_eq!(out.status.code(), Some(1));
    let error = env.status("fixed002")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert!(
        error.contains(&format!("host port {port} is taken")) && error.contains("leave `host_port` unset"),
        "{error}"
    );
    assert_eq!(support::http_get(port, "127.0.0.1", "/").unwrap(), (200, "one".to_string()), "the first still serves");
    assert_eq!(service.containers(), vec![format!("{0}-fixed001 running {0}:fixed001", service.0)]);
}

#[test]
fn watch_redeploys_a_nodejs_app_when_its_code_changes() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("live");
    let host = format!("{}.localhost", service.0);
    let app = env.path("app");
    for (name, text) in node_app("v1").as_object().unwrap() {
        if !name.starts_with("node_modules") {
            env.write(&format!("app/{name}"), text.as_str().unwrap());
        }
    }
    let mut args: Vec<String> = vec!["watch".into(), "nodejs".into(), "--path".into(), app.display().to_string()];
    let inputs = [
        format!("service={}", service.0),
        "source.type=local".to_string(),
        format!("source.path={}", app.display()),
        "base_image=phased-test/node:{version}".to_string(),
        format!("work_dir={}", env.path("work").display()),
        "drain=0s".to_string(),
    ];
    for input in inputs.into_iter().chain(nginx.inputs()) {
        args.extend(["-i".to_string(), input]);
    }
    args.extend(["--format".to_string(), "jsonl".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let watch = support::Watch::spawn(phased(&env, &args));
    watch.wait_runs_ended(1, Duration::from_secs(120));
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "node v1".to_string()));

    let server = std::fs::read_to_string(app.join("server.js")).unwrap();
    std::fs::write(app.join("server.js"), server.replace("node v1", "node v2")).unwrap();
    watch.wait_runs_ended(2, Duration::from_secs(120));
    assert_eq!(watch.count("run_succeeded"), 2, "{}", watch.stderr.lock().unwrap());
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "node v2".to_string()));
    assert_eq!(service.containers().len(), 1, "the first container was retired");
    // The generated Dockerfile is written outside the watched folder: no loop.
    watch.assert_quiet(2, Duration::from_secs(2));
    let (code, _) = watch.stop();
    assert_eq!(code, 130);
}

#[test]
fn runs_whose_ids_start_alike_never_share_a_container() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("ids");
    let host = format!("{}.localhost", service.0);
    let inputs = |page: &str| json!({"service": service.0, "source": embedded(&env, busybox_app(page, true, "0")), "health_path": "/health"});
    assert_ok(&deploy(&env, "docker", "release-2026-1", inputs("one"), Some(&nginx)));
    // The same first 8 characters (the image tag's short id), another run.
    let requests = support::RequestLoop::start(nginx.port, &host, &["one", "two"]);
    assert_ok(&deploy(&env, "docker", "release-2026-2", inputs("two"), Some(&nginx)));
    let result = requests.stop();
    assert_eq!(result.failed, 0, "the serving container was never replaced in place");
    assert_eq!(nginx.get(&host, "/").unwrap(), (200, "two".to_string()));
    let names: Vec<String> = service.containers().iter().map(|c| c.split(' ').next().unwrap().to_string()).collect();
    assert_eq!(names, vec![format!("{}-release-2026-2", service.0)]);
}

#[test]
fn an_image_missing_from_the_engine_is_pulled_from_its_registry() {
    let env = Env::new();
    let service = Service::new("pull");
    let dir = env.path("registry");
    std::fs::create_dir_all(&dir).unwrap();
    // A real registry (Debian's docker-registry) on its own port; the engine allows
    // plain HTTP to registries on 127.0.0.0/8.
    let (child, port) = support::start_on_free_port("docker-registry", |port| {
        let config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry is installed (scripts/docker-engine)")
    });
    let _registry = support::Server(child);
    let image = format!("127.0.0.1:{port}/{}:1", service.0);
    docker(&["tag", "phased-test/busybox:1", &image]);
    docker(&["push", &image]);
    docker(&["rmi", &image]);
    let pipeline = format!(
        "version: 1\nname: pull\nnodes:\n  run:\n    phase: COPYING_FILES\n    uses: docker.run\n    with:\n      \
         image: \"{image}\"\n      name: {0}-pulled\n      service: {0}\n      port: 8080\n      init: true\n      \
         command: [sh, -c, 'mkdir -p /w && echo pulled > /w/index.html && exec httpd -f -p 8080 -h /w']\n      \
         ready: {{path: /, timeout: 20s}}\n",
        service.0
    );
    let file = env.write("pull.yaml", &pipeline);
    let out = phased(&env, &["run", file.to_str().unwrap(), "--id", "pull0001", "--format", "jsonl"]).output().unwrap();
    assert_ok(&out);
    let log = std::fs::read_to_string(env.path("state/logs/pull0001/run.log")).unwrap();
    assert!(log.contains(&format!("image {image} is not in the engine; pulling it")), "{log}");
    let port: u16 =
        docker(&["port", &format!("{}-pulled", service.0), "8080/tcp"]).rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(support::http_get(port, "127.0.0.1", "/").unwrap(), (200, "pulled\n".to_string()));
    docker(&["rmi", "-f", &image]);
}

/// node -> started_at of the checkpoints recorded as succeeded.
fn succeeded_at(env: &Env, id: &str) -> std::collections::HashMap<String, Option<String>> {
    let db = env.sqlite();
    let mut stmt = db
        .prepare("SELECT node, started_at FROM node_checkpoints WHERE deployment_id = ?1 AND status = 'succeeded'")
        .unwrap();
    stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// The crash points (src/crash.rs) of a docker redeploy, each in turn: the process
/// aborts there, the old container keeps serving until the new one is routed, and the
/// resume ends ACTIVE with one container of the service, nothing that had finished
/// run again and no duplicate container.
#[test]
fn a_crash_at_every_point_of_a_docker_redeploy_resumes_active_with_one_container_serving() {
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("crash");
    let host = format!("{}.localhost", service.0);
    let inputs = |page: &str| json!({"service": service.0, "source": embedded(&env, busybox_app(page, true, "0")), "health_path": "/health", "drain": "0s"});
    assert_ok(&deploy(&env, "docker", "crash000", inputs("v0"), Some(&nginx)));
    let list = env.path("points.txt");
    let listed = deploy_with(
        &env,
        "docker",
        "crash001",
        inputs("v1"),
        Some(&nginx),
        &[("PHASED_CRASH_LIST", list.to_str().unwrap())],
    );
    assert_ok(&listed);
    let points: Vec<String> =
        std::fs::read_to_string(&list).unwrap().lines().map(|l| l.split_once(' ').unwrap().1.to_string()).collect();
    for wanted in [
        "docker.build: the image built",
        "docker.run: the container created",
        "docker.run: the container started",
        "docker.retire",
    ] {
        assert!(points.iter().any(|p| p.starts_with(wanted)), "no `{wanted}` point in {points:?}");
    }
    let mut live = "v1".to_string();
    let mut crashed = 0;
    for (i, point) in points.iter().enumerate() {
        let k = i + 1;
        let id = format!("k{k:03}");
        let page = format!("v-{k}");
        let reached = env.path(&format!("points-{k}.txt"));
        let vars = [("PHASED_CRASH_AT", k.to_string()), ("PHASED_CRASH_LIST", reached.display().to_string())];
        let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let out = deploy_with(&env, "docker", &id, inputs(&page), Some(&nginx), &vars);
        let count = std::fs::read_to_string(&reached).map(|t| t.lines().count()).unwrap_or(0);
        if out.status.code() == Some(0) && count < k {
            // This run had fewer points (its writes were batched into fewer commits):
            // there was no point k to crash at.
            live = page;
            continue;
        }
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "point {k} ({point}) was not reached: {out:?}");
        crashed += 1;
        let (code, body) = nginx.get(&host, "/").unwrap();
        assert!(
            code == 200 && (body == live || body == page),
            "point {k} ({point}): the service answers {code} {body}"
        );
        let before = succeeded_at(&env, &id);
        let resumed = resume(&env, &id);
        assert_eq!(resumed.status.code(), Some(0), "point {k} ({point}): {}", env.status(&id)["error"]);
        assert_eq!(nginx.get(&host, "/").unwrap(), (200, page.clone()), "point {k}");
        let containers = service.containers();
        assert_eq!(containers.len(), 1, "point {k} ({point}): one container is left: {containers:?}");
        assert!(containers[0].starts_with(&format!("{}-{id} running", service.0)), "{containers:?}");
        let after = succeeded_at(&env, &id);
        for (node, started) in &before {
            assert_eq!(&after[node], started, "point {k} ({point}): `{node}` had finished and ran again");
        }
        live = page;
    }
    println!("docker redeploy: {} crash points, {crashed} crashed and resumed ACTIVE", points.len());
    assert!(crashed * 4 >= points.len() * 3, "{crashed} of {} points crashed", points.len());
}

#[test]
fn a_rollback_runs_the_old_image_again_without_a_build_and_with_zero_failed_requests() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let service = Service::new("back");
    let host = format!("{}.localhost", service.0);
    let inputs = |page: &str, keep: u32| {
        json!({"service": service.0, "source": embedded(&env, busybox_app(page, true, "0.3")), "health_path": "/health",
               "env": {"GREETING": page}, "keep": keep})
    };
    assert_ok(&deploy(&env, "docker", "back0001", inputs("v1", 3), Some(&nginx)));
    assert_ok(&deploy(&env, "docker", "back0002", inputs("v2", 3), Some(&nginx)));
    assert_eq!(nginx.get(&host, "/").unwrap().1, "v2");

    let requests = support::RequestLoop::start(nginx.port, &host, &["v1", "v2"]);
    let out = phased(&env, &["rollback", &service.0, "--id", "back-r1", "--format", "jsonl"]).output().unwrap();
    let result = requests.stop();
    assert_ok(&out);
    assert_eq!(result.failed, 0, "no request failed");
    // While nginx reloads, its old and new workers both answer for some milliseconds.
    let seen = &result.seen;
    assert_eq!((seen.first().map(String::as_str), seen.last().map(String::as_str)), (Some("v2"), Some("v1")));
    let events = support::events(&out.stdout);
    let nodes: Vec<&str> =
        events.iter().filter(|e| e["event"] == "node_started").map(|e| e["node"].as_str().unwrap()).collect();
    assert!(!nodes.iter().any(|n| n.contains("build") || n.contains("source")), "no source, no build: {nodes:?}");
    assert!(nodes.contains(&"serve.container") && nodes.contains(&"serve.retire"), "{nodes:?}");
    for _ in 0..10 {
        assert_eq!(nginx.get(&host, "/").unwrap(), (200, "v1".to_string()));
    }
    let containers = service.containers();
    assert_eq!(containers, [format!("{0}-back-r1 running {0}:back0001", service.0)], "the old image, one container");
    let status = env.status("back-r1");
    assert_eq!(
        (status["phase_metadata"]["rollbackOf"].as_str(), status["target"].as_str()),
        (Some("back0001"), Some(service.0.as_str()))
    );

    // A third release keeping two images: the first release's image goes (it no longer
    // runs), and a rollback to it is refused before anything starts.
    assert_ok(&deploy(&env, "docker", "back0003", inputs("v3", 2), Some(&nginx)));
    let mut images = service.images();
    images.sort();
    assert_eq!(images, [format!("{}:back0002", service.0), format!("{}:back0003", service.0)]);
    let out = phased(&env, &["rollback", &service.0, "--to", "back0001"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("the image of release `back0001` is gone"), "{said}");
    assert_eq!(nginx.get(&host, "/").unwrap().1, "v3", "nothing changed");
}

/// One engine reached at an address of the test's own: a unix socket that forwards
/// to the local engine's, opened and closed by the test (a host that is down, then
/// back). Its threads stop with it.
struct EngineDoor {
    path: std::path::PathBuf,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EngineDoor {
    fn open(path: &std::path::Path) -> EngineDoor {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::Ordering;
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let running = open.clone();
        let thread = std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else { continue };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), engine.try_clone().unwrap()),
                    (engine.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        EngineDoor { path: path.to_path_buf(), open, thread: Some(thread) }
    }
}

impl Drop for EngineDoor {
    fn drop(&mut self) {
        self.open.store(false, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn the_fleet_deploys_on_three_engines_goes_on_past_one_that_is_down_and_a_resume_deploys_only_there() {
    let env = Env::new();
    let services = [Service::new("fleet-a"), Service::new("fleet-b"), Service::new("fleet-c")];
    let door = env.path("engine-c.sock");
    // Three addresses of engines: the local socket, tcp with TLS, and one that is down.
    let hosts = json!([
        {"name": "local", "docker_host": "unix:///var/run/docker.sock", "service": services[0].0},
        {"name": "tls", "docker_host": TLS_HOST, "service": services[1].0},
        {"name": "flaky", "docker_host": format!("unix://{}", door.display()), "service": services[2].0},
    ]);
    let inputs = json!({
        "service": services[0].0,
        "source": embedded(&env, busybox_app("<h1>fleet</h1>", true, "0")),
        "health_path": "/health",
        "hosts": hosts,
    });
    let file = env.write("fleet.inputs.yaml", &inputs.to_string());
    let tls = [("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", TLS_DIR)];
    let run = ["run", "docker-fleet", "--id", "fleet001", "--inputs", file.to_str().unwrap(), "--format", "jsonl"];
    let out = env.command(&run).envs(tls).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let status = env.status("fleet001");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("1 of 3 items failed (hosts[flaky])"), "{error}");
    assert!(error.contains(&format!("cannot reach the Docker engine at unix://{}", door.display())), "{error}");
    // The two engines that were up serve the new container.
    for service in &services[..2] {
        let containers = service.containers();
        assert_eq!(containers.len(), 1, "{containers:?}");
        assert!(containers[0].contains(" running "), "{containers:?}");
    }
    assert!(services[2].containers().is_empty());

    // The third host is back: the resume deploys there only.
    let _door = EngineDoor::open(&door);
    let out = env.command(&["resume", "fleet001", "--format", "jsonl"]).envs(tls).output().unwrap();
    assert_ok(&out);
    let started = started(&out);
    assert!(started.contains(&"hosts[flaky].build".to_string()), "{started:?}");
    for kept in ["source.generate", "hosts[local].build", "hosts[tls].build", "hosts[local].serve.container"] {
        assert!(!started.contains(&kept.to_string()), "{kept} finished before: {started:?}");
    }
    let status = env.status("fleet001");
    assert_eq!(status["status"], "succeeded");
    let served = &status["phase_metadata"]["hosts"];
    for name in ["local", "tls", "flaky"] {
        let port = served[name]["host_port"].as_u64().unwrap_or_else(|| panic!("{name}: {served}")) as u16;
        assert_eq!(support::http_get(port, "127.0.0.1", "/").unwrap(), (200, "<h1>fleet</h1>".to_string()), "{name}");
    }
    assert_eq!(services[2].containers().len(), 1);
}
