//! Reward heads on the pooled (last real token) hidden state. Computed in f32 whatever the backbone's
//! dtype, so rewards do not depend on half precision.
//!
//! - [`HeadKind::Ordinal`]: `score` = Linear(hidden, K-1, no bias) — HF's `*ForSequenceClassification`
//!   layout the reference trains (independent thresholds), so released WildReward checkpoints load.
//! - [`HeadKind::Coral`]: true CORAL, one shared weight `[1, hidden]` plus K-1 ordered biases.
//! - [`HeadKind::Scalar`]: one logit, for pairwise (Bradley-Terry) reward models.

use candle_core::{DType, Device, Result, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;

/// Which head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// K-1 independent threshold logits (`score.weight` `[K-1, hidden]`).
    Ordinal,
    /// Shared weight and K-1 biases (`score.weight` `[1, hidden]`, `score.bias` `[K-1]`).
    Coral,
    /// K-1 conditional logits (CORN), the ordinal layout read with chained probabilities.
    Corn,
    /// One logit (`score.weight` `[1, hidden]`).
    Scalar,
}

impl HeadKind {
    /// The name stored in `config.json`'s `wildreward_head`.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Ordinal => "ordinal",
            HeadKind::Coral => "coral",
            HeadKind::Corn => "corn",
            HeadKind::Scalar => "scalar",
        }
    }

    /// Rows of `score.weight` for a head with `outputs` logits.
    pub fn weight_rows(self, outputs: usize) -> usize {
        match self {
            HeadKind::Ordinal | HeadKind::Corn => outputs,
            HeadKind::Coral | HeadKind::Scalar => 1,
        }
    }

    /// Parses a `wildreward_head` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ordinal" => Some(HeadKind::Ordinal),
            "coral" => Some(HeadKind::Coral),
            "corn" => Some(HeadKind::Corn),
            "scalar" | "bt" => Some(HeadKind::Scalar),
            _ => None,
        }
    }
}

/// The dtype a head computes in: f32, or f64 when given f64 (gradient checks).
fn head_dtype(d: DType) -> DType {
    if d == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// A reward head with its weights (f32).
#[derive(Debug, Clone)]
pub struct ScoreHead {
    kind: HeadKind,
    weight: Tensor,
    bias: Option<Tensor>,
    outputs: usize,
}

impl ScoreHead {
    /// Reads `score.weight` (and `score.bias` for CORAL) from named tensors; `None` when absent.
    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        kind: HeadKind,
        outputs: usize,
    ) -> Result<Option<Self>> {
        let Some(w) = tensors.get("score.weight") else {
            return Ok(None);
        };
        let weight = w.to_dtype(head_dtype(w.dtype()))?;
        let bias = match kind {
            HeadKind::Coral => Some(
                tensors
                    .get("score.bias")
                    .ok_or_else(|| candle_core::Error::Msg("CORAL head without score.bias".into()))?
                    .to_dtype(head_dtype(w.dtype()))?,
            ),
            _ => None,
        };
        let rows = weight.dim(0)?;
        let want_rows = kind.weight_rows(outputs);
        if rows != want_rows {
            candle_core::bail!(
                "score.weight has {rows} rows; a {} head with {outputs} outputs needs {want_rows}",
                kind.name()
            );
        }
        Ok(Some(Self {
            kind,
            weight,
            bias,
            outputs,
        }))
    }

    /// A freshly initialised head (normal(0, 0.02) weights as HF initialises `score`; CORAL biases
    /// descending as coral-pytorch does), reproducible from `seed`.
    pub fn random(
        kind: HeadKind,
        outputs: usize,
        hidden: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let rows = kind.weight_rows(outputs);
        // Box-Muller: rand's core has no normal distribution.
        let data: Vec<f32> = (0..rows * hidden)
            .map(|_| {
                let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random::<f64>());
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * 0.02) as f32
            })
            .collect();
        let weight = Tensor::from_vec(data, (rows, hidden), device)?;
        let bias = (kind == HeadKind::Coral)
            .then(|| {
                let b: Vec<f32> = (0..outputs)
                    .map(|k| (outputs - k) as f32 / outputs as f32)
                    .collect();
                Tensor::from_vec(b, outputs, device)
            })
            .transpose()?;
        Ok(Self {
            kind,
            weight,
            bias,
            outputs,
        })
    }

    /// Which head this is.
    pub fn kind(&self) -> HeadKind {
        self.kind
    }

    /// Logits per example (K-1 for ordinal heads, 1 for scalar).
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Logits `[batch, outputs]` (f32) from pooled hidden states `[batch, hidden]`.
    pub fn forward(&self, pooled: &Tensor) -> Result<Tensor> {
        let x = pooled.to_dtype(self.weight.dtype())?;
        let z = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            // CORAL: one shared projection, shifted by each threshold's bias.
            Some(b) => z.broadcast_add(&b.unsqueeze(0)?),
            None => Ok(z),
        }
    }

    /// The head's tensors by HF name, for saving (and for making them trainable).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("score.weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            out.push(("score.bias".to_string(), b.clone()));
        }
        out
    }
}

