//! Credentials for every role in the shipped `deploy/nats.conf`, made up
//! afresh for each test, so the secured fleet runs on the very file a
//! deployment uses.

use std::path::PathBuf;

use fleet_client::NatsOptions;

use crate::servers::NatsSetup;

/// A connection's role under `deploy/nats.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Balancer,
    Producer,
    /// An agent, by the id it holds credentials for. Only `agent-cpu`
    /// (password) and `agent-gpu` (nkey) exist in the shipped file; any
    /// other id gets no credentials.
    Agent(String),
}

/// Secrets for the balancer, producers, `agent-cpu` and `agent-gpu`.
#[derive(Debug, Clone)]
pub struct NatsRoles {
    balancer_password: String,
    producer_password: String,
    agent_cpu_password: String,
    agent_gpu_seed: String,
    agent_gpu_public: String,
}

impl NatsRoles {
    /// Fresh random passwords and a fresh nkey pair.
    pub fn generate() -> anyhow::Result<NatsRoles> {
        let gpu = nkeys::KeyPair::new_user();
        Ok(NatsRoles {
            balancer_password: fleet_protocol::new_job_id(),
            producer_password: fleet_protocol::new_job_id(),
            agent_cpu_password: fleet_protocol::new_job_id(),
            agent_gpu_seed: gpu.seed()?,
            agent_gpu_public: gpu.public_key(),
        })
    }

    /// The shipped configuration file.
    pub fn conf_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats.conf")
    }

    /// How to start nats-server with `deploy/nats.conf` and these secrets.
    pub fn setup(&self) -> NatsSetup {
        NatsSetup {
            args: vec!["-c".into(), Self::conf_path().to_string_lossy().into()],
            env: vec![
                (
                    "FLEET_NATS_BALANCER_PASSWORD".into(),
                    self.balancer_password.clone(),
                ),
                (
                    "FLEET_NATS_PRODUCER_PASSWORD".into(),
                    self.producer_password.clone(),
                ),
                (
                    "FLEET_NATS_AGENT_CPU_PASSWORD".into(),
                    self.agent_cpu_password.clone(),
                ),
                (
                    "FLEET_NATS_AGENT_GPU_NKEY".into(),
                    self.agent_gpu_public.clone(),
                ),
            ],
            tls: false,
        }
    }

    /// Command-line flags that authenticate as `role`.
    pub fn args(&self, role: &Role) -> Vec<String> {
        let user = |name: &str, password: &str| {
            vec![
                "--nats-user".to_string(),
                name.to_string(),
                "--nats-password".into(),
                password.to_string(),
            ]
        };
        match role {
            Role::Balancer => user("balancer", &self.balancer_password),
            Role::Producer => user("producer", &self.producer_password),
            Role::Agent(id) if id == "agent-cpu" => user("agent-cpu", &self.agent_cpu_password),
            Role::Agent(id) if id == "agent-gpu" => {
                vec!["--nats-nkey-seed".into(), self.agent_gpu_seed.clone()]
            }
            Role::Agent(_) => Vec::new(),
        }
    }

    /// Client options that authenticate as `role` at `url`.
    pub fn options(&self, url: &str, role: &Role) -> NatsOptions {
        let options = NatsOptions::new(url);
        match role {
            Role::Balancer => options.user_and_password("balancer", &self.balancer_password),
            Role::Producer => options.user_and_password("producer", &self.producer_password),
            Role::Agent(id) if id == "agent-cpu" => {
                options.user_and_password("agent-cpu", &self.agent_cpu_password)
            }
            Role::Agent(id) if id == "agent-gpu" => options.nkey_seed(&self.agent_gpu_seed),
            Role::Agent(_) => options,
        }
    }
}
