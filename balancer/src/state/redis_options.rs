//! How the balancer reaches Redis: the URL (with an ACL user and password
//! when the server has them) and TLS (`rediss://`, a CA, a client
//! certificate), from flags or `FLEET_REDIS_*` environment variables.
//!
//! The URL carries the credentials because that is where Redis clients
//! conventionally take them (`redis://fleet:secret@host:6379/0`); pass it
//! through `FLEET_REDIS_URL` rather than the flag to keep the password off
//! the process list.

use std::path::{Path, PathBuf};

use clap::Args;
use fleet_protocol::defaults;

/// Errors in the Redis connection settings.
#[derive(Debug, thiserror::Error)]
pub enum RedisOptionsError {
    #[error("--redis-cert and --redis-key go together")]
    HalfClientCertificate,
    #[error("--redis-ca, --redis-cert and --redis-key need a rediss:// URL")]
    TlsFilesWithoutTls,
    #[error("cannot read {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("bad Redis URL: {0}")]
    Url(#[from] redis::RedisError),
}

/// Where Redis is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct RedisOptions {
    /// Redis URL: `redis://[user:password@]host:port[/db]`, or `rediss://`
    /// for TLS.
    #[arg(id = "redis_url", long = "redis-url", env = "FLEET_REDIS_URL", default_value = defaults::REDIS_URL, hide_env_values = true)]
    pub url: String,

    /// PEM file of the CA that signed Redis's certificate (rediss:// only;
    /// without it the system's roots are trusted).
    #[arg(id = "redis_ca", long = "redis-ca", env = "FLEET_REDIS_CA")]
    pub ca: Option<PathBuf>,

    /// PEM client certificate, for a Redis with `tls-auth-clients yes`.
    #[arg(id = "redis_cert", long = "redis-cert", env = "FLEET_REDIS_CERT")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --redis-cert.
    #[arg(id = "redis_key", long = "redis-key", env = "FLEET_REDIS_KEY")]
    pub key: Option<PathBuf>,
}

impl RedisOptions {
    /// Plain settings for `url`.
    pub fn new(url: impl Into<String>) -> RedisOptions {
        RedisOptions {
            url: url.into(),
            ca: None,
            cert: None,
            key: None,
        }
    }

    /// The URL with any password replaced, for logs and error messages.
    pub fn redacted_url(&self) -> String {
        match url_password_span(&self.url) {
            Some((start, end)) => format!("{}***{}", &self.url[..start], &self.url[end..]),
            None => self.url.clone(),
        }
    }

    /// A Redis client for these settings (no connection is made yet).
    pub fn client(&self) -> Result<redis::Client, RedisOptionsError> {
        let tls_files = self.ca.is_some() || self.cert.is_some() || self.key.is_some();
        if !tls_files {
            return Ok(redis::Client::open(self.url.as_str())?);
        }
        if !self.url.starts_with("rediss://") {
            return Err(RedisOptionsError::TlsFilesWithoutTls);
        }
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read("client certificate", cert)?,
                client_key: read("client key", key)?,
            }),
            (None, None) => None,
            _ => return Err(RedisOptionsError::HalfClientCertificate),
        };
        let root_cert = self
            .ca
            .as_deref()
            .map(|ca| read("CA certificate", ca))
            .transpose()?;
        Ok(redis::Client::build_with_tls(
            self.url.as_str(),
            redis::TlsCertificates {
                client_tls,
                root_cert,
            },
        )?)
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, RedisOptionsError> {
    std::fs::read(path).map_err(|error| RedisOptionsError::Read {
        what,
        path: path.to_path_buf(),
        error,
    })
}

/// The byte range of the password in `scheme://user:password@host…`.
fn url_password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    let at = url[authority_start..authority_end].rfind('@')? + authority_start;
    let colon = url[authority_start..at].find(':')? + authority_start;
    Some((colon + 1, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        let redacted = |u: &str| RedisOptions::new(u).redacted_url();
        assert_eq!(
            redacted("redis://fleet:s3cret@redis:6379/0"),
            "redis://fleet:***@redis:6379/0"
        );
        assert_eq!(redacted("rediss://:pw@h:1"), "rediss://:***@h:1");
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
        assert_eq!(redacted("redis://user@h:6379"), "redis://user@h:6379");
    }

    #[test]
    fn tls_files_need_a_tls_url() {
        let mut options = RedisOptions::new("redis://127.0.0.1:6379");
        options.ca = Some("/tmp/ca.pem".into());
        assert!(matches!(
            options.client(),
            Err(RedisOptionsError::TlsFilesWithoutTls)
        ));
        let mut half = RedisOptions::new("rediss://127.0.0.1:6379");
        half.cert = Some("/tmp/c.pem".into());
        assert!(matches!(
            half.client(),
            Err(RedisOptionsError::HalfClientCertificate)
        ));
        let mut missing = RedisOptions::new("rediss://127.0.0.1:6379");
        missing.ca = Some("/nonexistent/ca.pem".into());
        let err = missing.client().err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("/nonexistent/ca.pem")),
            "{err:?}"
        );
    }
}
