//! The DPO objective: summed log-probabilities of answer tokens under the policy and the frozen
//! reference, and the sigmoid (DPO) or IPO loss on their log-ratios.

use crate::config::DpoLoss;
use crate::error::Result;
use candle_core::{DType, Tensor, D};
use wildreward_model::{loss::log_sigmoid, Backbone};

/// `Σ_t log p(answer_t | prompt, answer_<t)` for each answer, `[answers]` f32 — differentiable
/// through `backbone` when its weights are trainable. All answers share `prompt` (a pair does).
pub fn answer_logprobs(
    backbone: &Backbone,
    prompt: &[u32],
    answers: &[&[u32]],
    pad_id: u32,
) -> Result<Tensor> {
    let p = prompt.len();
    let longest = answers.iter().map(|a| a.len()).max().unwrap_or(0).max(1);
    let rows = answers.len();
    let (mut ids, mut targets, mut mask, mut lengths) = (vec![], vec![], vec![], vec![]);
    for a in answers {
        ids.extend_from_slice(prompt);
        ids.extend_from_slice(a);
        ids.extend(std::iter::repeat_n(pad_id, longest - a.len()));
        targets.extend_from_slice(a);
        targets.extend(std::iter::repeat_n(0u32, longest - a.len()));
        mask.extend((0..longest).map(|t| if t < a.len() { 1f32 } else { 0.0 }));
        lengths.push(p + a.len().max(1));
    }
    let dev = backbone.device();
    let ids = Tensor::from_vec(ids, (rows, p + longest), dev)?;
    let hidden = backbone.forward(&ids, &lengths)?;
    // The hidden state at position p-1+t predicts answer token t.
    let h = hidden.narrow(1, p - 1, longest)?;
    let logits = backbone.lm_logits(&h)?.to_dtype(DType::F32)?;
    // log-softmax from differentiable primitives, stabilised by the (constant) row maximum.
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = shifted.broadcast_sub(&lse)?;
    let targets = Tensor::from_vec(targets, (rows, longest, 1), dev)?;
    let picked = logp.gather(&targets, D::Minus1)?.squeeze(D::Minus1)?;
    let mask = Tensor::from_vec(mask, (rows, longest), dev)?;
    Ok((picked * mask)?.sum(1)?)
}

/// The loss of one pair from the policy's and the reference's summed log-probabilities (0-d).
pub fn pair_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    ref_chosen: f64,
    ref_rejected: f64,
    beta: f64,
    kind: DpoLoss,
) -> Result<Tensor> {
    let h = ((policy_chosen - policy_rejected)? - (ref_chosen - ref_rejected))?;
    Ok(match kind {
        DpoLoss::Sigmoid => log_sigmoid(&(h * beta)?)?.neg()?,
        DpoLoss::Ipo => (h - 1.0 / (2.0 * beta))?.sqr()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn losses_match_their_formulas() {
        let dev = Device::Cpu;
        let t = |x: f32| Tensor::new(x, &dev).unwrap();
        // h = (−1 − −3) − (−2 − −2) = 2; DPO: −log σ(0.1·2) = log(1 + e^−0.2).
        let l = pair_loss(&t(-1.0), &t(-3.0), -2.0, -2.0, 0.1, DpoLoss::Sigmoid).unwrap();
        let want = (1.0f64 + (-0.2f64).exp()).ln();
        assert!((l.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-6);
        // IPO: (2 − 1/(2·0.1))² = 9.
        let l = pair_loss(&t(-1.0), &t(-3.0), -2.0, -2.0, 0.1, DpoLoss::Ipo).unwrap();
        assert!((l.to_scalar::<f32>().unwrap() - 9.0).abs() < 1e-5);
    }
}
