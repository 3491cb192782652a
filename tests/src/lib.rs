//! The end-to-end test harness: real `nats-server -js`, real
//! `redis-server`, and the real fleet binaries, on free loopback ports with
//! temporary directories. No mocks.
//!
//! [`Fleet::start`] brings up a whole fleet and tears it down (SIGKILL) when
//! dropped; if the test failed, the tail of every process log is printed.
//! Binaries are looked up next to the test executable (`target/<profile>/`),
//! so `cargo build --workspace` must run before `cargo test` (the
//! `scripts/test` command does both).

pub mod metrics;
pub mod nats_roles;
pub mod pki;
pub mod process;
pub mod servers;
pub mod spy;
pub mod wait;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

pub use nats_roles::{NatsRoles, Role};
pub use pki::TestPki;
pub use process::Process;
pub use servers::{NatsServer, NatsSetup, RedisServer, RedisSetup};
pub use spy::EventSpy;
pub use wait::wait_until;

/// Agent `id`'s line in a stats document; `Null` when it is not listed.
pub fn agent_entry(stats: &Value, id: &str) -> Value {
    stats["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["agent_id"] == id).cloned())
        .unwrap_or(Value::Null)
}

/// Where the fleet binaries are: `$FLEET_BIN_DIR`, else the directory the
/// test executable was built into.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("FLEET_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-binary>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("cannot locate the target directory")?;
    Ok(dir.to_path_buf())
}

/// The path of one fleet binary, checked to exist.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: run `cargo build --workspace` before the tests (scripts/test does)",
        path.display()
    );
    Ok(path)
}

/// The directory holding NVRTC (`libnvrtc.so.13`): `$FLEET_TEST_NVRTC_DIR`,
/// else the wheel `scripts/install-servers` puts in `.tools/venv`.
pub fn nvrtc_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("FLEET_TEST_NVRTC_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/lib");
    let found = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/nvidia/cu13/lib"))
        .find(|dir| dir.join("libnvrtc.so.13").exists());
    found.with_context(|| {
        format!(
            "NVRTC not found under {}: run scripts/install-servers (or set FLEET_TEST_NVRTC_DIR)",
            lib.display()
        )
    })
}

/// Settings of one test fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// `(id, slots)` of each agent to start.
    pub agents: Vec<(String, u32)>,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    /// Extra flags for the balancer.
    pub balancer_args: Vec<String>,
    /// Extra flags for every agent.
    pub agent_args: Vec<String>,
    /// Run NATS with the shipped `deploy/nats.conf` and these credentials
    /// (each process connects as its role); `None`: an open server.
    pub nats_roles: Option<NatsRoles>,
    /// Run Redis with this ACL user `(name, password)` and no default user.
    pub redis_acl: Option<(String, String)>,
    /// Run NATS and Redis over TLS only, both verifying client
    /// certificates, with a CA made for this fleet ([`Fleet::pki`]).
    pub tls: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            agents: Vec::new(),
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(3),
            balancer_args: Vec::new(),
            agent_args: Vec::new(),
            nats_roles: None,
            redis_acl: None,
            tls: false,
        }
    }
}

impl FleetConfig {
    /// How fast the failure tests notice faults: heartbeats every 300 ms,
    /// an agent dead after 1.5 s of silence, sweeps every 200 ms, 1 s to
    /// confirm a start.
    pub const QUICK_HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(1500);
    pub const QUICK_SWEEP: Duration = Duration::from_millis(200);

    /// `n` agents (as [`FleetConfig::with_agents`]) under quick failure
    /// detection ([`FleetConfig::QUICK_HEARTBEAT_TIMEOUT`]).
    pub fn quick_detection(n: usize, slots: u32) -> FleetConfig {
        FleetConfig {
            heartbeat_interval: Duration::from_millis(300),
            heartbeat_timeout: Self::QUICK_HEARTBEAT_TIMEOUT,
            balancer_args: vec![
                "--sweep-interval".into(),
                format!("{}ms", Self::QUICK_SWEEP.as_millis()),
                "--accept-timeout".into(),
                "1s".into(),
            ],
            ..FleetConfig::with_agents(n, slots)
        }
    }

