//! The producer client: submit jobs, wait for their results.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fleet_client::ClientError> {
//! use fleet_client::Client;
//! use fleet_protocol::JobSpec;
//! use std::time::Duration;
//!
//! let client = Client::connect("nats://127.0.0.1:4222").await?;
//! let id = client.submit(JobSpec::new("echo", serde_json::json!({"hi": 1}))).await?;
//! let result = client.wait(&id, Duration::from_secs(30)).await?;
//! println!("{} ended {:?}", id, result.state);
//! # Ok(()) }
//! ```
//!
//! A submission is a JetStream publish with `Nats-Msg-Id` set to the job
//! id, so a retried publish is dropped as a duplicate within the stream's
//! window, and the balancer ignores a job id it has seen before. A result
//! is read from the `FLEET_RESULTS` stream, so waiting after the job ended
//! still finds it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, message::PublishMessage};
use futures::StreamExt;

use fleet_protocol::ids::{is_valid_token, new_job_id, InvalidId};
use fleet_protocol::job::{InvalidJob, JobSpec};
use fleet_protocol::result::JobResult;
use fleet_protocol::subjects;

use crate::connect::{ConnectError, NatsOptions};
use crate::streams;

/// How many submissions may await their JetStream ack at once.
const MAX_ACKS_IN_FLIGHT: usize = 20_000;

/// Errors a producer can meet.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Streams(#[from] streams::EnsureError),
    #[error("invalid job id: {0}")]
    BadId(#[from] InvalidId),
    /// The balancer would refuse this job (same checks, same message):
    /// nothing was submitted.
    #[error("job {job_id} would be refused ({}): {error}", .error.reason())]
    Invalid { job_id: String, error: InvalidJob },
    #[error("cannot encode job: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("submission of {job_id} was not acknowledged: {error}")]
    Publish { job_id: String, error: String },
    #[error("cannot read results: {0}")]
    Results(String),
    #[error("no result for {missing} job(s) within {timeout:?}")]
    Timeout { missing: usize, timeout: Duration },
}

/// A producer's connection to fleet.
#[derive(Clone)]
pub struct Client {
    nats: async_nats::Client,
    js: jetstream::Context,
}

