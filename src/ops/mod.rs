//! Operations at the edges of the server: signals (and, later, reload, health,
//! metrics).

pub mod signals;
