//! `vlad metrics` (being written: vlad-metrics).
#[derive(clap::Args, Debug)]
pub struct MetricsArgs {}
pub fn run(_args: MetricsArgs) -> anyhow::Result<()> {
    anyhow::bail!("vlad metrics is not wired yet")
}
