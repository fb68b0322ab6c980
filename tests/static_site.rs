//! The built-in `static` deployment type end to end: real files, a real release
//! switch, a real nginx routing by Host header, a real HTTP health check.

mod support;

use std::io::Write;

use support::{Env, Nginx};

fn run_static(env: &Env, nginx: &Nginx, id: &str, extra: &[String]) -> std::process::Output {
    let mut args: Vec<String> =
        vec!["run".into(), "static".into(), "--id".into(), id.into(), "--format".into(), "jsonl".into()];
    for input in nginx
        .inputs()
        .into_iter()
        .chain([format!("base_dir={}", env.path("srv").display())])
        .chain(extra.iter().cloned())
    {
        args.push("-i".into());
        args.push(input);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.command(&args).env("PHASED_PIPELINES", "/nonexistent").output().unwrap()
}

#[test]
fn an_embedded_site_is_published_routed_and_checked_with_the_seed_phases() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let inputs = env.write(
        "inputs.yaml",
        &format!(
            "project: blog\nsource:\n  type: embedded\n  work_dir: {}\n  files:\n    index.html: <h1>v1</h1>\n    about/index.html: about\n",
            env.path("work").display()
        ),
    );
    let out = env
        .command(&["run", "static", "--id", "site-one", "--inputs", inputs.to_str().unwrap(), "--format", "jsonl"])
        .args(nginx.inputs().iter().flat_map(|i| ["-i".to_string(), i.clone()]))
        .args(["-i".to_string(), format!("base_dir={}", env.path("srv").display())])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(nginx.get("blog.localhost", "/").unwrap(), (200, "<h1>v1</h1>".to_string()));
    assert_eq!(nginx.get("blog.localhost", "/about/").unwrap(), (200, "about".to_string()));
    assert_eq!(nginx.get("other.localhost", "/").unwrap().0, 404, "routing is by domain");

    let status = env.status("site-one");
    // Each phase is entered at the seed's percentage.
    let entered: Vec<(String, u64)> = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            h["metadata"].get("filePreparation").is_some_and(|v| v == "starting")
                || h["metadata"].get("serverSetup").is_some()
                || h["metadata"].get("routeConfiguration").is_some()
                || h["metadata"].get("verification").is_some()
                || h["phase"] == "ACTIVE"
        })
        .map(|h| (h["phase"].as_str().unwrap().to_string(), h["progress"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        entered,
        vec![
            ("COPYING_FILES".into(), 30),
            ("CREATING_SYMLINKS".into(), 60),
            ("UPDATING_ROUTES".into(), 80),
            ("HEALTH_CHECK".into(), 90),
            ("ACTIVE".into(), 100)
        ]
    );
    let history = status["history"].as_array().unwrap();
    let generated = history.iter().find(|h| h["metadata"]["generationStatus"] == "completed").unwrap();
    assert_eq!(generated["metadata"]["uploadType"], "embedded_content");
    assert!(generated["metadata"]["sourcePath"].as_str().unwrap().ends_with("/site-one/source"));
    let symlinks = history.iter().find(|h| h["phase"] == "CREATING_SYMLINKS").unwrap();
    assert_eq!(
        (symlinks["metadata"]["finalDomain"].as_str(), symlinks["metadata"]["finalSubdomain"].as_str()),
        (Some("blog.localhost"), Some("blog"))
    );
    let active = &status["phase_metadata"];
    for key in ["containerName", "domain", "healthCheckUrl", "serverImage", "deploymentCompletedAt"] {
        assert!(active.get(key).is_some(), "ACTIVE metadata has `{key}`: {active}");
    }
    let release = active["release"].as_str().unwrap();
    assert_eq!(std::fs::read_link(env.path("srv/blog/current")).unwrap().display().to_string(), release);
}

#[test]
fn a_second_deploy_from_an_upload_switches_with_zero_failed_requests() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let archive = |version: &str| {
        let path = env.path(&format!("{version}.tar.gz"));
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let body = format!("<h1>{version}</h1>");
        let mut header = tar::Header::new_gnu();
        header.set_path("site/index.html").unwrap();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, body.as_bytes()).unwrap();
        for i in 0..2000 {
            let data = format!("{version} asset {i}");
            let mut header = tar::Header::new_gnu();
            header.set_path(format!("site/assets/{i}.txt")).unwrap();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append(&header, data.as_bytes()).unwrap();
        }
        let bytes = builder.into_inner().unwrap().finish().unwrap();
        std::fs::File::create(&path).unwrap().write_all(&bytes).unwrap();
        path.display().to_string()
    };
    let upload = |version: &str| {
        vec![
            "project=shop".to_string(),
            "source.type=upload".to_string(),
            format!("source.file={}", archive(version)),
            "source.strip_components=1".to_string(),
            format!("source.work_dir={}", env.path("work").display()),
        ]
    };
    let out = run_static(&env, &nginx, "shop-1", &upload("v1"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(nginx.get("shop.localhost", "/").unwrap(), (200, "<h1>v1</h1>".to_string()));

    // A request loop while the second deploy runs.
    let requests = support::RequestLoop::start(nginx.port, "shop.localhost", &["<h1>v1</h1>", "<h1>v2</h1>"]);
    let out = run_static(&env, &nginx, "shop-2", &upload("v2"));
    let result = requests.stop();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(result.failed, 0, "no request failed during the switch");
    assert!(result.ok > 50, "the loop ran through the deploy");
    // The route does not change (it points at the live link), so the switch is one rename.
    assert_eq!(result.seen, vec!["<h1>v1</h1>", "<h1>v2</h1>"], "old, then new, never back");
    let row = env.sql(
        "SELECT metadata->>'uploadType', metadata->>'files' FROM phase_history \
         WHERE deployment_id = 'shop-2' AND metadata->>'extractionStatus' = 'completed'",
    );
    assert_eq!((row[0][0].as_deref(), row[0][1].as_deref()), (Some("direct_file"), Some("2001")));
}

#[test]
fn a_failing_health_check_makes_the_previous_release_live_again() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let deploy = |id: &str, page: &str, health: &str| {
        let inputs = env.write(
            &format!("{id}.inputs.yaml"),
            &format!(
                "project: docs\nhealth_path: {health}\nsource:\n  type: embedded\n  work_dir: {}\n  files: {{index.html: {page}}}\n",
                env.path("work").display()
            ),
        );
        env.command(&["run", "static", "--id", id, "--inputs", inputs.to_str().unwrap()])
            .args(nginx.inputs().iter().flat_map(|i| ["-i".to_string(), i.clone()]))
            .args(["-i".to_string(), format!("base_dir={}", env.path("srv").display())])
            .output()
            .unwrap()
    };
    // A first deploy that fails its health check has nothing to go back to.
    assert_eq!(deploy("docs-0", "zero", "/missing.html").status.code(), Some(1));
    let meta = env.status("docs-0")["phase_metadata"].clone();
    assert_eq!(meta["previousReleaseServing"], false, "{meta}");

    assert_eq!(deploy("docs-1", "good", "/").status.code(), Some(0));
    assert_eq!(nginx.get("docs.localhost", "/").unwrap(), (200, "good".to_string()));
    let out = deploy("docs-2", "broken", "/missing.html");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(nginx.get("docs.localhost", "/").unwrap(), (200, "good".to_string()), "the old release serves again");

    let status = env.status("docs-2");
    assert_eq!((status["phase"].as_str(), status["phase_progress"].as_u64()), (Some("FAILED"), Some(0)));
    let meta = &status["phase_metadata"];
    assert_eq!(meta["failedNode"], "health");
    assert_eq!(meta["reverted"], serde_json::json!(["symlinks"]));
    assert_eq!(meta["previousReleaseServing"], true);
    assert_eq!(meta["healthCheckUrl"], format!("http://docs.localhost:{}/missing.html", nginx.port));
    assert_eq!(meta["containerName"], "nginx");
    // The health check reports each failed request as progress within HEALTH_CHECK.
    let reached = meta["progressReached"].as_u64().unwrap();
    assert!((90..100).contains(&reached), "{meta}");
    assert!(meta["error"].as_str().unwrap().contains("answered 404, expected 200"), "{meta}");
    // The undone switch (and what came after it) will run again on resume.
    let state = |node: &str| {
        status["nodes"].as_array().unwrap().iter().find(|n| n["node"] == node).map(|n| n["status"].clone())
    };
    assert_eq!(state("symlinks"), Some("pending".into()), "{}", status["nodes"]);
    assert_eq!(state("routes"), Some("pending".into()), "{}", status["nodes"]);
}

