//! From the command line to typed configuration: `argv` rewrites what argh
//! cannot read as written (the Go signer's flags, `--flag=value`, no
//! subcommand), `args` is what argh reads, `resolve` adds the environment and
//! default file layouts, `token` is the one rule for where a token comes
//! from, `values` parses the lists operators write.

pub mod args;
pub mod argv;
mod layout;
mod lookup;
pub mod resolve;
pub(crate) mod token;
pub mod values;
