//! AdamW (PyTorch's decoupled form) with state that can be saved and restored exactly, the
//! warmup-then-linear-decay schedule, and global gradient-norm clipping.
//!
//! candle-nn's `AdamW` keeps its moments private, so a resumed run could not continue exactly; this
//! one exposes them as named tensors for a safetensors file.

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::params::Param;
use candle_core::{CpuStorage, DType, Storage, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay (for parameters marked `decay`).
    pub weight_decay: f64,
}

/// AdamW over a fixed list of parameters.
pub struct AdamW {
    cfg: AdamWConfig,
    params: Vec<Param>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
}

impl AdamW {
    /// An optimiser with zero moments.
    pub fn new(params: Vec<Param>, cfg: AdamWConfig) -> Result<Self> {
        let zeros = |p: &Param| Tensor::zeros_like(p.var.as_tensor());
        let m = params
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<_>>()?;
        let v = params
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            cfg,
            params,
            m,
            v,
            step: 0,
        })
    }

    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr` from gradients by parameter name (a parameter without a
    /// gradient is an error: it would silently not train).
    pub fn step(&mut self, grads: &HashMap<String, Tensor>, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for (i, p) in self.params.iter().enumerate() {
            let g = grads
                .get(&p.name)
                .ok_or_else(|| TrainError::Numeric(format!("no gradient for {}", p.name)))?;
            let w = p.var.as_tensor();
            let decay = if p.decay {
                1.0 - lr * self.cfg.weight_decay
            } else {
                1.0
            };
            let coeffs = Coefficients {
                b1: b1 as f32,
                b2: b2 as f32,
                one_minus_b1: (1.0 - b1) as f32,
                one_minus_b2: (1.0 - b2) as f32,
                bc1: bc1 as f32,
                bc2: bc2 as f32,
                eps: self.cfg.eps as f32,
                lr: lr as f32,
                decay: decay as f32,
            };
            if let Some((w_new, m, v)) =
                with_cpu_f32(&[w, g, &self.m[i], &self.v[i]], |x| fused_update(x, coeffs))
            {
                let dev = w.device();
                p.var.set(&Tensor::from_vec(w_new, w.shape(), dev)?)?;
                self.m[i] = Tensor::from_vec(m, w.shape(), dev)?;
                self.v[i] = Tensor::from_vec(v, w.shape(), dev)?;
                continue;
            }
            // Elsewhere (CUDA): the same arithmetic as tensor ops.
            let m = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = ((&v / bc2)?.sqrt()? + self.cfg.eps)?;
            let update = ((&m / bc1)? / denom)?;
            let decayed = if p.decay && self.cfg.weight_decay > 0.0 {
                (w * decay)?
            } else {
                w.clone()
            };
            p.var.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The moments by name (`{param}.exp_avg`, `{param}.exp_avg_sq`, PyTorch's names) and the step.
    pub fn state(&self) -> (HashMap<String, Tensor>, u64) {
        let mut out = HashMap::new();
        for (i, p) in self.params.iter().enumerate() {
            out.insert(format!("{}.exp_avg", p.name), self.m[i].clone());
            out.insert(format!("{}.exp_avg_sq", p.name), self.v[i].clone());
        }
        (out, self.step)
    }

    /// Restores what [`AdamW::state`] returned.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, p) in self.params.iter().enumerate() {
            let get = |suffix: &str| -> Result<Tensor> {
                let t = state.get(&format!("{}.{suffix}", p.name)).ok_or_else(|| {
                    TrainError::input(format!("resume: optimizer state lacks {}.{suffix}", p.name))
                })?;
                if t.dims() != p.var.dims() {
                    return Err(TrainError::input(format!(
                        "resume: optimizer state {}.{suffix} has shape {:?}, the parameter {:?}",
                        p.name,
                        t.dims(),
                        p.var.dims()
                    )));
                }
                Ok(t.to_dtype(DType::F32)?.to_device(p.var.device())?)
            };
            self.m[i] = get("exp_avg")?;
            self.v[i] = get("exp_avg_sq")?;
        }
        self.step = step;
        Ok(())
    }
}

/// One step's scalars, in the f32 the update runs in (as PyTorch's CPU AdamW).
#[derive(Debug, Clone, Copy)]
struct Coefficients {
    b1: f32,
    b2: f32,
    one_minus_b1: f32,
    one_minus_b2: f32,
    bc1: f32,
    bc2: f32,
    eps: f32,
    lr: f32,
    /// `1 − lr · weight_decay`, or 1 for parameters without decay.
    decay: f32,
}

/// Runs `f` on the values of `ts` when all are contiguous f32 CPU tensors; `None` otherwise.
fn with_cpu_f32<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> R) -> Option<R> {
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut values = Vec::with_capacity(ts.len());
    for (storage, layout) in &guards {
        match (&**storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => values.push(&v[a..b]),
            _ => return None,
        }
    }
    Some(f(&values))
}

/// AdamW on `[w, g, m, v]` in one pass: what eleven tensor ops (and their allocations) do, as
/// `m' = β1·m + (1−β1)·g`, `v' = β2·v + (1−β2)·g²`, `w' = w·decay − lr·(m'/bc1)/(√(v'/bc2) + ε)`.
fn fused_update(x: &[&[f32]], c: Coefficients) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    const CHUNK: usize = 1 << 16;
    let (w, g, m, v) = (x[0], x[1], x[2], x[3]);
    let n = w.len();
    let (mut w_new, mut m_new, mut v_new) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    (
        w_new.par_chunks_mut(CHUNK),
        m_new.par_chunks_mut(CHUNK),
        v_new.par_chunks_mut(CHUNK),
        (w.par_chunks(CHUNK), g.par_chunks(CHUNK)),
        (m.par_chunks(CHUNK), v.par_chunks(CHUNK)),
    )
        .into_par_iter()
        .for_each(|(wo, mo, vo, (w, g), (m, v))| {
            for i in 0..wo.len() {
                let mi = m[i] * c.b1 + g[i] * c.one_minus_b1;
                let vi = v[i] * c.b2 + g[i] * g[i] * c.one_minus_b2;
                let denom = (vi / c.bc2).sqrt() + c.eps;
                wo[i] = w[i] * c.decay - (mi / c.bc1) / denom * c.lr;
                mo[i] = mi;
                vo[i] = vi;
            }
        });
    (w_new, m_new, v_new)
}

/// Adds the gradients `store` holds for `params` into `grads` (by name, in f32): gradient
/// accumulation over micro-batches, shared by the reward-model trainer and online DPO.
pub fn accumulate(
    grads: &mut HashMap<String, Tensor>,
    store: &candle_core::backprop::GradStore,
    params: &[Param],
) -> Result<()> {
    for p in params {
        if let Some(g) = store.get(p.var.as_tensor()) {
            let g = g.to_dtype(DType::F32)?;
            let sum = match grads.remove(&p.name) {
                Some(prev) => (prev + g)?,
                None => g,
            };
            grads.insert(p.name.clone(), sum);
        }
    }
    Ok(())
}

/// The learning rate at (0-based) `step` of `total`: linear warmup over `warmup` steps — the first
/// update already uses `peak / warmup`, not 0 as HF's schedule does — then linear decay to 0.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let rest = total.saturating_sub(warmup).max(1);
    peak * (total.saturating_sub(step) as f64 / rest as f64).clamp(0.0, 1.0)
}

