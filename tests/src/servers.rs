//! Real nats-server (JetStream, file storage) and redis-server (AOF)
//! processes on free loopback ports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use fleet_balancer::state::RedisOptions;

use crate::pki::TestPki;
use crate::process::Process;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The nats-server to run: `$FLEET_NATS_SERVER`, else the one
/// `scripts/install-servers` puts in `.tools/venv/bin`, else `PATH`.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("FLEET_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/nats-server");
    if local.exists() {
        return local;
    }
    PathBuf::from("nats-server")
}

/// How to run a nats-server beyond the defaults: a configuration file
/// (with the environment it reads secrets from), and TLS.
#[derive(Debug, Clone, Default)]
pub struct NatsSetup {
    /// Extra command-line arguments (`-c deploy/nats.conf`).
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Clients must use TLS (`tls://` URLs).
    pub tls: bool,
}

/// A nats-server with JetStream.
pub struct NatsServer {
    process: Process,
    pub port: u16,
    pub dir: PathBuf,
    pub setup: NatsSetup,
}

impl NatsServer {
    /// Starts on a free port with its store in `dir`.
    pub fn start(dir: PathBuf) -> anyhow::Result<NatsServer> {
        Self::start_on(dir, 0)
    }

    /// Starts on `port` (0: pick one) with its store in `dir`.
    pub fn start_on(dir: PathBuf, port: u16) -> anyhow::Result<NatsServer> {
        Self::start_with(dir, port, NatsSetup::default())
    }

    /// Starts on `port` (0: pick one) with its store in `dir`, set up as
    /// `setup` says.
    pub fn start_with(dir: PathBuf, port: u16, setup: NatsSetup) -> anyhow::Result<NatsServer> {
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("nats.log");
        let _ = std::fs::remove_file(&log);
        let port_arg = if port == 0 {
            "-1".to_string()
        } else {
            port.to_string()
        };
        let args = setup.args.iter().cloned().chain([
            "-js".to_string(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port_arg,
            "-sd".into(),
            dir.join("js").to_string_lossy().into_owned(),
        ]);
        let process =
            Process::spawn_with_env("nats-server", nats_server_binary(), args, &setup.env, &log)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let marker = "Listening for client connections on ";
        let port = loop {
            let text = process.log();
            if let Some(rest) = text.split(marker).nth(1) {
                let addr = rest.lines().next().unwrap_or_default();
                let port = addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse::<u16>().ok())
                    .with_context(|| format!("cannot read the port from {addr:?}"))?;
                if text.contains("Server is ready") {
                    break port;
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "nats-server did not start; log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(NatsServer {
            process,
            port,
            dir,
            setup,
        })
    }

    /// SIGKILLs the server and starts it again on its port, store and setup.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill9();
        *self = Self::start_with(self.dir.clone(), self.port, self.setup.clone())?;
        Ok(())
    }

