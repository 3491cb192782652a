//! The Lua scripts' fencing, called directly on a real redis-server: a
//! balancer without the current leadership token cannot change anything.

use std::time::Duration;

use fleet_balancer::store::{Lead, Store, StoreError};
use fleet_protocol::{JobSpec, Keys};
use fleet_tests::RedisServer;
use serde_json::json;

fn job(id: &str) -> anyhow::Result<fleet_protocol::ValidJob> {
    Ok(JobSpec::new("echo", json!({})).validate(id)?)
}

#[tokio::test]
async fn only_the_current_leader_can_write() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let redis = RedisServer::start(dir.path().join("redis"))?;
    let store = Store::connect(&redis.url(), Keys::default()).await?;
    let ttl = Duration::from_millis(300);

    let Lead::Leader(first) = store.lead("", "a", ttl).await? else {
        anyhow::bail!("the first candidate should lead");
    };
    // A second candidate stands by while the lease is held.
    assert_eq!(
        store.lead("", "b", ttl).await?,
        Lead::Follower(first.clone())
    );
    // The leader renews with its token.
    assert_eq!(
        store.lead(&first, "a", ttl).await?,
        Lead::Leader(first.clone())
    );

    let leader = store.with_token(&first);
    let (outcomes, depth) = leader.enqueue(&[job("j1")?], 1).await?;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(depth, 1);

    // Unrenewed, the lease lapses and b takes over with a new epoch.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let Lead::Leader(second) = store.lead("", "b", ttl).await? else {
        anyhow::bail!("b should lead once a's lease lapsed");
    };
    assert_ne!(first, second);

    // The deposed leader's writes are refused, and change nothing.
    let refused = leader.enqueue(&[job("j2")?], 2).await;
    assert!(matches!(refused, Err(StoreError::NotLeader)), "{refused:?}");
    assert!(store.job("j2").await?.is_none());
    let refused = leader.expire(10_000, ttl, 10, (true, true), ttl).await;
    assert!(matches!(refused, Err(StoreError::NotLeader)), "{refused:?}");
    // A store without any token cannot write either.
    let refused = store.enqueue(&[job("j3")?], 3).await;
    assert!(matches!(refused, Err(StoreError::NotLeader)), "{refused:?}");

    let successor = store.with_token(&second);
    let (_, depth) = successor.enqueue(&[job("j4")?], 4).await?;
    assert_eq!(depth, 2);
    // The old token cannot renew its way back either.
    assert_eq!(
        store.lead(&first, "a", ttl).await?,
        Lead::Follower(second.clone())
    );

    // A renewal that arrives after its own lease lapsed does not quietly
    // start a new leadership under the old token: it is told it lost.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(
        store.lead(&second, "b", ttl).await?,
        Lead::Follower(String::new())
    );
    assert!(matches!(store.lead("", "b", ttl).await?, Lead::Leader(t) if t != second));
    Ok(())
}
