//! The fetched models are the real ones and readable from Rust: these tests need
//! `scripts/fetch-assets.sh` to have run and fail (saying so) when it has not.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use wildreward_model::assets::{asset, MINILM_DIR, SMOLLM2_GGUF};
use wildreward_model::gguf::GgufSummary;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn smollm2_gguf_has_the_documented_architecture() {
    let path = asset(&repo_root(), SMOLLM2_GGUF).unwrap_or_else(|e| panic!("{e}"));
    let s = GgufSummary::read(&path).unwrap();
    assert_eq!(s.architecture, "llama");
    assert_eq!(
        (s.block_count, s.embedding_length, s.feed_forward_length),
        (30, 576, 1536)
    );
    assert_eq!((s.head_count, s.head_count_kv), (9, 3));
    assert_eq!(s.context_length, 8192);
    assert_eq!(s.rope_freq_base, Some(100000.0));
    assert_eq!(s.rms_norm_eps, Some(1e-5));
    assert_eq!((s.vocab_size, s.merges), (49152, 48900));
    assert!(!s.has_output_weight, "SmolLM2 ties its embeddings");
    assert_eq!(s.tensor_types.get("Q4_1"), Some(&210));
    assert_eq!(s.tensor_types.get("Q8_0"), Some(&1));
}

#[test]
fn minilm_tokenizer_and_config_load() {
    let dir = asset(&repo_root(), MINILM_DIR).unwrap_or_else(|e| panic!("{e}"));
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let enc = tok.encode("hello world", true).unwrap();
    // [CLS] hello world [SEP], then the shipped tokenizer pads to 128 (which the embedder must undo).
    assert_eq!(&enc.get_ids()[..4], &[101, 7592, 2088, 102]);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["hidden_size"], 384);
    assert_eq!(cfg["num_hidden_layers"], 6);
}

#[test]
fn a_missing_asset_says_how_to_fetch_it() {
    let err = asset(&repo_root(), "no-such-model/x.gguf").unwrap_err();
    assert!(err.to_string().contains("scripts/fetch-assets.sh"), "{err}");
}

#[test]
fn a_truncated_gguf_is_a_clear_error() {
    let src = asset(&repo_root(), SMOLLM2_GGUF).unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&src).unwrap();
    let tmp = std::env::temp_dir().join(format!("truncated-{}.gguf", std::process::id()));
    std::fs::write(&tmp, &bytes[..1000]).unwrap();
    let err = GgufSummary::read(&tmp).unwrap_err().to_string();
    std::fs::remove_file(&tmp).unwrap();
    assert!(err.contains("not a readable GGUF file"), "{err}");
}