impl Client {
    /// Connects to NATS at `url` and makes sure the job and result streams
    /// exist, so a producer may start before the balancer.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Client::connect_with(&NatsOptions::new(url)).await
    }

    /// Connects with credentials and TLS settings (see [`NatsOptions`]).
    pub async fn connect_with(options: &NatsOptions) -> Result<Client, ClientError> {
        let nats = options.connect().await?;
        Client::from_nats(nats).await
    }

    /// Wraps an existing NATS connection.
    pub async fn from_nats(nats: async_nats::Client) -> Result<Client, ClientError> {
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(MAX_ACKS_IN_FLIGHT)
            .backpressure_on_inflight(true)
            .build(nats.clone());
        streams::ensure(&js, &[streams::JOBS, streams::RESULTS]).await?;
        Ok(Client { nats, js })
    }

    /// The underlying NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Submits one job and returns its id once JetStream has stored it.
    pub async fn submit(&self, job: JobSpec) -> Result<String, ClientError> {
        let mut ids = self.submit_many(vec![job]).await?;
        ids.pop().ok_or_else(|| ClientError::Publish {
            job_id: String::new(),
            error: "no id returned".into(),
        })
    }

    /// Submits many jobs with their acks pipelined, returning their ids in
    /// order once JetStream has stored every one. Each job is first checked
    /// as the balancer will check it, so a job it would refuse is an error
    /// here and now (and then none of the jobs is submitted), instead of a
    /// rejection only a `fleet.rejected` subscriber would see.
    pub async fn submit_many(&self, jobs: Vec<JobSpec>) -> Result<Vec<String>, ClientError> {
        let mut named = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            let id = match job.id.take() {
                Some(id) => id,
                None => new_job_id(),
            };
            is_valid_token(&id)?;
            job.id = Some(id.clone());
            if let Err(error) = job.check(&id) {
                return Err(ClientError::Invalid { job_id: id, error });
            }
            named.push((id, job));
        }
        let mut pending = Vec::with_capacity(named.len());
        for (id, job) in named {
            let payload = serde_json::to_vec(&job)?;
            let ack = self
                .js
                .send_publish(
                    subjects::SUBMIT,
                    PublishMessage::build()
                        .payload(payload.into())
                        .message_id(&id),
                )
                .await
                .map_err(|e| ClientError::Publish {
                    job_id: id.clone(),
                    error: e.to_string(),
                })?;
            pending.push((id, ack));
        }
        let mut ids = Vec::with_capacity(pending.len());
        for (id, ack) in pending {
            ack.await.map_err(|e| ClientError::Publish {
                job_id: id.clone(),
                error: e.to_string(),
            })?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Waits up to `timeout` for the terminal result of one job.
    pub async fn wait(&self, job_id: &str, timeout: Duration) -> Result<JobResult, ClientError> {
        is_valid_token(job_id)?;
        let mut results = self
            .wait_many(&[job_id.to_string()], timeout, |_| {})
            .await?;
        results.pop().ok_or(ClientError::Timeout {
            missing: 1,
            timeout,
        })
    }

    /// Every result published from now on, as it is published (an ordered
    /// consumer on all result subjects): for load tests that time each
    /// job's end while they are still submitting.
    pub async fn watch_results(
        &self,
    ) -> Result<impl futures::Stream<Item = JobResult> + Send + 'static, ClientError> {
        let stream = self
            .js
            .get_stream(streams::RESULTS)
            .await
            .map_err(|e| ClientError::Results(e.to_string()))?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subjects::RESULTS_ALL.to_string(),
                deliver_policy: consumer::DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| ClientError::Results(e.to_string()))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| ClientError::Results(e.to_string()))?;
        Ok(messages.filter_map(|m| async move {
            m.ok()
                .and_then(|m| serde_json::from_slice::<JobResult>(&m.payload).ok())
        }))
    }

    /// Waits up to `timeout` for the results of all `job_ids`, calling
    /// `on_result` as each arrives. Results come back in the order of
    /// `job_ids`; a missing one at the deadline is an error.
    pub async fn wait_many(
        &self,
        job_ids: &[String],
        timeout: Duration,
        on_result: impl FnMut(&JobResult),
    ) -> Result<Vec<JobResult>, ClientError> {
        let found = self.collect_results(job_ids, timeout, on_result).await?;
        if found.len() < job_ids.len() {
            return Err(ClientError::Timeout {
                missing: job_ids.len() - found.len(),
                timeout,
            });
        }
        Ok(found)
    }

    /// Like [`Client::wait_many`], but returns whatever arrived by the
    /// deadline (in the order of `job_ids`) instead of failing: for load
    /// tests that count what was lost.
    pub async fn collect_results(
        &self,
        job_ids: &[String],
        timeout: Duration,
        mut on_result: impl FnMut(&JobResult),
    ) -> Result<Vec<JobResult>, ClientError> {
        let mut missing: HashSet<&str> = job_ids.iter().map(String::as_str).collect();
        let mut found: HashMap<String, JobResult> = HashMap::with_capacity(job_ids.len());
        let stream = self
            .js
            .get_stream(streams::RESULTS)
            .await
            .map_err(|e| ClientError::Results(e.to_string()))?;
        // One subject filter for one job; the whole result space for many.
        // LastPerSubject replays results that already exist, then follows
        // new ones, so nothing published before we subscribed is missed.
        let filter_subject = match job_ids {
            [one] => subjects::result(one),
            _ => subjects::RESULTS_ALL.to_string(),
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject,
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| ClientError::Results(e.to_string()))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| ClientError::Results(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + timeout;
        while !missing.is_empty() {
            let next = tokio::time::timeout_at(deadline, messages.next()).await;
            let message = match next {
                Err(_) => break,
                Ok(None) => return Err(ClientError::Results("result stream ended".into())),
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "result consumer error; the ordered consumer recovers");
                    continue;
                }
                Ok(Some(Ok(m))) => m,
            };
            let Ok(result) = serde_json::from_slice::<JobResult>(&message.payload) else {
                tracing::warn!(subject = %message.subject, "undecodable result skipped");
                continue;
            };
            if missing.remove(result.job_id.as_str()) {
                on_result(&result);
                found.insert(result.job_id.clone(), result);
            }
        }
        Ok(job_ids.iter().filter_map(|id| found.remove(id)).collect())
    }
}
