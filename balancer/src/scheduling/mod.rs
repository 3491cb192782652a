//! Deciding where each job runs, and handing it there.
//!
//! The [`directory`] is the balancer's in-memory view of the agents, so a
//! decision costs no Redis round trip; a [`Round`] ([`placement`]) finds
//! the agents that can take a job now and asks the configured
//! [`policy`] to choose among them; [`scheduler`] runs rounds over the
//! queue whenever something changes, commits the leases through the
//! store, and [`dispatch`] sends them to the agents. [`families`] tells a
//! job's model family for affinity, and [`backlog`] tells the intake
//! whether it may lease a new job at once.

pub(crate) mod backlog;
pub(crate) mod directory;
pub(crate) mod dispatch;
pub(crate) mod families;
pub(crate) mod placement;
pub mod policy;
pub(crate) mod scheduler;

pub use directory::AgentView;
pub use placement::Round;
pub use policy::{Composite, Weights};