/// Scales gradients in place so their global L2 norm is at most `max_norm` (0: no clipping);
/// returns the norm before clipping. A non-finite norm is an error.
pub fn clip_grad_norm(grads: &mut HashMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.values() {
        let fused = with_cpu_f32(&[g], |x| {
            x[0].par_chunks(1 << 16)
                .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
                .sum::<f64>()
        });
        sq += match fused {
            Some(s) => s,
            None => g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?,
        };
    }
    let norm = sq.sqrt();
    if !norm.is_finite() {
        return Err(TrainError::Numeric(format!("gradient norm is {norm}")));
    }
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.values_mut() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

impl TrainConfig {
    /// The AdamW optimiser over `params` with this config's betas, ε and weight decay.
    pub fn optimizer(&self, params: Vec<Param>) -> Result<AdamW> {
        AdamW::new(
            params,
            AdamWConfig {
                beta1: self.adam_beta1,
                beta2: self.adam_beta2,
                eps: self.adam_eps,
                weight_decay: self.weight_decay,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(lr_at(0, 100, 5, 1.0), 0.2);
        assert_eq!(lr_at(4, 100, 5, 1.0), 1.0);
        assert_eq!(lr_at(5, 100, 5, 1.0), 1.0);
        assert!((lr_at(52, 100, 5, 1.0) - 48.0 / 95.0).abs() < 1e-12);
        assert_eq!(lr_at(100, 100, 5, 1.0), 0.0);
        assert_eq!(lr_at(0, 10, 0, 1.0), 1.0);
    }

    /// Two steps against PyTorch's `torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8,
    /// weight_decay=0.01)` on w = [1, -2], grads [0.5, 0.1] then [-0.3, 0.2]. PyTorch 2.15 gives
    /// [0.8990000486, -2.0980000496] then [0.8789512515, -2.1924202442].
    #[test]
    fn matches_pytorch_adamw() {
        let dev = Device::Cpu;
        let var = Var::from_slice(&[1f32, -2.0], 2, &dev).unwrap();
        let p = Param {
            name: "w".into(),
            var: var.clone(),
            decay: true,
        };
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        };
        let mut opt = AdamW::new(vec![p], cfg).unwrap();
        let g = |a: f32, b: f32| {
            HashMap::from([("w".to_string(), Tensor::new(&[a, b], &dev).unwrap())])
        };
        opt.step(&g(0.5, 0.1), 0.1).unwrap();
        let w1 = var.as_tensor().to_vec1::<f32>().unwrap();
        // Step 1: m̂/√v̂ = sign(g) → w·(1 - lr·wd) - lr.
        assert!((w1[0] - (1.0 * 0.999 - 0.1)).abs() < 1e-6, "{w1:?}");
        assert!((w1[1] - (-2.0 * 0.999 - 0.1)).abs() < 1e-6, "{w1:?}");
        opt.step(&g(-0.3, 0.2), 0.1).unwrap();
        let w2 = var.as_tensor().to_vec1::<f32>().unwrap();
        // Step 2 by hand in f64.
        let expect = |w: f64, g1: f64, g2: f64| {
            let m = 0.9 * (0.1 * g1) + 0.1 * g2;
            let v = 0.999 * (0.001 * g1 * g1) + 0.001 * g2 * g2;
            let mh = m / (1.0 - 0.81);
            let vh = v / (1.0 - 0.999f64.powi(2));
            w * (1.0 - 0.001) - 0.1 * mh / (vh.sqrt() + 1e-8)
        };
        let e0 = expect(1.0 * 0.999 - 0.1, 0.5, -0.3);
        let e1 = expect(-2.0 * 0.999 - 0.1, 0.1, 0.2);
        assert!((w2[0] as f64 - e0).abs() < 1e-5, "{w2:?} vs {e0}");
        assert!((w2[1] as f64 - e1).abs() < 1e-5, "{w2:?} vs {e1}");
        assert!((w2[0] - 0.878_951_25).abs() < 1e-6 && (w2[1] + 2.192_420_2).abs() < 1e-6);
        // State round trip.
        let (state, step) = opt.state();
        assert_eq!(step, 2);
        assert_eq!(state.len(), 2);
    }

    /// The fused CPU update (f32) and the tensor-op update (taken for an f64 parameter, as on CUDA)
    /// follow each other over steps with and without decay.
    #[test]
    fn fused_and_tensor_updates_agree() {
        let dev = Device::Cpu;
        let init: Vec<f32> = (0..1000)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let run = |dtype: DType| -> Vec<f64> {
            let w = Tensor::new(init.as_slice(), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let params = ["a", "b"]
                .iter()
                .map(|name| Param {
                    name: name.to_string(),
                    var: Var::from_tensor(&w).unwrap(),
                    decay: *name == "a",
                })
                .collect::<Vec<_>>();
            let vars: Vec<Var> = params.iter().map(|p| p.var.clone()).collect();
            let cfg = AdamWConfig {
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.1,
            };
            let mut opt = AdamW::new(params, cfg).unwrap();
            for step in 0..3 {
                let g = (w.sin().unwrap() * (step as f64 + 1.0)).unwrap();
                let grads = HashMap::from([("a".to_string(), g.clone()), ("b".to_string(), g)]);
                opt.step(&grads, 0.01).unwrap();
            }
            vars.iter()
                .flat_map(|v| {
                    v.as_tensor()
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                })
                .collect()
        };
        let (fused, tensor) = (run(DType::F32), run(DType::F64));
        let worst = fused
            .iter()
            .zip(&tensor)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "fused and tensor AdamW differ by {worst}");
        assert!(fused
            .iter()
            .zip(&init)
            .any(|(a, &b)| (a - b as f64).abs() > 1e-3));
    }

    #[test]
    fn clipping_bounds_the_norm() {
        let dev = Device::Cpu;
        let mut g = HashMap::from([
            ("a".to_string(), Tensor::new(&[3f32, 0.0], &dev).unwrap()),
            ("b".to_string(), Tensor::new(&[4f32], &dev).unwrap()),
        ]);
        let n = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-9);
        let after: f32 = g
            .values()
            .map(|t| {
                t.sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .sum();
        assert!((after.sqrt() - 1.0).abs() < 1e-4);
    }
}
