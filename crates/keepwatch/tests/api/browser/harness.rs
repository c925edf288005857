//! The browser tests' harness: Debian's `chromedriver` on a free loopback port, headless
//! `chromium` behind it with a throw-away profile, and the few things the tests do with it
//! (wait for an element or a text, type, press keys, run axe-core, take screenshots, talk to
//! the DevTools protocol for the phone viewport and dark mode).
//!
//! Nothing here downloads a browser: without `chromedriver` (Debian's `chromium-driver`) the
//! tests fail with a message that says what to install; `.ci/run` installs it.
//! `KEEPWATCH_CHROMEDRIVER` and `KEEPWATCH_CHROMIUM` point at other binaries.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::TestApp;

/// How long a test waits for something to appear before it fails. Generous: the machine's
/// two cores are shared with builds; a healthy page answers in milliseconds.
pub const WAIT: Duration = Duration::from_secs(20);

/// The sizes the pages are tested at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewport {
    /// A laptop window, 1280×900.
    Desktop,
    /// A phone, 375×812 CSS pixels, touch and mobile layout (DevTools device emulation).
    Phone,
}

impl Viewport {
    pub fn name(self) -> &'static str {
        match self {
            Viewport::Desktop => "desktop",
            Viewport::Phone => "phone",
        }
    }
}

/// The folder the screenshots go to: `target/ui-screenshots/` (under `CARGO_TARGET_DIR`
/// when that is set).
pub fn screenshot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("ui-screenshots")
}

