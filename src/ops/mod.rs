//! Operations at the edges of the server: signals, reload, health, metrics,
//! systemd readiness and journal priorities, the audit trail and process
//! limits.

pub mod audit;
pub mod health;
pub mod journal;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod reload;
pub mod sched;
pub mod signals;