    /// `n` agents named `agent-0` … with `slots` each.
    pub fn with_agents(n: usize, slots: u32) -> FleetConfig {
        FleetConfig {
            agents: (0..n).map(|i| (format!("agent-{i}"), slots)).collect(),
            ..FleetConfig::default()
        }
    }
}

/// A running fleet: servers, one balancer, agents.
pub struct Fleet {
    pub config: FleetConfig,
    pub nats: NatsServer,
    pub redis: RedisServer,
    pub balancer: Process,
    pub agents: Vec<Process>,
    pub http_port: u16,
    /// The test CA and certificates, when the fleet runs over TLS.
    pub pki: Option<TestPki>,
    pub dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts everything and waits until every agent is registered and healthy.
    pub async fn start(config: FleetConfig) -> anyhow::Result<Fleet> {
        let dir = tempfile::Builder::new().prefix("fleet-test-").tempdir()?;
        let pki = match config.tls {
            true => Some(TestPki::generate(&dir.path().join("pki"))?),
            false => None,
        };
        let mut setup = config
            .nats_roles
            .as_ref()
            .map(NatsRoles::setup)
            .unwrap_or_default();
        if let Some(pki) = &pki {
            setup.tls = true;
            setup.args.extend([
                "--tlsverify".to_string(),
                "--tlscert".into(),
                pki.server_cert.to_string_lossy().into_owned(),
                "--tlskey".into(),
                pki.server_key.to_string_lossy().into_owned(),
                "--tlscacert".into(),
                pki.ca.to_string_lossy().into_owned(),
            ]);
        }
        let nats = NatsServer::start_with(dir.path().join("nats"), 0, setup)?;
        let redis = RedisServer::start_with(
            dir.path().join("redis"),
            RedisSetup {
                acl_user: config.redis_acl.clone(),
                tls: pki.clone(),
            },
        )?;
        let http_port = servers::free_port()?;
        let balancer = start_balancer(
            &config,
            &nats,
            &redis,
            pki.as_ref(),
            http_port,
            &dir.path().join("balancer.log"),
        )?;
        let mut fleet = Fleet {
            config: config.clone(),
            nats,
            redis,
            balancer,
            agents: Vec::new(),
            http_port,
            pki,
            dir,
        };
        if let Err(e) = fleet.wait_healthy().await {
            fleet.balancer.print_log_tail(40);
            fleet.nats.process().print_log_tail(20);
            return Err(e);
        }
        for (id, slots) in &config.agents {
            fleet.start_agent(id, *slots)?;
        }
        fleet.wait_healthy_agents(config.agents.len()).await?;
        Ok(fleet)
    }

    /// Starts one more agent process.
    pub fn start_agent(&mut self, id: &str, slots: u32) -> anyhow::Result<()> {
        self.start_agent_with(id, slots, &[])
    }

    /// Starts one more agent process with extra flags.
    pub fn start_agent_with(&mut self, id: &str, slots: u32, extra: &[&str]) -> anyhow::Result<()> {
        let extra: Vec<String> = self
            .config
            .agent_args
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
        // Tests watch `started` events, so agents report every start at
        // once unless a test asks otherwise.
        let report_starts: Vec<String> = if extra.iter().any(|a| a == "--report-start-after") {
            Vec::new()
        } else {
            vec!["--report-start-after".into(), "0s".into()]
        };
        let agent = Process::spawn(
            &format!("agent {id}"),
            binary("fleet-agent")?,
            [
                "--nats-url".to_string(),
                self.nats.url(),
                "--id".into(),
                id.into(),
                "--slots".into(),
                slots.to_string(),
                "--heartbeat-interval".into(),
                format!("{}ms", self.config.heartbeat_interval.as_millis()),
            ]
            .into_iter()
            .chain(self.role_args(&Role::Agent(id.to_string())))
            .chain(report_starts)
            .chain(extra),
            &self.dir.path().join(format!("agent-{id}.log")),
        )?;
        self.agents.push(agent);
        Ok(())
    }

