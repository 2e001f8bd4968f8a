//! Reward-model training (`wildreward train`), and the training pieces online DPO reuses: which
//! tensors train (head, last-N layers, full, LoRA), AdamW with savable state, the learning-rate
//! schedule, gradient clipping.
