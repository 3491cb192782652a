//! What the balancer reports about itself: Prometheus [`metrics`] at
//! `/metrics`, and the in-memory [`rate`]s (throughput, recent failures,
//! latency percentiles) that the stats document and the dashboard show.

pub(crate) mod metrics;
pub(crate) mod rate;
