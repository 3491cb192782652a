//! How a fleet process reaches NATS: the URL, its credentials and TLS.
//!
//! The balancer, the agents, `fleetctl` and producers all connect through
//! [`NatsOptions`], so they accept the same credentials — user and
//! password, an nkey seed, or a `.creds` file (user JWT and seed) — and the
//! same TLS settings (a CA to trust, a client certificate, TLS required).
//! With the `cli` feature it is a `clap` argument group that every binary
//! flattens into its command line, each flag with a `FLEET_NATS_*`
//! environment fallback.
//!
//! Which subjects a connection may use is the server's decision
//! (`deploy/nats.conf`); this module only proves who is connecting.

use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;

use fleet_protocol::defaults;

/// Where `--help` lists these flags: apart from each command's own.
#[cfg(feature = "cli")]
const HELP_HEADING: &str = "NATS connection";

/// Errors in the connection settings, found before any network traffic.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("give one kind of NATS credentials, not several ({0})")]
    ConflictingCredentials(String),
    #[error("--nats-password needs --nats-user")]
    PasswordWithoutUser,
    #[error("--nats-user needs --nats-password")]
    UserWithoutPassword,
    #[error("--nats-cert and --nats-key go together")]
    HalfClientCertificate,
    #[error("cannot read {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} holds no nkey seed (expected a line starting with SU)")]
    NoSeed { path: PathBuf },
    #[error("cannot connect to NATS at {url}: {error}")]
    Connect { url: String, error: String },
}

/// Where NATS is and how to prove who we are to it.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct NatsOptions {
    /// NATS server URL (`nats://` or `tls://`).
    #[cfg_attr(feature = "cli", arg(id = "nats_url", long = "nats-url", global = true,
            help_heading = HELP_HEADING, env = "FLEET_NATS_URL", default_value = defaults::NATS_URL))]
    pub url: String,

    /// NATS user name (with --nats-password).
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "nats_user",
            long = "nats-user",
            global = true,
            help_heading = HELP_HEADING,
            env = "FLEET_NATS_USER"
        )
    )]
    pub user: Option<String>,

    /// NATS password (prefer the environment variable to the flag, which
    /// other users of the machine can read).
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "nats_password",
            long = "nats-password",
            global = true,
            help_heading = HELP_HEADING,
            env = "FLEET_NATS_PASSWORD",
            hide_env_values = true
        )
    )]
    pub password: Option<String>,

    /// A file holding this connection's nkey seed (`SU…`).
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "nats_nkey_file",
            long = "nats-nkey-file",
            global = true,
            help_heading = HELP_HEADING,
            env = "FLEET_NATS_NKEY_FILE"
        )
    )]
    pub nkey_file: Option<PathBuf>,

    /// This connection's nkey seed itself (`SU…`), for environments that
    /// hand secrets over as variables.
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "nats_nkey_seed",
            long = "nats-nkey-seed",
            global = true,
            help_heading = HELP_HEADING,
            env = "FLEET_NATS_NKEY_SEED",
            hide_env_values = true
        )
    )]
    pub nkey_seed: Option<String>,

    /// A `.creds` file (user JWT and nkey seed) for servers in operator mode.
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "nats_creds",
            long = "nats-creds",
            global = true,
            help_heading = HELP_HEADING,
            env = "FLEET_NATS_CREDS"
        )
    )]
    pub creds: Option<PathBuf>,

    /// PEM file of the certificate authority that signed the server's
    /// certificate (implies TLS).
    #[cfg_attr(
        feature = "cli",
        arg(id = "nats_ca", long = "nats-ca", global = true,
            help_heading = HELP_HEADING, env = "FLEET_NATS_CA")
    )]
    pub ca: Option<PathBuf>,

    /// PEM client certificate, for servers that verify clients (with
    /// --nats-key).
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "nats_cert",
            long = "nats-cert",
            global = true,
            help_heading = HELP_HEADING,
            env = "FLEET_NATS_CERT"
        )
    )]
    pub cert: Option<PathBuf>,

    /// PEM private key of --nats-cert.
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "nats_key",
            long = "nats-key",
            global = true,
            help_heading = HELP_HEADING,
            env = "FLEET_NATS_KEY"
        )
    )]
    pub key: Option<PathBuf>,

    /// Refuse to talk to NATS without TLS.
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "nats_tls",
            long = "nats-tls",
            global = true,
            help_heading = HELP_HEADING,
            env = "FLEET_NATS_TLS"
        )
    )]
    pub require_tls: bool,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions::new(defaults::NATS_URL)
    }
}

impl NatsOptions {
    /// An anonymous, plain-text connection to `url`.
    pub fn new(url: impl Into<String>) -> NatsOptions {
        NatsOptions {
            url: url.into(),
            user: None,
            password: None,
            nkey_file: None,
            nkey_seed: None,
            creds: None,
            ca: None,
            cert: None,
            key: None,
            require_tls: false,
        }
    }

    /// Authenticates with a user name and password.
    pub fn user_and_password(mut self, user: &str, password: &str) -> NatsOptions {
        self.user = Some(user.to_string());
        self.password = Some(password.to_string());
        self
    }

