//! The one rule for the backbone's dtype at inference, shared by serve, score, eval and online DPO,
//! so the same checkpoint on the same GPU gives the same rewards whichever command scores it.
//!
//! `auto` is **bf16** on CPUs with a bf16 product instruction (AVX512_BF16 or AMX-BF16: bf16 copies
//! of the projections, f32 norms, softmax and head; 1.5–4× PyTorch bf16 and mean |Δreward| vs f32
//! below 1e-3 in docs/benchmarks.md), f32 on other CPUs, and **bf16** on CUDA: the checkpoints
//! this project trains and the HF models it reads are bf16-trained, and bf16 keeps f32's exponent
//! range, so activations that overflow f16 (65,504) stay finite. f16 is used only when asked for.
//! The reward head and the rewards are f32 in every case ([`crate::ScoreHead`]).

use candle_core::{DType, Device};
use std::fmt;
use std::str::FromStr;
use wildreward_kernels::Bf16Kernel;

/// A requested inference precision (`--dtype auto|f32|bf16|f16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// bf16 on CUDA and on CPUs with a bf16 product instruction, f32 on other CPUs.
    #[default]
    Auto,
    /// f32 everywhere.
    F32,
    /// bf16: on CUDA, and on CPUs with AVX512_BF16 or AMX-BF16 (bf16 copies of the projections, f32
    /// elsewhere).
    Bf16,
    /// f16, only when asked (CUDA).
    F16,
}

impl Precision {
    /// The backbone dtype this precision means on `device`.
    pub fn resolve(self, device: &Device) -> DType {
        match self {
            Precision::Auto if device.is_cpu() => match Bf16Kernel::detect() {
                Ok(kernel) if kernel != Bf16Kernel::Portable => DType::BF16,
                _ => DType::F32,
            },
            Precision::Auto => DType::BF16,
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// Refuses a precision the device cannot score at full speed: on the CPU, f32, or bf16 where
    /// the CPU has a bf16 product instruction (AMX-BF16 or AVX512_BF16; `WILDREWARD_MATMUL=portable` asks for
    /// the slow portable kernel on purpose); never f16.
    pub fn check(self, device: &Device) -> Result<DType, String> {
        let dtype = self.resolve(device);
        if device.is_cpu() {
            match dtype {
                DType::F32 => {}
                DType::BF16 => {
                    Bf16Kernel::for_requested_bf16().map_err(|e| format!("--dtype {self}: {e}"))?;
                }
                _ => {
                    return Err(format!(
                        "--dtype {self}: the CPU scorer runs f32 or bf16 (f16 is for CUDA devices)"
                    ))
                }
            }
        }
        Ok(dtype)
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Precision::Auto),
            "f32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" => Ok(Precision::F16),
            _ => Err(format!("--dtype {s:?}: expected auto, f32, bf16 or f16")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_cpu_and_names_round_trip() {
        let hardware = Bf16Kernel::detect().is_ok_and(|k| k != Bf16Kernel::Portable);
        let auto = if hardware { DType::BF16 } else { DType::F32 };
        assert_eq!(Precision::Auto.resolve(&Device::Cpu), auto);
        assert_eq!(Precision::F16.resolve(&Device::Cpu), DType::F16);
        for p in [
            Precision::Auto,
            Precision::F32,
            Precision::Bf16,
            Precision::F16,
        ] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert_eq!("BFloat16".parse::<Precision>(), Ok(Precision::Bf16));
        let e = "f8".parse::<Precision>().unwrap_err();
        assert!(e.contains("--dtype") && e.contains("f8"), "{e}");
    }

    #[test]
    fn cpu_refuses_f16_and_runs_bf16_where_it_has_the_instruction() {
        assert_eq!(
            Precision::Auto.check(&Device::Cpu),
            Ok(Precision::Auto.resolve(&Device::Cpu))
        );
        assert_eq!(Precision::F32.check(&Device::Cpu), Ok(DType::F32));
        let e = Precision::F16.check(&Device::Cpu).unwrap_err();
        assert!(e.contains("--dtype f16") && e.contains("CPU"), "{e}");
        if std::env::var("WILDREWARD_MATMUL").is_err() {
            let bf16 = Precision::Bf16.check(&Device::Cpu);
            if Bf16Kernel::Avx512Bf16.available() {
                assert_eq!(bf16, Ok(DType::BF16));
            } else {
                eprintln!("this CPU lacks AVX512_BF16 (and AMX): bf16 on the CPU is refused here");
                assert!(bf16.unwrap_err().contains("AVX512_BF16"));
            }
        }
    }
}
