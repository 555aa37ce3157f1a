//! Operations at the edges of the server: signals and the audit trail.

pub mod audit;
pub mod limits;
pub mod signals;