    pub fn balancer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        wait_leader(self.http_port, Duration::from_secs(20)).await
    }

    /// Waits up to 20 s (30 s for more than 10) until the stats count
    /// `n` healthy agents.
    pub async fn wait_healthy_agents(&self, n: usize) -> anyhow::Result<()> {
        let limit = Duration::from_secs(if n > 10 { 30 } else { 20 });
        wait_until(limit, &format!("{n} healthy agents"), || async {
            Ok(self.stats().await?["healthy_agents"] == n)
        })
        .await
    }

    /// Starts another balancer (a standby while this one leads); returns
    /// it and its HTTP port.
    pub fn start_balancer(&self, name: &str) -> anyhow::Result<(Process, u16)> {
        let port = servers::free_port()?;
        let process = start_balancer(
            &self.config,
            &self.nats,
            &self.redis,
            self.pki.as_ref(),
            port,
            &self.dir.path().join(format!("{name}.log")),
        )?;
        Ok((process, port))
    }

    /// SIGKILLs the balancer and starts a new one, which leads once the
    /// old leadership lease runs out.
    pub async fn restart_balancer(&mut self) -> anyhow::Result<()> {
        self.balancer.kill9();
        let (process, port) = self.start_balancer("balancer-restarted")?;
        self.balancer = process;
        self.http_port = port;
        wait_leader(port, Duration::from_secs(20)).await
    }

    /// SIGKILLs redis-server and starts it again on its port and data.
    pub fn restart_redis(&mut self) -> anyhow::Result<()> {
        self.redis.restart()
    }

    /// SIGKILLs nats-server and starts it again on its port and store.
    pub fn restart_nats(&mut self) -> anyhow::Result<()> {
        self.nats.restart()
    }

    /// Checks `results` are `expected` jobs, each succeeded with exactly
    /// one accepted attempt, and that the audit agrees.
    pub async fn assert_all_succeeded_once(
        &self,
        results: &[fleet_protocol::JobResult],
        expected: usize,
    ) -> anyhow::Result<()> {
        assert_eq!(results.len(), expected);
        for r in results {
            assert_eq!(r.state, fleet_protocol::JobState::Succeeded, "{r:?}");
            let accepted = r
                .attempts
                .iter()
                .filter(|a| a.outcome == "succeeded")
                .count();
            assert_eq!(accepted, 1, "exactly one accepted result: {r:?}");
        }
        let audit = self.audit().await?;
        assert_eq!(audit["ok"], true, "audit: {audit}");
        assert_eq!(audit["by_state"]["succeeded"], expected, "audit: {audit}");
        Ok(())
    }

    /// The audit report (`GET /api/admin/audit`).
    pub async fn audit(&self) -> anyhow::Result<Value> {
        let url = format!("{}/api/admin/audit", self.balancer_url());
        Ok(reqwest::get(&url).await?.error_for_status()?.json().await?)
    }

    /// The stats document.
    pub async fn stats(&self) -> anyhow::Result<Value> {
        let url = format!("{}/api/admin/load-balancer", self.balancer_url());
        Ok(reqwest::get(&url).await?.error_for_status()?.json().await?)
    }

    /// One job as `GET /api/jobs/<id>` shows it.
    pub async fn job(&self, id: &str) -> anyhow::Result<Value> {
        let url = format!("{}/api/jobs/{id}", self.balancer_url());
        Ok(reqwest::get(&url).await?.error_for_status()?.json().await?)
    }

    /// Flags that connect a process to NATS as `role`: credentials on a
    /// secured server, certificates over TLS.
    pub fn role_args(&self, role: &Role) -> Vec<String> {
        let mut args = self
            .config
            .nats_roles
            .as_ref()
            .map(|r| r.args(role))
            .unwrap_or_default();
        args.extend(nats_tls_args(self.pki.as_ref()));
        args
    }

    /// Connection settings for `role` (anonymous on an open server).
    pub fn nats_options(&self, role: &Role) -> fleet_client::NatsOptions {
        let options = match &self.config.nats_roles {
            Some(roles) => roles.options(&self.nats.url(), role),
            None => fleet_client::NatsOptions::new(self.nats.url()),
        };
        match &self.pki {
            Some(pki) => options
                .tls(&pki.ca)
                .client_certificate(&pki.client_cert, &pki.client_key),
            None => options,
        }
    }

    /// `async-nats` options for `role`; an agent gets its own reply inbox,
    /// the only one `deploy/nats.conf` lets it read.
    pub async fn connect_options(&self, role: &Role) -> anyhow::Result<async_nats::ConnectOptions> {
        let mut options = self.nats_options(role).connect_options().await?;
        if let Role::Agent(id) = role {
            options = options.custom_inbox_prefix(fleet_protocol::subjects::agent_inbox_prefix(id));
        }
        Ok(options)
    }

    /// A plain NATS connection as `role`.
    pub async fn connect_as(&self, role: &Role) -> anyhow::Result<async_nats::Client> {
        let options = self.connect_options(role).await?;
        Ok(self.nats_options(role).connect_with(options).await?)
    }

    /// A producer client.
    pub async fn client(&self) -> anyhow::Result<fleet_client::Client> {
        Ok(fleet_client::Client::connect_with(&self.nats_options(&Role::Producer)).await?)
    }

    /// A plain NATS connection, for raw publishes and spying; on a secured
    /// server it has the balancer's rights, which cover every subject.
    pub async fn nats_client(&self) -> anyhow::Result<async_nats::Client> {
        Ok(self.nats_options(&Role::Balancer).connect().await?)
    }

    /// The balancer's log so far.
    pub fn balancer_log(&self) -> String {
        self.balancer.log()
    }
}

