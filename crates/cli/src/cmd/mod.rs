//! One module per `vlad` subcommand.
pub mod bench;
pub mod clip;
pub mod common;
pub mod data;
pub mod metrics;
