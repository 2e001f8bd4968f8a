//! Sampling answers from the policy with the KV cache, in its own chat format.

use crate::error::{DpoError, Result};
use crate::prompts::{clean_answer, ChatFormat};
use std::sync::Arc;
use tokenizers::Tokenizer;
use wildreward_kernels::Bf16Kernel;
use wildreward_model::generate::{generate, SamplingParams};
use wildreward_model::{backend, Backbone, Forward, RewardModel};

/// One sampled answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Sampled tokens, with the stop token appended when the answer ended with one (so training
    /// teaches the policy to stop).
    pub tokens: Vec<u32>,
    /// Whether it ended with EOS / end-of-turn.
    pub ended_with_eos: bool,
    /// The answer text the reward model judges (after any `</think>`, trimmed).
    pub text: String,
}

/// What sampling needs from a policy: its tokenizer, chat format and stop tokens, and an inference
/// forward over its current weights (sharing their storage, so optimiser updates are seen).
pub struct Sampler {
    backbone: Backbone,
    forward: Arc<dyn Forward>,
    bf16: Option<Bf16Kernel>,
    tokenizer: Tokenizer,
    format: ChatFormat,
    stop: Vec<u32>,
    system: Option<String>,
}

impl Sampler {
    /// A sampler over `model`'s weights as they are now and after every in-place update.
    pub fn new(model: &RewardModel, system: Option<String>) -> Result<Self> {
        let backbone = model.inference_backbone()?;
        let forward = backend::select(&backbone, None)?;
        let tokenizer = model.tokenizer().clone();
        let format = ChatFormat::detect(model.chat_template());
        let mut stop: Vec<u32> = format
            .end_of_turn()
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        for id in model.config().eos_ids() {
            if !stop.contains(&id) {
                stop.push(id);
            }
        }
        if stop.is_empty() {
            return Err(DpoError::input(format!(
                "{}: the policy declares no EOS token, so answers could never end",
                model.source().display()
            )));
        }
        Ok(Self {
            backbone,
            forward,
            bf16: None,
            tokenizer,
            format,
            stop,
            system,
        })
    }

    /// Samples with bf16 copies of the projections and LM head on `kernel` from now on (made at
    /// once and again by every [`Sampler::refresh`], since the copies do not see later updates).
    pub fn use_bf16(&mut self, kernel: Bf16Kernel) -> Result<()> {
        self.bf16 = Some(kernel);
        self.refresh()
    }

    /// Re-packs the bf16 copies from the current weights (after an optimiser step); nothing to do
    /// for f32 sampling, which reads the weights themselves.
    pub fn refresh(&mut self) -> Result<()> {
        if self.bf16.is_some() {
            self.forward = backend::select(&self.backbone, self.bf16)?;
        }
        Ok(())
    }

    /// Token ids of the chat-formatted prompt.
    pub fn prompt_ids(&self, user: &str) -> Result<Vec<u32>> {
        let text = self.format.render(self.system.as_deref(), user);
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| DpoError::input(format!("cannot tokenise a prompt: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `n` answers to `prompt_ids`.
    pub fn sample(
        &self,
        prompt_ids: &[u32],
        n: usize,
        max_new_tokens: usize,
        temperature: f32,
        top_p: f32,
        seed: u64,
    ) -> Result<Vec<Answer>> {
        let params = SamplingParams {
            max_new_tokens,
            temperature,
            top_p,
            seed,
            stop_tokens: self.stop.clone(),
        };
        let stop = self.stop[0];
        generate(self.forward.as_ref(), prompt_ids, n, &params)?
            .into_iter()
            .map(|g| {
                let decoded = self
                    .tokenizer
                    .decode(&g.tokens, true)
                    .map_err(|e| DpoError::input(format!("cannot decode an answer: {e}")))?;
                let mut tokens = g.tokens;
                if g.ended_with_eos {
                    tokens.push(stop);
                }
                Ok(Answer {
                    tokens,
                    ended_with_eos: g.ended_with_eos,
                    text: clean_answer(&decoded),
                })
            })
            .collect()
    }
}