    /// Authenticates with an nkey seed (`SU…`).
    pub fn nkey_seed(mut self, seed: &str) -> NatsOptions {
        self.nkey_seed = Some(seed.to_string());
        self
    }

    /// Authenticates with a `.creds` file.
    pub fn creds(mut self, path: impl Into<PathBuf>) -> NatsOptions {
        self.creds = Some(path.into());
        self
    }

    /// Trusts the CA in `ca` and requires TLS.
    pub fn tls(mut self, ca: impl Into<PathBuf>) -> NatsOptions {
        self.ca = Some(ca.into());
        self.require_tls = true;
        self
    }

    /// Presents a client certificate.
    pub fn client_certificate(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> NatsOptions {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }

    /// The `async-nats` options these settings describe, for the caller to
    /// add its own (name, callbacks) before connecting to [`Self::url`].
    pub async fn connect_options(&self) -> Result<ConnectOptions, ConnectError> {
        let mut kinds = Vec::new();
        if self.user.is_some() || self.password.is_some() {
            kinds.push("user/password");
        }
        if self.nkey_file.is_some() || self.nkey_seed.is_some() {
            kinds.push("nkey");
        }
        if self.creds.is_some() {
            kinds.push("creds");
        }
        if kinds.len() > 1 || (self.nkey_file.is_some() && self.nkey_seed.is_some()) {
            return Err(ConnectError::ConflictingCredentials(kinds.join(", ")));
        }

        let mut options = ConnectOptions::new();
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            (None, Some(_)) => return Err(ConnectError::PasswordWithoutUser),
            (Some(_), None) => return Err(ConnectError::UserWithoutPassword),
            (None, None) => {}
        }
        if let Some(seed) = &self.nkey_seed {
            options = options.nkey(seed.trim().to_string());
        }
        if let Some(path) = &self.nkey_file {
            options = options.nkey(read_seed(path)?);
        }
        if let Some(path) = &self.creds {
            options = options
                .credentials_file(path)
                .await
                .map_err(|error| ConnectError::Read {
                    what: "NATS credentials",
                    path: path.clone(),
                    error,
                })?;
        }

        if let Some(ca) = &self.ca {
            readable("CA certificate", ca)?;
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                readable("client certificate", cert)?;
                readable("client key", key)?;
                options = options
                    .add_client_certificate(cert.clone(), key.clone())
                    .require_tls(true);
            }
            (None, None) => {}
            _ => return Err(ConnectError::HalfClientCertificate),
        }
        if self.require_tls {
            options = options.require_tls(true);
        }
        Ok(options)
    }

    /// Connects with `options` (from [`Self::connect_options`], extended
    /// by the caller).
    pub async fn connect_with(
        &self,
        options: ConnectOptions,
    ) -> Result<async_nats::Client, ConnectError> {
        options
            .connect(&self.url)
            .await
            .map_err(|e| ConnectError::Connect {
                url: self.url.clone(),
                error: e.to_string(),
            })
    }

    /// Connects with these settings alone.
    pub async fn connect(&self) -> Result<async_nats::Client, ConnectError> {
        let options = self.connect_options().await?;
        self.connect_with(options).await
    }
}

/// The seed in an nkey file: the first line that starts with `SU`, so a
/// file written by `nk -gen user` (seed only) and one with comments both
/// work.
fn read_seed(path: &Path) -> Result<String, ConnectError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConnectError::Read {
        what: "nkey seed",
        path: path.to_path_buf(),
        error,
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("SU"))
        .map(str::to_string)
        .ok_or_else(|| ConnectError::NoSeed {
            path: path.to_path_buf(),
        })
}

/// Fails early, with the path in the message, on a file `async-nats` would
/// only report as a TLS error once connecting.
fn readable(what: &'static str, path: &Path) -> Result<(), ConnectError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|error| ConnectError::Read {
            what,
            path: path.to_path_buf(),
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_two_kinds_of_credentials() {
        let options = NatsOptions::new("nats://x")
            .user_and_password("u", "p")
            .nkey_seed("SUAAA");
        let err = options.connect_options().await.err();
        assert!(
            matches!(err, Some(ConnectError::ConflictingCredentials(ref k)) if k == "user/password, nkey"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn password_needs_a_user() {
        let mut options = NatsOptions::new("nats://x");
        options.password = Some("p".into());
        assert!(matches!(
            options.connect_options().await,
            Err(ConnectError::PasswordWithoutUser)
        ));
    }

    #[tokio::test]
    async fn missing_files_are_named() {
        let options = NatsOptions::new("tls://x").tls("/nonexistent/ca.pem");
        let err = options.connect_options().await.err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("/nonexistent/ca.pem")),
            "{err:?}"
        );
        let mut half = NatsOptions::new("tls://x");
        half.cert = Some("/tmp/c.pem".into());
        assert!(matches!(
            half.connect_options().await,
            Err(ConnectError::HalfClientCertificate)
        ));
    }

    #[test]
    fn seed_is_found_among_comments() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("agent.nk");
        std::fs::write(&path, "# agent-gpu\n  SUACSEED\n")?;
        assert_eq!(read_seed(&path)?, "SUACSEED");
        std::fs::write(&path, "nothing here\n")?;
        assert!(matches!(read_seed(&path), Err(ConnectError::NoSeed { .. })));
        Ok(())
    }
}
