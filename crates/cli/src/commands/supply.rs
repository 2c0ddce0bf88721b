//! `gantry build | artifact | review | block`: the supply chain.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct BuildArgs {}
#[derive(clap::Args)]
pub struct ArtifactArgs {}
#[derive(clap::Args)]
pub struct ReviewArgs {}
#[derive(clap::Args)]
pub struct BlockArgs {}

pub fn build(_args: BuildArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("builds are not built yet")
}
pub fn artifact(_args: ArtifactArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("artifacts are not built yet")
}
pub fn review(_args: ReviewArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("reviews are not built yet")
}
pub fn block(_args: BlockArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("blocks are not built yet")
}
