//! Who may do what, on a fleet whose nats-server runs the shipped
//! `deploy/nats.conf`: strangers are refused, an agent can neither read
//! another agent's assignments nor speak in its name, a producer cannot
//! pose as an agent or as the balancer, and an event that the server's
//! permissions let through but the job's lease does not back is refused
//! by the balancer, counted, and leaves the real result standing.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{jetstream, ConnectOptions};
use fleet_client::NatsOptions;
use fleet_protocol::{subjects, Completed, JobSpec, JobState};
use fleet_tests::metrics::{get, scrape};
use fleet_tests::{wait_until, Fleet, FleetConfig, NatsRoles, Role};
use serde_json::json;

/// A connection whose server errors (permission violations) are recorded.
struct Watched {
    nats: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Watched {
    /// Connects with `connect` (built from `options`), recording the
    /// server's errors.
    async fn new(options: &NatsOptions, connect: ConnectOptions) -> anyhow::Result<Watched> {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let connect = connect.event_callback(move |event| {
            let sink = sink.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    sink.lock().push(e.to_string());
                }
            }
        });
        Ok(Watched {
            nats: options.connect_with(connect).await?,
            errors,
        })
    }

    /// Connects to `fleet` as `role`.
    async fn as_role(fleet: &Fleet, role: &Role) -> anyhow::Result<Watched> {
        Watched::new(
            &fleet.nats_options(role),
            fleet.connect_options(role).await?,
        )
        .await
    }

    /// Waits until the server has refused `what` (`Publish`/`Subscription`)
    /// on `subject`.
    async fn refused(&self, what: &str, subject: &str) -> anyhow::Result<()> {
        let want = format!("permissions violation for {what} to \"{subject}\"").to_lowercase();
        wait_until(
            Duration::from_secs(10),
            &format!("a permission error for {what} to {subject}"),
            || async {
                let errors = self.errors.lock().clone();
                Ok(errors.iter().any(|e| e.to_lowercase().contains(&want)))
            },
        )
        .await
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().clone()
    }
}

fn secured(agents: &[&str]) -> anyhow::Result<FleetConfig> {
    Ok(FleetConfig {
        agents: agents.iter().map(|id| (id.to_string(), 2)).collect(),
        nats_roles: Some(NatsRoles::generate()?),
        ..FleetConfig::default()
    })
}

