//! A real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromedriver`, with fantoccini as the client), with a blocking API for the tests:
//! go to a page, click, type, wait until a script in the page says yes, take a
//! screenshot, run axe-core in the page.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::service::Service;
use super::{Server, start_on_free_port};

pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    _driver: Server,
    _profile: tempfile::TempDir,
}

/// Where the screenshots go: `target/tmp/screenshots/<test>-<name>.png`.
pub fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// A new browser (its own empty profile), `width` x `height` pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        Browser::start_with(width, height, &[])
    }

    /// With more Chromium switches (`--force-dark-mode`: the system's dark scheme).
    pub fn start_with(width: u32, height: u32, switches: &[&str]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (driver, port) = start_on_free_port("chromedriver", |port| {
            Command::new("chromedriver")
                .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (apt install chromium-driver; scripts/test-deps installs it)")
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (size, dir) =
            (format!("--window-size={width},{height}"), format!("--user-data-dir={}", profile.path().display()));
        let mut args = vec![
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &size,
            &dir,
        ];
        args.extend_from_slice(switches);
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = rt
            .block_on(async {
                ClientBuilder::rustls()
                    .expect("a TLS config")
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await
            })
            .expect("a Chromium session");
        let browser = Browser { rt, client: Some(client), _driver: Server(driver), _profile: profile };
        browser.rt.block_on(browser.client().set_window_size(width, height)).unwrap();
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("open")
    }

    pub fn goto(&self, url: &str) {
        self.rt.block_on(self.client().goto(url)).unwrap();
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt.block_on(self.client().execute(script, args)).unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until `expression` is truthy in the page; panics with `what` (and the page's
    /// text) after `limit`.
    pub fn wait(&self, expression: &str, what: &str, limit: Duration) {
        let script = format!("try {{ return !!({expression}); }} catch (e) {{ return false; }}");
        let begin = Instant::now();
        while self.js(&script, vec![]) != Value::Bool(true) {
            if begin.elapsed() > limit {
                let text = self.js("return document.body.innerText", vec![]);
                panic!("waited {limit:?} for {what} ({expression}); the page says:\n{}", text.as_str().unwrap_or(""));
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// Clicks the element `css` finds, as a user would (a real pointer event). A live
    /// page may redraw the element between finding and clicking it: then it is found
    /// again.
    pub fn click(&self, css: &str) {
        for attempt in 1.. {
            match self.rt.block_on(async { self.client().find(Locator::Css(css)).await?.click().await }) {
                Ok(()) => return,
                Err(e) if attempt < 5 && e.to_string().contains("stale element") => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Types `text` into the element `css` finds (real key events).
    pub fn type_into(&self, css: &str, text: &str) {
        self.rt
            .block_on(async { self.client().find(Locator::Css(css)).await?.send_keys(text).await })
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Types `keys` where the focus is (WebDriver keys: `\u{E004}` Tab, `\u{E007}`
    /// Enter, `\u{E015}` arrow down), as a user at a keyboard would.
    pub fn keys(&self, keys: &str) {
        self.rt
            .block_on(async { self.client().active_element().await?.send_keys(keys).await })
            .unwrap_or_else(|e| panic!("keys {keys:?}: {e}"));
    }

    /// Whether `css` finds anything on the page.
    pub fn has(&self, css: &str) -> bool {
        self.js("return document.querySelector(arguments[0]) !== null", vec![json!(css)]) == Value::Bool(true)
    }

    pub fn text(&self, css: &str) -> String {
        let v = self
            .js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null", vec![json!(css)]);
        v.as_str().unwrap_or_else(|| panic!("nothing matches {css}")).to_string()
    }

    /// Writes a PNG of the viewport to [`screenshots`] and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.rt.block_on(self.client().screenshot()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = screenshots().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Runs axe-core (the npm package scripts/test-deps installs) on the page; the
    /// violations of impact `serious` or `critical`, as `rule: target, ...` lines.
    pub fn serious_accessibility_violations(&self) -> Vec<String> {
        let dir = std::env::var("PHASED_TEST_NODE").unwrap_or_else(|_| "/var/lib/phased-test/node".into());
        let axe = std::fs::read_to_string(format!("{dir}/node_modules/axe-core/axe.min.js"))
            .expect("axe-core (scripts/test-deps installs it)");
        self.js(&format!("{axe}\nreturn true;"), vec![]);
        let result = self
            .rt
            .block_on(self.client().execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({
                     id: v.id, impact: v.impact, help: v.help,
                     targets: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))),
                   e => done([{id: 'axe-error', impact: 'critical', help: String(e), targets: []}]));",
                vec![],
            ))
            .unwrap();
        result
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| format!("{} ({}): {}", v["id"], v["help"], v["targets"]))
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), client.close()).await });
        }
    }
}

/// The address of `path` on a `phased serve` of the test's.
pub fn url(server: &Service, path: &str) -> String {
    format!("http://127.0.0.1:{}/{path}", server.port)
}

/// Signs in through the page's form (typing the token, then Enter).
pub fn sign_in(browser: &Browser, server: &Service, token: &str) {
    browser.goto(&url(server, ""));
    browser.wait("document.querySelector('#signin #token')", "the sign-in form", Duration::from_secs(30));
    browser.type_into("#token", &format!("{token}\u{E007}"));
    browser.wait("document.querySelector('#who').textContent.length > 0", "signed in", Duration::from_secs(30));
}

/// Fails the test on any serious axe-core finding on the page shown.
pub fn assert_accessible(browser: &Browser, page: &str) {
    let violations = browser.serious_accessibility_violations();
    assert!(violations.is_empty(), "{page}: serious accessibility violations:\n{}", violations.join("\n"));
}
