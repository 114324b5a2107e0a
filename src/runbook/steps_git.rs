//! TEMPORARY until the gitops module lands (not committed).
use super::executor::{ExecError, Progress};
use super::plan::Step;
use super::steps::{StepEnv, StepJournal};

pub struct GitPreview {
    pub lines: Vec<String>,
    pub done: Option<String>,
}

pub async fn preview(_env: &StepEnv, _read: &kube::Client, _step: &Step) -> Result<GitPreview, String> {
    Err("not yet".into())
}

pub async fn run(
    _env: &StepEnv,
    _read: &kube::Client,
    _step: &Step,
    _journal: &dyn StepJournal,
    _progress: &Progress,
) -> Result<String, ExecError> {
    Err(ExecError::Refused("not yet".into()))
}

pub async fn wait_target(_env: &StepEnv) -> Result<String, String> {
    Err("not yet".into())
}

pub async fn contains(_env: &StepEnv, _revs: &[String], _want: &str) -> Result<bool, String> {
    Err("not yet".into())
}
