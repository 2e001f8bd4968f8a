//! Scoring the same inputs with several reward models that share their first blocks: the copies of
//! one backbone trained with its lower blocks frozen (last-N layers, head only), as an experiment or
//! a model comparison has them. The shared blocks ([`shared_blocks`]) run once per batch
//! ([`Forward::trunk`]) and each model runs only its own blocks and head from there
//! ([`Forward::last_hidden_from`]): by block count, ten last-2-layer models of a 30-block backbone
//! cost about 1.6 models' work instead of ten, and each model's scores are the ones it gives alone.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::forward::Forward;
use crate::model::RewardModel;
use crate::scorer::{all_scored, mark_truncated, Scored, Scorer};
use candle_core::{DType, Tensor};
use wildreward_types::chat::Message;
use wildreward_types::template::EmptyHistory;

/// Leading decoder blocks `a` and `b` share exactly: the same configuration and embeddings, and
/// blocks `0..n` whose every tensor is equal value for value (0 when the embeddings differ).
pub fn shared_blocks(a: &RewardModel, b: &RewardModel) -> Result<usize> {
    if !same_decoder(a.config(), b.config()) {
        return Ok(0);
    }
    let (ta, tb) = (a.tensors(), b.tensors());
    let same = |name: &str| -> Result<bool> {
        match (ta.get(name), tb.get(name)) {
            (Some(x), Some(y)) => same_tensor(x, y),
            (None, None) => Ok(true),
            _ => Ok(false),
        }
    };
    if !same("model.embed_tokens.weight")? {
        return Ok(0);
    }
    let blocks = a.config().num_hidden_layers;
    for i in 0..blocks {
        let prefix = format!("model.layers.{i}.");
        let mut names: Vec<&String> = ta
            .keys()
            .chain(tb.keys())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            if !same(name)? {
                return Ok(i);
            }
        }
    }
    Ok(blocks)
}

/// Whether two configurations describe the same decoder arithmetic: family, shapes, norm epsilon,
/// RoPE and biases (not the head, labels, special tokens or context length, which a reward
/// model's saved `config.json` and the GGUF it was trained from spell differently).
fn same_decoder(a: &ModelConfig, b: &ModelConfig) -> bool {
    let key = |c: &ModelConfig| {
        (
            c.model_type.clone(),
            [
                c.hidden_size,
                c.intermediate_size,
                c.num_hidden_layers,
                c.num_attention_heads,
                c.num_kv_heads(),
                c.head_dim(),
                c.vocab_size,
            ],
            c.rms_norm_eps.to_bits(),
            c.rope_base().to_bits(),
            c.rope_scaling(),
            c.qkv_bias(),
        )
    };
    key(a) == key(b)
}

/// Whether two tensors have the same shape, dtype and values (bit for bit).
fn same_tensor(a: &Tensor, b: &Tensor) -> Result<bool> {
    if a.dims() != b.dims() || a.dtype() != b.dtype() {
        return Ok(false);
    }
    let bits = |t: &Tensor| -> Result<Vec<u32>> {
        let v: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        Ok(v.into_iter().map(f32::to_bits).collect())
    };
    Ok(bits(a)? == bits(b)?)
}

/// Scorers whose models share their first [`SharedScorers::depth`] blocks and run the same kind
/// of forward, scored together.
pub struct SharedScorers<'a> {
    scorers: Vec<&'a Scorer>,
    depth: usize,
}

impl<'a> SharedScorers<'a> {
    /// Groups `scorers` (at least one): the depth is the blocks every model shares with the first.
    /// Refuses models whose forwards differ (a trunk from one kind of forward would not be the
    /// numbers the other computes alone) or whose length limits differ.
    pub fn new(scorers: Vec<&'a Scorer>) -> Result<Self> {
        let Some((first, rest)) = scorers.split_first() else {
            return Err(ModelError::Input("no models to score with".into()));
        };
        let kind = |s: &Scorer| {
            let f = s.model().forward();
            (f.name(), f.matmul_name())
        };
        let mut depth = first.model().config().num_hidden_layers;
        for (i, s) in rest.iter().enumerate() {
            if kind(s) != kind(first) || s.max_length() != first.max_length() {
                return Err(ModelError::Input(format!(
                    "model {} runs {:?} up to {} tokens, model 0 {:?} up to {}: score them \
                     separately",
                    i + 1,
                    kind(s),
                    s.max_length(),
                    kind(first),
                    first.max_length()
                )));
            }
            depth = depth.min(shared_blocks(first.model(), s.model())?);
        }
        Ok(Self { scorers, depth })
    }

    /// Blocks run once per batch for every model.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Scores turns encoded as training encodes them with every model: `[model][turn]`, each
    /// model's scores what [`Scorer::score_turns`] gives alone. The models must encode every turn
    /// to the same ids (one tokenizer); a turn they encode differently is an error naming it.
    pub fn score_turns(
        &self,
        turns: &[(&[Message], &str, &str)],
        empty: EmptyHistory,
    ) -> Result<Vec<Vec<Scored>>> {
        let encoded = self.scorers[0].encode_turns(turns, empty)?;
        for (m, s) in self.scorers.iter().enumerate().skip(1) {
            let other = s.encode_turns(turns, empty)?;
            if let Some(i) = (0..turns.len()).find(|&i| other[i].0 != encoded[i].0) {
                return Err(ModelError::Input(format!(
                    "item {i}: model {m} encodes it differently from model 0 (another \
                     tokenizer): score them separately"
                )));
            }
        }
        let (ids, truncated): (Vec<Vec<u32>>, Vec<bool>) = encoded.into_iter().unzip();
        let mut out = self.score_ids(&ids)?;
        for model in &mut out {
            mark_truncated(model, &truncated);
        }
        Ok(out)
    }

    /// Scores pre-tokenised inputs with every model: `[model][input]`, in input order, in the
    /// batches the first model's scorer plans.
    pub fn score_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<Scored>>> {
        let first = self.scorers[0];
        let mut out: Vec<Vec<Option<Scored>>> = vec![vec![None; ids.len()]; self.scorers.len()];
        let trunk_forward: &dyn Forward = first.model().forward();
        for batch in first.plan(ids) {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            let trunk = trunk_forward.trunk(&rows, self.depth)?;
            for (m, scorer) in self.scorers.iter().enumerate() {
                let model = scorer.model();
                let hidden = model.forward().last_hidden_from(&trunk)?;
                let logits = model.head().forward(&hidden)?;
                for (&i, scored) in batch.iter().zip(scorer.scored_from_logits(&logits, &rows)?) {
                    out[m][i] = Some(scored);
                }
            }
        }
        out.into_iter().map(all_scored).collect()
    }
}