#[test]
fn a_route_nginx_rejects_is_rolled_back_and_injection_is_refused() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let p = nginx.prefix.display().to_string();
    let pipeline = |upstream: &str| {
        format!(
            "version: 1\nname: route\nnodes:\n  route:\n    phase: UPDATING_ROUTES\n    uses: routes.update\n    with: {{domain: api.localhost, upstream: \"{upstream}\", listen: \"127.0.0.1:{}\", config_dir: {p}/routes, nginx_prefix: {p}, nginx_conf: {p}/nginx.conf}}\n",
            nginx.port
        )
    };
    let file = env.write("route.yaml", &pipeline("no-such-host.invalid:80"));
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "route-bad"]);
    assert_eq!(out.status.code(), Some(1));
    let error = env.status("route-bad")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert!(error.contains("route for `api.localhost` not applied") && error.contains("host not found"), "{error}");
    assert!(!nginx.prefix.join("routes/api.localhost.conf").exists(), "the rejected route was removed");
    assert_eq!(nginx.get("blog.localhost", "/").unwrap().0, 404, "nginx still serves");

    let file = env.write("inject.yaml", &pipeline("127.0.0.1:1; include /etc/passwd"));
    let out = env.run(&["validate", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["diagnostics"][0]["message"].as_str().unwrap().contains("`upstream` contains `;`"), "{report}");
}

