//! The one place that picks a decoder's inference forward: the packed CPU forward wherever it can
//! run the weights (f32 on the CPU, no adapter, no quantized copy), the candle forward elsewhere.

use crate::backbone::Backbone;
use crate::candle_forward::CandleForward;
use crate::forward::Forward;
use crate::packed::PackedCpu;
use candle_core::Result;
use std::sync::Arc;
use wildreward_kernels::Bf16Kernel;

/// The forward for `backbone` (sharing its weights). With `bf16`, the packed forward multiplies by
/// bf16 copies of the projections on that kernel; asking for it where the packed forward cannot run
/// is an error, not a silent f32 run.
pub fn select(backbone: &Backbone, bf16: Option<Bf16Kernel>) -> Result<Arc<dyn Forward>> {
    match (backbone.decoder_weights(), bf16) {
        (Some(weights), bf16) => Ok(Arc::new(PackedCpu::new(weights, bf16)?)),
        (None, None) => Ok(Arc::new(CandleForward::new(backbone.clone()))),
        (None, Some(_)) => candle_core::bail!(
            "bf16 CPU matmul needs f32 weights on the CPU, without LoRA adapters or quantized copies"
        ),
    }
}
