//! One module per `vlad` subcommand.
pub mod bench;
pub mod clip;
pub mod common;
pub mod data;
pub mod demo;
pub mod detector;
pub mod eval;
pub mod infer;
pub mod metrics;
pub mod serve;
pub mod train;
