//! Resumable checkpoints and the metrics log.
//!
//! A checkpoint is `out/checkpoints/step-NNNNNN/` holding the trainable tensors, AdamW's moments and
//! `trainer_state.json` (step, settings). It is written as `step-NNNNNN.partial` and renamed when
//! complete, so a run killed while saving never leaves something that looks finished; resuming picks
//! the newest complete one and cuts `metrics.jsonl` back to it.

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Complete checkpoints kept (older ones are removed).
const KEEP: usize = 2;

/// What `trainer_state.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimiser steps completed.
    pub step: usize,
    /// The settings of the run (a resumed run must use the same).
    pub config: TrainConfig,
    /// Examples in the training split when the run started.
    pub train_examples: usize,
}

/// A checkpoint read back for resuming.
pub struct Resumed<S = TrainerState> {
    /// Its state file.
    pub state: S,
    /// Trainable tensors by name.
    pub params: HashMap<String, Tensor>,
    /// AdamW's moments by name.
    pub optimizer: HashMap<String, Tensor>,
    /// Where it was.
    pub dir: PathBuf,
}

fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

fn complete_checkpoints(out: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let dir = checkpoints_dir(out);
    if !dir.exists() {
        return Ok(vec![]);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))? {
        let entry = entry.map_err(|e| TrainError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<usize>().ok())
        {
            if entry.path().join("trainer_state.json").exists() {
                found.push((step, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn write_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(tensors, path)
        .map_err(|e| TrainError::Numeric(format!("{}: {e}", path.display())))
}

/// Saves a checkpoint of `step` atomically and prunes old ones; `state` is the caller's own
/// record (the trainer's [`TrainerState`], online DPO's), written as `trainer_state.json`.
pub fn save<S: Serialize>(
    out: &Path,
    step: usize,
    state: &S,
    params: &HashMap<String, Tensor>,
    optimizer: &HashMap<String, Tensor>,
) -> Result<PathBuf> {
    let root = checkpoints_dir(out);
    let name = format!("step-{step:06}");
    let tmp = root.join(format!("{name}.partial"));
    let dir = root.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    write_safetensors(params, &tmp.join("trainable.safetensors"))?;
    write_safetensors(optimizer, &tmp.join("optimizer.safetensors"))?;
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| TrainError::Numeric(format!("trainer state: {e}")))?;
    let state_path = tmp.join("trainer_state.json");
    std::fs::write(&state_path, json).map_err(|e| TrainError::io(&state_path, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| TrainError::io(&dir, e))?;
    let all = complete_checkpoints(out)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(KEEP)) {
        std::fs::remove_dir_all(old).map_err(|e| TrainError::io(old, e))?;
    }
    Ok(dir)
}

/// Opens a run's output directory: creates it, and with `resume` returns its newest complete
/// checkpoint (if any); without `resume` a directory that already holds a run (`metrics.jsonl`) is
/// refused rather than overwritten. Shared by the trainer and online DPO.
pub fn open_run<S: serde::de::DeserializeOwned>(
    out: &Path,
    resume: bool,
    device: &Device,
) -> Result<Option<Resumed<S>>> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    if resume {
        return latest(out, device);
    }
    if out.join("metrics.jsonl").exists() {
        return Err(TrainError::input(format!(
            "{}: already holds a run; pass --resume to continue it or choose another --out",
            out.display()
        )));
    }
    Ok(None)
}

/// The newest complete checkpoint under `out`, if any.
pub fn latest<S: serde::de::DeserializeOwned>(
    out: &Path,
    device: &Device,
) -> Result<Option<Resumed<S>>> {
    let Some((_, dir)) = complete_checkpoints(out)?.pop() else {
        return Ok(None);
    };
    let load = |name: &str| -> Result<HashMap<String, Tensor>> {
        let path = dir.join(name);
        candle_core::safetensors::load(&path, device)
            .map_err(|e| TrainError::input(format!("{}: {e}", path.display())))
    };
    let state_path = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state: S = serde_json::from_str(&text)
        .map_err(|e| TrainError::input(format!("{}: {e}", state_path.display())))?;
    Ok(Some(Resumed {
        params: load("trainable.safetensors")?,
        optimizer: load("optimizer.safetensors")?,
        state,
        dir,
    }))
}

/// The append-only `metrics.jsonl`: one JSON object per line, flushed as written.
pub struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsLog {
    /// Opens `out/metrics.jsonl`. When resuming from `keep_through` steps, lines of later steps
    /// (written after that checkpoint by the interrupted run) are dropped first.
    pub fn open(out: &Path, keep_through: Option<usize>) -> Result<Self> {
        let path = out.join("metrics.jsonl");
        if let Some(step) = keep_through {
            if path.exists() {
                let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
                let kept: String = text
                    .lines()
                    .filter(|line| {
                        serde_json::from_str::<serde_json::Value>(line)
                            .ok()
                            .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64))
                            .is_some_and(|s| s as usize <= step)
                    })
                    .flat_map(|l| [l, "\n"])
                    .collect();
                std::fs::write(&path, kept).map_err(|e| TrainError::io(&path, e))?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { file, path })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &serde_json::Value) -> Result<()> {
        let mut line = record.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}