/// Waits until the balancer on `port` answers /healthz as the leader.
pub async fn wait_leader(port: u16, limit: Duration) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/healthz");
    wait_until(limit, "a leading balancer on /healthz", || async {
        let Ok(r) = reqwest::get(&url).await else {
            return Ok(false);
        };
        let body: Value = r.json().await.unwrap_or_default();
        Ok(body["role"] == "leader")
    })
    .await
}

/// The flags that make a fleet process talk TLS to NATS with the test CA.
fn nats_tls_args(pki: Option<&TestPki>) -> Vec<String> {
    let Some(pki) = pki else {
        return Vec::new();
    };
    [
        ("--nats-ca", &pki.ca),
        ("--nats-cert", &pki.client_cert),
        ("--nats-key", &pki.client_key),
    ]
    .into_iter()
    .flat_map(|(flag, path)| [flag.to_string(), path.to_string_lossy().into_owned()])
    .collect()
}

fn start_balancer(
    config: &FleetConfig,
    nats: &NatsServer,
    redis: &RedisServer,
    pki: Option<&TestPki>,
    http_port: u16,
    log: &std::path::Path,
) -> anyhow::Result<Process> {
    let mut args = vec![
        "--nats-url".to_string(),
        nats.url(),
        "--http-addr".into(),
        format!("127.0.0.1:{http_port}"),
        "--heartbeat-timeout".into(),
        format!("{}ms", config.heartbeat_timeout.as_millis()),
    ];
    args.extend(redis.balancer_args());
    if let Some(roles) = &config.nats_roles {
        args.extend(roles.args(&Role::Balancer));
    }
    args.extend(nats_tls_args(pki));
    args.extend(config.balancer_args.iter().cloned());
    Process::spawn("balancer", binary("fleet-balancer")?, args, log)
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in std::iter::once(&self.balancer).chain(&self.agents) {
                p.print_log_tail(40);
            }
        }
    }
}
