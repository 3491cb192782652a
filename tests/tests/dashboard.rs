//! The live dashboard in a real headless browser (Debian's chromium),
//! driven over the DevTools protocol: the page loads against a running
//! fleet, its numbers change as jobs run, and a screenshot is saved as a
//! test artifact (`target/test-artifacts/dashboard.png`).
//!
//! Skipped, with a message, where no chromium is installed (`.ci/run`
//! installs it).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use fleet_protocol::JobSpec;
use fleet_tests::{Fleet, FleetConfig};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless chromium, killed on drop.
struct Browser {
    child: std::process::Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_string)
}

fn launch(binary: &str) -> anyhow::Result<Browser> {
    let profile = tempfile::tempdir()?;
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1100",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("chromium exited before listening"))??;
        if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1) {
            break rest.split('/').next().unwrap_or_default().parse()?;
        }
    };
    // Keep draining stderr so chromium never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Browser {
        child,
        port,
        _profile: profile,
    })
}

/// One DevTools session on a new tab.
struct Tab {
    socket: Socket,
    next_id: u64,
}

impl Tab {
    async fn open(browser: &Browser, url: &str) -> anyhow::Result<Tab> {
        let target: Value = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/json/new?{url}", browser.port))
            .send()
            .await?
            .json()
            .await?;
        let ws = target["webSocketDebuggerUrl"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no debugger url in {target}"))?;
        let (socket, _) = tokio_tungstenite::connect_async(ws).await?;
        Ok(Tab { socket, next_id: 1 })
    }

    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket.send(Message::text(request.to_string())).await?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(20), self.socket.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("devtools socket closed"))??;
            let Ok(reply) = serde_json::from_str::<Value>(message.to_text().unwrap_or("")) else {
                continue;
            };
            if reply["id"] == id {
                anyhow::ensure!(reply.get("error").is_none(), "{method}: {reply}");
                return Ok(reply["result"].clone());
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await?;
        Ok(r["result"]["value"].clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_updates_live_in_a_real_browser() -> anyhow::Result<()> {
    let Some(binary) = chromium() else {
        eprintln!("SKIPPED: no chromium on this machine (apt-get install chromium)");
        return Ok(());
    };
    let fleet = Fleet::start(FleetConfig::with_agents(3, 4)).await?;
    let browser = launch(&binary)?;
    let mut tab = Tab::open(&browser, &format!("{}/", fleet.balancer_url())).await?;

    let read = |v: Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
    // The DevTools session is one mutable socket, so these waits poll by
    // hand (with a deadline) rather than through a shared closure.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        let v = read(
            tab.eval("document.getElementById('succeeded').dataset.value")
                .await?,
        );
        if v.is_some() {
            break v;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no snapshot reached the page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first, Some(0), "a fresh fleet has succeeded nothing");
    assert_eq!(
        tab.eval("document.getElementById('healthy').dataset.value")
            .await?,
        "3"
    );

    // Run work: the page's numbers follow.
    let client = fleet.client().await?;
    let ids = client
        .submit_many(vec![JobSpec::new("sleep", json!({"ms": 200})); 240])
        .await?;
    let mut saw_queue = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let queued = read(
            tab.eval("document.getElementById('queued').dataset.value")
                .await?,
        );
        saw_queue |= queued.is_some_and(|q| q > 0);
        let done = read(
            tab.eval("document.getElementById('succeeded').dataset.value")
                .await?,
        );
        if done == Some(240) {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the page never counted 240 jobs (last: {done:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .wait_many(&ids, Duration::from_secs(10), |_| {})
        .await?;
    assert!(
        saw_queue,
        "the queue depth was seen above zero while jobs ran"
    );
    let rows = tab
        .eval("document.querySelectorAll('#agent-rows tr').length")
        .await?;
    assert_eq!(rows, 3, "one table row per agent");
    let updates = read(tab.eval("document.body.dataset.updates").await?).unwrap_or(0);
    assert!(updates >= 2, "live updates arrived: {updates}");

    // A failed attempt shows among the recent failures.
    let flaky = client
        .submit(JobSpec::new("flaky", json!({"fail_attempts": 1})))
        .await?;
    client.wait(&flaky, Duration::from_secs(20)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let shown = tab
            .eval("document.getElementById('failure-list').textContent")
            .await?;
        if shown
            .as_str()
            .is_some_and(|t| t.contains("fails on purpose"))
        {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no failure shown: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let shot = tab
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap_or_default())?;
    assert!(png.starts_with(b"\x89PNG"), "a PNG came back");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("dashboard.png"), &png)?;
    Ok(())
}
