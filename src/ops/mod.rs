//! Operations at the edges of the server: signals, reload, health, metrics,
//! systemd readiness, the audit trail and process limits.

pub mod audit;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod reload;
pub mod signals;
