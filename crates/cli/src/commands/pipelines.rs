//! `gantry plan | validate | check | schema`: pipelines as code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct PlanArgs {
    /// Pipeline definition (YAML or Jsonnet).
    pub file: PathBuf,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Pipeline definitions or directories of them.
    pub files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Pipeline definitions or directories of them.
    pub files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct SchemaArgs {}

pub fn plan(_args: PlanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
pub fn validate(_args: ValidateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
pub fn check(_args: CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
pub fn schema(_args: SchemaArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