fn completion(agent: &str, job: &str, attempt: u32, result: serde_json::Value) -> Vec<u8> {
    let event = Completed {
        agent_id: agent.to_string(),
        job_id: job.to_string(),
        attempt,
        result,
        duration_ms: 1,
        started_at_us: None,
    };
    serde_json::to_vec(&event).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secured_fleet_runs_jobs_and_refuses_strangers() -> anyhow::Result<()> {
    let fleet = Fleet::start(secured(&["agent-cpu", "agent-gpu"])?).await?;

    // Every role on its own credentials, end to end: one agent by
    // password, one by nkey, a producer by password.
    let client = fleet.client().await?;
    let jobs = vec![JobSpec::new("echo", json!({"n": 1})); 100];
    let ids = client.submit_many(jobs).await?;
    let results = client
        .wait_many(&ids, Duration::from_secs(60), |_| {})
        .await?;
    assert!(results.iter().all(|r| r.state == JobState::Succeeded));
    let mut used: Vec<_> = results.iter().filter_map(|r| r.agent_id.clone()).collect();
    used.sort();
    used.dedup();
    assert_eq!(used, ["agent-cpu", "agent-gpu"], "both agents ran jobs");

    // No credentials, a wrong password, an unknown nkey: refused.
    let url = fleet.nats.url();
    let anonymous = NatsOptions::new(&url).connect().await;
    assert!(anonymous.is_err(), "an anonymous connection was accepted");
    let wrong = NatsOptions::new(&url)
        .user_and_password("producer", "guess")
        .connect()
        .await;
    assert!(wrong.is_err(), "a wrong password was accepted");
    let stranger = nkeys::KeyPair::new_user().seed()?;
    let unknown = NatsOptions::new(&url).nkey_seed(&stranger).connect().await;
    assert!(unknown.is_err(), "an unknown nkey was accepted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_producers_stay_in_their_lanes() -> anyhow::Result<()> {
    let fleet = Fleet::start(secured(&["agent-gpu"])?).await?;

    // agent-cpu's credentials cannot read agent-gpu's assignments or
    // control messages, nor publish events in its name.
    let cpu = Watched::as_role(&fleet, &Role::Agent("agent-cpu".into())).await?;
    let _sub = cpu.nats.subscribe(subjects::assign("agent-gpu")).await?;
    cpu.refused("subscription", &subjects::assign("agent-gpu"))
        .await?;
    let _sub = cpu.nats.subscribe("fleet.agent.>").await?;
    cpu.refused("subscription", "fleet.agent.>").await?;
    let _sub = cpu.nats.subscribe("_INBOX_AGENT.agent-gpu.>").await?;
    cpu.refused("subscription", "_INBOX_AGENT.agent-gpu.>")
        .await?;
    let forged = subjects::event("completed", "agent-gpu");
    cpu.nats
        .publish(
            forged.clone(),
            completion("agent-gpu", "x", 1, json!({})).into(),
        )
        .await?;
    cpu.refused("publish", &forged).await?;
    // Assigning is the balancer's alone.
    cpu.nats
        .publish(subjects::assign("agent-gpu"), "[]".into())
        .await?;
    cpu.refused("publish", &subjects::assign("agent-gpu"))
        .await?;
    // Its own lane is open: no error for its own subjects.
    let before = cpu.errors().len();
    let _own = cpu.nats.subscribe(subjects::assign("agent-cpu")).await?;
    cpu.nats.flush().await?;
    assert_eq!(cpu.errors().len(), before, "{:?}", cpu.errors());

    // A producer submits and reads results, but cannot publish agent
    // events or assignments, read assignments, or delete a stream.
    let producer = Watched::as_role(&fleet, &Role::Producer).await?;
    let event = subjects::event("completed", "agent-gpu");
    producer
        .nats
        .publish(
            event.clone(),
            completion("agent-gpu", "x", 1, json!({})).into(),
        )
        .await?;
    producer.refused("publish", &event).await?;
    producer
        .nats
        .publish(subjects::assign("agent-gpu"), "[]".into())
        .await?;
    producer
        .refused("publish", &subjects::assign("agent-gpu"))
        .await?;
    let _sub = producer
        .nats
        .subscribe(subjects::assign("agent-gpu"))
        .await?;
    producer
        .refused("subscription", &subjects::assign("agent-gpu"))
        .await?;
    let js = jetstream::new(producer.nats.clone());
    let deleted =
        tokio::time::timeout(Duration::from_secs(5), js.delete_stream("FLEET_JOBS")).await;
    assert!(
        !matches!(deleted, Ok(Ok(_))),
        "a producer deleted the jobs stream"
    );
    producer
        .refused("publish", "$JS.API.STREAM.DELETE.FLEET_JOBS")
        .await?;

    // The fleet still works after all that.
    let client = fleet.client().await?;
    let id = client
        .submit(JobSpec::new("echo", json!({"ok": 1})))
        .await?;
    let result = client.wait(&id, Duration::from_secs(30)).await?;
    assert_eq!(result.state, JobState::Succeeded);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_completion_is_refused_and_the_real_result_stands() -> anyhow::Result<()> {
    let fleet = Fleet::start(secured(&["agent-gpu"])?).await?;
    let client = fleet.client().await?;
    let id = client
        .submit(JobSpec::new("sleep", json!({"ms": 3000})))
        .await?;
    wait_until(Duration::from_secs(20), "the job running", || async {
        Ok(fleet.job(&id).await?["state"] == "running")
    })
    .await?;

    // agent-cpu, on its own subject (which the server allows), claims a
    // job leased to agent-gpu: the lease says otherwise.
    let cpu = Watched::as_role(&fleet, &Role::Agent("agent-cpu".into())).await?;
    let cpu_js = jetstream::new(cpu.nats.clone());
    cpu_js
        .publish(
            subjects::event("completed", "agent-cpu"),
            completion("agent-cpu", &id, 1, json!({"forged": "not the holder"})).into(),
        )
        .await?
        .await?;
    // The same agent naming agent-gpu in the body: subject and body disagree.
    cpu_js
        .publish(
            subjects::event("completed", "agent-cpu"),
            completion("agent-gpu", &id, 1, json!({"forged": "mismatch"})).into(),
        )
        .await?
        .await?;
    // agent-gpu's own credentials (a replay, or a confused agent) with an
    // attempt its lease never issued.
    let gpu = Watched::as_role(&fleet, &Role::Agent("agent-gpu".into())).await?;
    jetstream::new(gpu.nats.clone())
        .publish(
            subjects::event("completed", "agent-gpu"),
            completion("agent-gpu", &id, 7, json!({"forged": "stale"})).into(),
        )
        .await?
        .await?;

    for reason in ["not_lease_holder", "agent_mismatch", "stale_attempt"] {
        let series = format!("fleet_rejected_events_total{{reason=\"{reason}\"}}");
        wait_until(
            Duration::from_secs(10),
            &format!("{reason} counted"),
            || async { Ok(get(&scrape(&fleet).await?, &series) >= 1.0) },
        )
        .await?;
    }
    // None of them ended the job; the real agent's result stands.
    assert_eq!(fleet.job(&id).await?["state"], "running");
    let result = client.wait(&id, Duration::from_secs(30)).await?;
    assert_eq!(result.state, JobState::Succeeded);
    assert_eq!(result.agent_id.as_deref(), Some("agent-gpu"));
    let body = result.result.map(|r| r.to_string()).unwrap_or_default();
    assert!(
        !body.contains("forged"),
        "a forged result was accepted: {body}"
    );
    assert_eq!(result.attempts.len(), 1, "{:?}", result.attempts);
    assert!(cpu.errors().is_empty(), "{:?}", cpu.errors());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_runs_over_tls_with_a_redis_acl_user() -> anyhow::Result<()> {
    let password = fleet_protocol::new_job_id();
    let fleet = Fleet::start(FleetConfig {
        redis_acl: Some(("fleet".into(), password.clone())),
        tls: true,
        ..secured(&["agent-cpu", "agent-gpu"])?
    })
    .await?;

    // End to end: every NATS connection is TLS with a client certificate
    // and its role's credentials; the balancer reaches Redis over TLS as
    // the ACL user.
    let client = fleet.client().await?;
    let ids = client
        .submit_many(vec![JobSpec::new("echo", json!({"tls": true})); 50])
        .await?;
    let results = client
        .wait_many(&ids, Duration::from_secs(60), |_| {})
        .await?;
    assert!(results.iter().all(|r| r.state == JobState::Succeeded));

    // NATS: right credentials but no client certificate, or not trusting
    // the test CA, or plain text: refused.
    let roles = fleet
        .config
        .nats_roles
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no NATS roles"))?;
    let pki = fleet.pki.clone().ok_or_else(|| anyhow::anyhow!("no PKI"))?;
    let url = fleet.nats.url();
    let producer = roles.options(&url, &Role::Producer);
    let no_cert = producer.clone().tls(&pki.ca).connect().await;
    assert!(
        no_cert.is_err(),
        "NATS accepted a client without a certificate"
    );
    let untrusted = producer
        .clone()
        .client_certificate(&pki.client_cert, &pki.client_key)
        .connect()
        .await;
    assert!(
        untrusted.is_err(),
        "a client trusted a server outside its CA"
    );
    let plain_url = url.replacen("tls://", "nats://", 1);
    let plain = roles.options(&plain_url, &Role::Producer);
    let plain = tokio::time::timeout(Duration::from_secs(10), plain.connect()).await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "NATS accepted a connection that does not verify the server"
    );

    // Redis: TLS only, client certificates required, no default user, and
    // the ACL user kept to fleet's keys without dangerous commands.
    let port = fleet.redis.port;
    let ping = |options: fleet_balancer::state::RedisOptions| {
        options
            .client()
            .and_then(|c| Ok(c.get_connection_with_timeout(Duration::from_secs(5))?))
            .map_err(anyhow::Error::from)
            .and_then(|mut c| Ok(redis::cmd("PING").query::<String>(&mut c)?))
    };
    let full = fleet.redis.options();
    assert_eq!(ping(full.clone()).ok().as_deref(), Some("PONG"));
    let mut no_user = full.clone();
    no_user.url = format!("rediss://127.0.0.1:{port}");
    assert!(
        ping(no_user).is_err(),
        "Redis answered without the ACL user"
    );
    let mut no_cert = full.clone();
    no_cert.cert = None;
    no_cert.key = None;
    assert!(
        ping(no_cert).is_err(),
        "Redis accepted a client without a certificate"
    );
    let mut plain = full.clone();
    plain.url = format!("redis://fleet:{password}@127.0.0.1:{port}");
    plain.ca = None;
    plain.cert = None;
    plain.key = None;
    assert!(ping(plain).is_err(), "Redis answered in plain text");
    let mut conn = full
        .client()?
        .get_connection_with_timeout(Duration::from_secs(5))?;
    let flush = redis::cmd("FLUSHALL").query::<String>(&mut conn);
    assert!(
        flush.as_ref().is_err_and(|e| e.code() == Some("NOPERM")),
        "{flush:?}"
    );
    let other_key = redis::cmd("SET")
        .arg("other:key")
        .arg(1)
        .query::<String>(&mut conn);
    assert!(
        other_key
            .as_ref()
            .is_err_and(|e| e.code() == Some("NOPERM")),
        "{other_key:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_http_routes_need_the_admin_token() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig {
        balancer_args: vec!["--admin-token".into(), "t0ken-for-tests".into()],
        ..FleetConfig::default()
    })
    .await?;
    let client = fleet.client().await?;
    let id = client
        .submit(JobSpec::new("sleep", json!({"ms": 60_000})))
        .await?;
    wait_until(Duration::from_secs(20), "the job queued", || async {
        Ok(fleet.job(&id).await.is_ok())
    })
    .await?;
    let http = reqwest::Client::new();
    let cancel = format!("{}/api/jobs/{id}/cancel", fleet.balancer_url());
    for token in [None, Some("wrong"), Some("t0ken-for-test")] {
        let mut request = http.post(&cancel);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let reply = request.send().await?;
        assert_eq!(
            reply.status(),
            reqwest::StatusCode::UNAUTHORIZED,
            "{token:?}"
        );
    }
    let drain = format!("{}/api/agents/a/drain", fleet.balancer_url());
    assert_eq!(
        http.post(&drain).send().await?.status(),
        reqwest::StatusCode::UNAUTHORIZED
    );
    // Refused requests changed nothing; reads need no token.
    assert_ne!(fleet.job(&id).await?["state"], "cancelled");
    let refused = get(
        &scrape(&fleet).await?,
        "fleet_rejected_admin_requests_total{reason=\"bad_token\"}",
    );
    assert_eq!(refused, 4.0);
    // The token opens the route.
    let reply = http
        .post(&cancel)
        .bearer_auth("t0ken-for-tests")
        .send()
        .await?;
    assert!(reply.status().is_success(), "{}", reply.status());
    let result = client.wait(&id, Duration::from_secs(30)).await?;
    assert_eq!(result.state, JobState::Cancelled);
    Ok(())
}

/// A NATS JWT: `claims` signed by `issuer`, as `nsc` would write it.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, nats: serde_json::Value) -> anyhow::Result<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = json!({
        "jti": fleet_protocol::new_job_id(),
        "iat": 1_700_000_000u64,
        "iss": issuer.public_key(),
        "name": subject,
        "sub": subject,
        "nats": nats,
    });
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
    let signed = format!("{header}.{claims}");
    let signature = issuer
        .sign(signed.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot sign: {e}"))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_authenticates_against_an_operator_mode_server() -> anyhow::Result<()> {
    // Operator → account → user, signed here with nkeys; the server
    // trusts the operator and has the account preloaded in memory.
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        json!({"type": "operator", "version": 2}),
    )?;
    let limits = json!({"subs": -1, "conn": -1, "leaf": -1, "imports": -1, "exports": -1,
        "data": -1, "payload": -1, "wildcards": true});
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        json!({"type": "account", "version": 2, "limits": limits}),
    )?;
    // JetStream (the harness starts every server with -js) needs a system
    // account in operator mode.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        json!({"type": "account", "version": 2, "limits": limits}),
    )?;
    // This user may publish submissions and nothing else.
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        json!({"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1,
            "pub": {"allow": ["fleet.jobs.submit"]}, "sub": {"allow": ["_INBOX.>"]}}),
    )?;

    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("operator.conf");
    std::fs::write(
        &conf,
        format!(
            "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {acc}: {account_jwt}\n  {sys}: {system_jwt}\n}}\n",
            acc = account.public_key(),
            sys = system.public_key(),
        ),
    )?;
    let creds = dir.path().join("producer.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed()?
        ),
    )?;
    let mut server = fleet_tests::NatsServer::start_with(
        dir.path().join("nats"),
        0,
        fleet_tests::NatsSetup {
            args: vec!["-c".into(), conf.to_string_lossy().into_owned()],
            ..Default::default()
        },
    )?;
    let url = server.url();

    // The creds file gets in, with the user's permissions in force.
    let watched = {
        let options = NatsOptions::new(&url).creds(&creds);
        Watched::new(&options, options.connect_options().await?).await?
    };
    watched.nats.publish(subjects::SUBMIT, "{}".into()).await?;
    watched
        .nats
        .publish(subjects::event("completed", "a"), "{}".into())
        .await?;
    watched
        .refused("publish", &subjects::event("completed", "a"))
        .await?;
    assert!(
        !watched
            .errors()
            .iter()
            .any(|e| e.contains(subjects::SUBMIT)),
        "{:?}",
        watched.errors()
    );
    // Without it, or with a user the account never signed: refused.
    assert!(NatsOptions::new(&url).connect().await.is_err());
    let stranger = nkeys::KeyPair::new_account();
    let forged = dir.path().join("forged.creds");
    std::fs::write(
        &forged,
        format!(
            "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            jwt(
                &stranger,
                &user.public_key(),
                json!({"type": "user", "version": 2})
            )?,
            user.seed()?
        ),
    )?;
    assert!(NatsOptions::new(&url)
        .creds(&forged)
        .connect()
        .await
        .is_err());
    server.process().kill9();
    Ok(())
}