/// The reward and per-level probabilities of one row of logits: `1 + Σσ(z)` for ordinal heads, the
/// raw logit for a scalar head.
pub fn reward_of(kind: HeadKind, logits: &[f32]) -> (f32, Vec<f32>) {
    match kind {
        HeadKind::Scalar => (logits.first().copied().unwrap_or(0.0), vec![]),
        HeadKind::Corn => {
            // P(y > k) chains the conditionals; level k's probability is the drop from k-1 to k.
            let mut above = Vec::with_capacity(logits.len());
            let mut p = 1.0f32;
            for &z in logits {
                p *= wildreward_types::ordinal::sigmoid(z);
                above.push(p);
            }
            let reward = 1.0 + above.iter().sum::<f32>();
            let mut probs = Vec::with_capacity(logits.len() + 1);
            let mut prev = 1.0f32;
            for &a in &above {
                probs.push(prev - a);
                prev = a;
            }
            probs.push(prev);
            (reward, probs)
        }
        HeadKind::Ordinal | HeadKind::Coral => (
            wildreward_types::ordinal::reward(logits),
            wildreward_types::ordinal::level_probs(logits),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits whose sigmoids are ½, ¾ and ¼ exactly (up to f32).
    fn logits() -> Vec<f32> {
        vec![0.0, 3f32.ln(), -(3f32.ln())]
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn ordinal_and_coral_rewards_are_one_plus_the_sum_of_sigmoids() {
        for kind in [HeadKind::Ordinal, HeadKind::Coral] {
            let (reward, probs) = reward_of(kind, &logits());
            // 1 + ½ + ¾ + ¼.
            assert!(close(reward, 2.5), "{kind:?}: {reward}");
            assert_eq!(probs.len(), 4);
            assert!(close(probs.iter().sum(), 1.0), "{probs:?}");
        }
    }

    #[test]
    fn corn_reward_chains_the_conditional_probabilities() {
        let (reward, probs) = reward_of(HeadKind::Corn, &logits());
        // P(y>1) = ½, P(y>2) = ½·¾ = ⅜, P(y>3) = ⅜·¼ = 3/32; reward = 1 + Σ = 1 + 31/32.
        assert!(close(reward, 1.0 + 0.5 + 0.375 + 0.093_75), "{reward}");
        let want = [0.5, 0.125, 0.281_25, 0.093_75];
        for (p, w) in probs.iter().zip(want) {
            assert!(close(*p, w), "{probs:?}");
        }
        // Not the independent-threshold formula, which would read 2.5 here.
        assert!(!close(reward, reward_of(HeadKind::Ordinal, &logits()).0));
    }

    #[test]
    fn scalar_reward_is_the_logit() {
        assert_eq!(reward_of(HeadKind::Scalar, &[-0.75]), (-0.75, vec![]));
    }

    #[test]
    fn coral_logits_share_one_projection_shifted_by_each_bias() -> Result<()> {
        let dev = Device::Cpu;
        let mut tensors = HashMap::new();
        tensors.insert(
            "score.weight".to_string(),
            Tensor::new(&[[1.0f32, -2.0]], &dev)?,
        );
        tensors.insert(
            "score.bias".to_string(),
            Tensor::new(&[0.5f32, 0.0, -0.5], &dev)?,
        );
        let head = ScoreHead::from_tensors(&tensors, HeadKind::Coral, 3)?
            .ok_or_else(|| candle_core::Error::Msg("no head".into()))?;
        // w·x = 3·1 + 1·(-2) = 1.
        let z: Vec<Vec<f32>> = head
            .forward(&Tensor::new(&[[3.0f32, 1.0]], &dev)?)?
            .to_vec2()?;
        assert_eq!(z, vec![vec![1.5, 1.0, 0.5]]);
        Ok(())
    }
}