    pub fn url(&self) -> String {
        let scheme = if self.setup.tls { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// How to run a redis-server beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct RedisSetup {
    /// An ACL user `(name, password)` limited to fleet's keys; the default
    /// user is turned off, so a connection without it is refused.
    pub acl_user: Option<(String, String)>,
    /// Serve TLS only, with these certificates, and require client
    /// certificates signed by its CA.
    pub tls: Option<TestPki>,
}

/// A redis-server with the append-only file on.
pub struct RedisServer {
    process: Process,
    pub port: u16,
    pub dir: PathBuf,
    pub setup: RedisSetup,
}

impl RedisServer {
    /// Starts on a free port with its data in `dir`.
    pub fn start(dir: PathBuf) -> anyhow::Result<RedisServer> {
        Self::start_with(dir, RedisSetup::default())
    }

    /// Starts on a free port with its data in `dir`, set up as `setup` says.
    pub fn start_with(dir: PathBuf, setup: RedisSetup) -> anyhow::Result<RedisServer> {
        let mut last = None;
        for _ in 0..5 {
            match Self::start_on_with(dir.clone(), free_port()?, setup.clone()) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// Starts on `port` with its data in `dir`.
    pub fn start_on(dir: PathBuf, port: u16) -> anyhow::Result<RedisServer> {
        Self::start_on_with(dir, port, RedisSetup::default())
    }

    /// Starts on `port` with its data in `dir`, set up as `setup` says;
    /// waits for an exact `PONG` (right after start Redis may answer
    /// `LOADING`).
    pub fn start_on_with(
        dir: PathBuf,
        port: u16,
        setup: RedisSetup,
    ) -> anyhow::Result<RedisServer> {
        std::fs::create_dir_all(&dir)?;
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "yes".into(),
            "--dir".into(),
            dir.to_string_lossy().into_owned(),
        ];
        match &setup.tls {
            None => args.extend(["--port".into(), port.to_string()]),
            Some(pki) => args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                pki.server_cert.to_string_lossy().into_owned(),
                "--tls-key-file".into(),
                pki.server_key.to_string_lossy().into_owned(),
                "--tls-ca-cert-file".into(),
                pki.ca.to_string_lossy().into_owned(),
                "--tls-auth-clients".into(),
                "yes".into(),
            ]),
        }
        if let Some((user, password)) = &setup.acl_user {
            // fleet's keys only, and no administrative or dangerous
            // commands (CONFIG, FLUSHALL, KEYS, DEBUG, …).
            args.extend([
                "--user".into(),
                "default".into(),
                "off".into(),
                "--user".into(),
                user.clone(),
                "on".into(),
                format!(">{password}"),
                "~fleet:*".into(),
                "+@all".into(),
                "-@dangerous".into(),
            ]);
        }
        let mut process = Process::spawn(
            "redis-server",
            std::env::var("FLEET_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
            args,
            &dir.join("redis.log"),
        )?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = options(&setup, port).client()?;
        loop {
            let pong = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if matches!(pong.as_deref(), Ok("PONG")) {
                break;
            }
            anyhow::ensure!(
                process.is_running(),
                "redis-server exited:\n{}",
                process.log()
            );
            anyhow::ensure!(
                Instant::now() < deadline,
                "redis-server did not answer PONG:\n{}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(RedisServer {
            process,
            port,
            dir,
            setup,
        })
    }

    /// SIGKILLs the server and starts it again on its port, data and setup.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill9();
        *self = Self::start_on_with(self.dir.clone(), self.port, self.setup.clone())?;
        Ok(())
    }

    /// The URL, with the ACL user's credentials when there is one.
    pub fn url(&self) -> String {
        options(&self.setup, self.port).url
    }

    /// Connection settings a balancer needs for this server.
    pub fn options(&self) -> RedisOptions {
        options(&self.setup, self.port)
    }

    /// The balancer flags for this server.
    pub fn balancer_args(&self) -> Vec<String> {
        let o = self.options();
        let mut args = vec!["--redis-url".to_string(), o.url];
        for (flag, path) in [
            ("--redis-ca", o.ca),
            ("--redis-cert", o.cert),
            ("--redis-key", o.key),
        ] {
            if let Some(p) = path {
                args.extend([flag.to_string(), p.to_string_lossy().into_owned()]);
            }
        }
        args
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

fn options(setup: &RedisSetup, port: u16) -> RedisOptions {
    let scheme = if setup.tls.is_some() {
        "rediss"
    } else {
        "redis"
    };
    let auth = match &setup.acl_user {
        Some((user, password)) => format!("{user}:{password}@"),
        None => String::new(),
    };
    let mut options = RedisOptions::new(format!("{scheme}://{auth}127.0.0.1:{port}"));
    if let Some(pki) = &setup.tls {
        options.ca = Some(pki.ca.clone());
        options.cert = Some(pki.client_cert.clone());
        options.key = Some(pki.client_key.clone());
    }
    options
}