/// A `chromedriver` process in its own process group; dropping it ends that group (the
/// driver and the Chromium it started), even when a test panicked half-way.
struct Driver {
    child: tokio::process::Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        let program =
            std::env::var("KEEPWATCH_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let profile = tempfile::tempdir().unwrap();
        let mut command = tokio::process::Command::new(&program);
        command
            .arg("--port=0")
            .arg(format!(
                "--log-path={}",
                profile.path().join("chromedriver.log").display()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!(
                "the browser tests need chromedriver and chromium ({program}: {e}); on Debian: \
                 apt-get install -y chromium chromium-driver (.ci/run does it), or set \
                 KEEPWATCH_CHROMEDRIVER"
            ),
        };
        // "ChromeDriver was started successfully on port 41697."
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .expect("chromedriver did not say its port within 20 s")
        .expect("chromedriver exited without starting");
        // Keep reading what it prints so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _profile: profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The group the driver leads (process_group(0) above): the driver and Chromium.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

/// One headless Chromium session on the app under test.
pub struct Browser {
    pub client: Client,
    pub viewport: Viewport,
    base: String,
    cdp_url: String,
    http: reqwest::Client,
    driver: Driver,
}

impl Browser {
    /// A fresh browser (empty profile, no cookies) sized for `viewport`, on `app`.
    pub async fn start(app: &TestApp, viewport: Viewport) -> Browser {
        let driver = Driver::start().await;
        let profile = driver._profile.path().join("profile");
        let mut options = json!({
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        });
        if let Ok(binary) = std::env::var("KEEPWATCH_CHROMIUM") {
            options["binary"] = json!(binary);
        }
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": options,
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start chromium: {e}"));
        let session = client.session_id().await.unwrap().unwrap();
        let browser = Browser {
            client,
            viewport,
            base: app.address.clone(),
            cdp_url: format!("{}/session/{session}/goog/cdp/execute", driver.url),
            http: reqwest::Client::new(),
            driver,
        };
        if viewport == Viewport::Phone {
            browser
                .cdp(
                    "Emulation.setDeviceMetricsOverride",
                    json!({"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": true}),
                )
                .await;
            browser
                .cdp(
                    "Emulation.setTouchEmulationEnabled",
                    json!({"enabled": true, "maxTouchPoints": 5}),
                )
                .await;
        }
        browser
    }

    /// Ends the session (Chromium quits) and the driver.
    pub async fn close(self) {
        let Browser { client, driver, .. } = self;
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        drop(driver);
    }

    /// A DevTools protocol command through chromedriver (`goog/cdp/execute`).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        let response = self
            .http
            .post(&self.cdp_url)
            .json(&json!({"cmd": cmd, "params": params}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{cmd}: {status} {body}");
        body["value"].clone()
    }

    /// Pages see `prefers-color-scheme: dark` (or light again).
    pub async fn color_scheme(&self, scheme: &str) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    /// Loads `path` of the app and waits for the document to be complete.
    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("loading {path}: {e}"));
    }

    /// The path (and query) the browser is on.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Waits for the browser to be on `path`.
    pub async fn wait_path(&self, path: &str) {
        let started = Instant::now();
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "still on {now}, not {path}, after {WAIT:?}:\n{}",
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(25))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "no {css} on {} after {WAIT:?} ({e}):\n{}",
                self.path().await,
                self.body_text().await
            ),
        }
    }

    /// Waits until an element matching `css` contains `needle` in its text, and returns it.
    pub async fn find_text(&self, css: &str, needle: &str) -> Element {
        let started = Instant::now();
        loop {
            for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
                // The element may be replaced between the find and the read (live table).
                if let Ok(text) = element.text().await
                    && text.contains(needle)
                {
                    return element;
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "no {css} with {needle:?} on {} after {WAIT:?}:\n{}",
                self.path().await,
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The page's visible text (for failure messages and assertions).
    pub async fn body_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Clears the field `css` and types `text` into it, key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Presses and releases `key` wherever the focus is, as a person at the keyboard does.
    pub async fn press(&self, key: Key) {
        let key = char::from(key);
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(actions).await.unwrap();
    }

    /// Types `text` wherever the focus is.
    pub async fn type_keys(&self, text: &str) {
        let mut actions = KeyActions::new("keyboard".into());
        for c in text.chars() {
            actions = actions
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        self.client.perform_actions(actions).await.unwrap();
    }

    /// What has the focus: `tag#id[name=value] text`, for assertions and messages.
    pub async fn focused(&self) -> String {
        let value = self
            .client
            .execute(
                "const e = document.activeElement; if (!e) return '';
                 return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                   (e.name ? '[' + e.name + '=' + (e.value || '') + ']' : '') + ' ' +
                   (e.textContent || '').trim().slice(0, 40);",
                vec![],
            )
            .await
            .unwrap();
        value.as_str().unwrap_or_default().to_string()
    }

    /// Presses Tab until the focus is on something `focused()` describes with `want`
    /// (at most 60 presses); fails if it never gets there.
    pub async fn tab_to(&self, want: &str) {
        let mut seen = Vec::new();
        for _ in 0..60 {
            self.press(Key::Tab).await;
            let now = self.focused().await;
            if now.contains(want) {
                return;
            }
            seen.push(now);
        }
        panic!("Tab never reached {want:?}; focus went through {seen:#?}");
    }

    /// Waits until the page's script says the dashboard's event stream is open (see
    /// [`Browser::instrument_event_source`]).
    pub async fn wait_stream_open(&self) {
        let started = Instant::now();
        loop {
            let open = self
                .client
                .execute("return window.__kwStreamOpen === true;", vec![])
                .await
                .unwrap();
            if open == Value::Bool(true) {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "the dashboard's event stream did not open within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Makes every page note, in `window.__kwStreamOpen`, when an `EventSource` it opens is
    /// connected, so a test knows the live dashboard is listening before it pings. Test-only
    /// (a DevTools script run before the page's own), the page is not changed.
    pub async fn instrument_event_source(&self) {
        self.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "(() => {
                const Original = window.EventSource;
                if (!Original) return;
                window.EventSource = function (url, options) {
                    const source = new Original(url, options);
                    source.addEventListener('open', () => { window.__kwStreamOpen = true; });
                    return source;
                };
                window.EventSource.prototype = Original.prototype;
            })();"}),
        )
        .await;
    }

    /// Waits (in the page, with a MutationObserver, so without polling delay) until an
    /// element matching `css` has `needle` in its text; false if not within `limit`.
    pub async fn until_text(&self, css: &str, needle: &str, limit: Duration) -> bool {
        let script = "
            const [css, needle, limit, done] = arguments;
            const ok = () => Array.from(document.querySelectorAll(css))
                .some((e) => e.textContent.includes(needle));
            if (ok()) { done(true); return; }
            const observer = new MutationObserver(() => {
                if (ok()) { observer.disconnect(); done(true); }
            });
            observer.observe(document.documentElement,
                { subtree: true, childList: true, characterData: true });
            setTimeout(() => { observer.disconnect(); done(ok()); }, limit);";
        let result = self
            .client
            .execute_async(
                script,
                vec![json!(css), json!(needle), json!(limit.as_millis() as u64)],
            )
            .await
            .unwrap();
        result == Value::Bool(true)
    }

    /// A computed style property of the first element matching `css`.
    pub async fn style(&self, css: &str, property: &str) -> String {
        self.find(css).await.css_value(property).await.unwrap()
    }

    /// Writes a full-page PNG of what the browser shows to
    /// `target/ui-screenshots/<name>-<viewport>.png`.
    pub async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let width = size["width"].as_f64().unwrap_or(1280.0);
        let height = size["height"].as_f64().unwrap_or(900.0).min(8000.0);
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{}.png", self.viewport.name()));
        std::fs::write(&path, png).unwrap();
    }

    /// Runs axe-core (vendored under `tests/vendor/`) on the page as it is and returns its
    /// violations (`id`, `impact`, `help`, `nodes`). Fails if axe did not run its rules.
    pub async fn axe_violations(&self, page: &str) -> Vec<Value> {
        const AXE: &str = include_str!("../../vendor/axe.min.js");
        self.client.execute(AXE, vec![]).await.unwrap();
        let script = "
            const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ['violations'] })
              .then((r) => done({
                rules: r.passes.length + r.violations.length + r.incomplete.length,
                violations: r.violations.map((v) => ({
                  id: v.id, impact: v.impact, help: v.help,
                  nodes: v.nodes.map((n) => n.target.join(' ') + ': ' + n.failureSummary),
                })),
              }))
              .catch((e) => done({ error: String(e) }));";
        let result = self.client.execute_async(script, vec![]).await.unwrap();
        assert!(
            result.get("error").is_none(),
            "axe failed on {page}: {result}"
        );
        // A page with no rule run at all would pass silently: axe must have looked.
        assert!(
            result["rules"].as_u64().unwrap_or(0) > 10,
            "axe ran no rules on {page}: {result}"
        );
        result["violations"].as_array().unwrap().clone()
    }

    /// Runs axe-core on the page. Fails on any violation of impact serious or critical;
    /// prints the others. Returns the number of violations.
    pub async fn axe(&self, page: &str) -> usize {
        let violations = self.axe_violations(page).await;
        let mut bad = Vec::new();
        for v in &violations {
            let impact = v["impact"].as_str().unwrap_or("");
            let line = format!(
                "{page} ({}): {impact} {}: {}\n    {}",
                self.viewport.name(),
                v["id"].as_str().unwrap_or(""),
                v["help"].as_str().unwrap_or(""),
                v["nodes"]
                    .as_array()
                    .map(|n| n
                        .iter()
                        .map(|n| n.as_str().unwrap_or("").replace('\n', " "))
                        .collect::<Vec<_>>()
                        .join("\n    "))
                    .unwrap_or_default()
            );
            eprintln!("axe: {line}");
            if impact == "serious" || impact == "critical" {
                bad.push(line);
            }
        }
        assert!(
            bad.is_empty(),
            "serious or critical accessibility violations:\n{}",
            bad.join("\n")
        );
        violations.len()
    }

    /// Signs in through the login form (typing, then the button).
    pub async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/ui/login").await;
        self.type_into("#email", email).await;
        self.type_into("#password", password).await;
        self.find("form button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        self.find("header.top nav").await;
    }
}