#[test]
fn the_same_type_routes_through_caddy_with_its_admin_api() {
    let env = Env::new();
    let caddy = support::Caddy::start(&env.path("caddy"));
    let deploy = |id: &str, page: &str| {
        let inputs = env.write(
            &format!("{id}.inputs.yaml"),
            &format!(
                "project: wiki\nproxy: caddy\nsource:\n  type: embedded\n  work_dir: {}\n  files: {{index.html: {page}}}\n",
                env.path("work").display()
            ),
        );
        env.command(&["run", "static", "--id", id, "--inputs", inputs.to_str().unwrap()])
            .args(["-i", &format!("caddy_admin={}", caddy.admin), "-i", &format!("listen=127.0.0.1:{}", caddy.port)])
            .args(["-i", &format!("base_dir={}", env.path("srv").display())])
            .output()
            .unwrap()
    };
    let out = deploy("wiki-1", "first");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(caddy.get("wiki.localhost", "/").unwrap(), (200, "first".to_string()));
    // The second deploy replaces the route (PATCH by @id) instead of adding another.
    let out = deploy("wiki-2", "second");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(caddy.get("wiki.localhost", "/").unwrap(), (200, "second".to_string()));
    let admin_port: u16 = caddy.admin.rsplit(':').next().unwrap().parse().unwrap();
    let (status, body) =
        support::http_get(admin_port, &format!("127.0.0.1:{admin_port}"), "/config/apps/http/servers/phased/routes")
            .unwrap();
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(config.as_array().unwrap().len(), 1, "one route for the domain: {config}");
    assert_eq!(env.status("wiki-2")["phase_metadata"]["containerName"], "caddy");
}

#[test]
fn sources_unpack_beside_their_database_so_two_databases_never_share_a_folder() {
    let (a, b) = (Env::new(), Env::new());
    for (env, text) in [(&a, "from a"), (&b, "from b")] {
        let out = env
            .command(&["run", "sources/embedded", "--id", "same-id", "-i", "type=embedded"])
            .args(["-i", &format!("files.page={text}")])
            .env("PHASED_PIPELINES", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for (env, text) in [(&a, "from a"), (&b, "from b")] {
        let path = env.status("same-id")["history"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|h| h["metadata"]["sourcePath"].as_str().map(str::to_string))
            .unwrap();
        assert_eq!(path, env.path("state/work/same-id/source").display().to_string());
        assert_eq!(std::fs::read_to_string(std::path::Path::new(&path).join("page")).unwrap(), text);
    }
}

#[test]
fn http_check_over_https_trusts_the_given_ca_and_refuses_an_unknown_one() {
    let env = Env::new();
    let dir = env.path("tls");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "site.key",
        "-out",
        "site.csr",
    ]);
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "site.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "site.pem",
    ]);
    let d = dir.display().to_string();
    let (child, port) = support::start_on_free_port("nginx", |port| {
        let user = if support::running_as_root() { "user root;" } else { "" };
        let conf = format!(
            "{user}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
             events {{ worker_connections 64; }}\nhttp {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {d}/site.pem; ssl_certificate_key {d}/site.key;\n\
             location / {{ return 200 'secure ok'; }} }} }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        std::process::Command::new("nginx")
            .args(["-p", &d, "-c", &format!("{d}/nginx.conf")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    });
    let _nginx = support::Server(child);
    let pipeline = |ca: &str| {
        format!(
            "version: 1\nname: tls\nnodes:\n  check:\n    phase: HEALTH_CHECK\n    uses: http.check\n    with: {{url: \"https://localhost:{port}/\", contains: secure ok, attempts: 2, interval: 100ms{ca}}}\n"
        )
    };
    let trusted = env.write("trusted.yaml", &pipeline(&format!(", ca_file: {d}/ca.pem")));
    let out = env.run(&["run", trusted.to_str().unwrap(), "--id", "tls-ok"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Without the private CA, the certificate is not trusted: the check fails and says why.
    let untrusted = env.write("untrusted.yaml", &pipeline(""));
    let out = env.run(&["run", untrusted.to_str().unwrap(), "--id", "tls-unknown"]);
    assert_eq!(out.status.code(), Some(1));
    let error = env.status("tls-unknown")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("invalid peer certificate") && error.contains("give its certificate as `ca_file`"),
        "{error}"
    );
}
