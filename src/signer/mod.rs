//! One Certificate call, from the moment gRPC core hands it over:
//! `service` takes what the call carries without parsing it and hands it to
//! the fixed `pool`; on a pool thread `call` checks the token (`auth`),
//! reads the CSR and applies the operator's `policy`, has the machine CA of
//! the call's `snapshot` sign it, and `report` writes the log line, the
//! metrics and the audit record. `service` alone knows gRPC.

pub(crate) mod audit;
pub mod auth;
pub mod call;
pub(crate) mod metrics;
pub mod policy;
pub(crate) mod pool;
pub(crate) mod report;
pub(crate) mod service;
pub(crate) mod sink;
pub(crate) mod snapshot;
pub(crate) mod throttle;
