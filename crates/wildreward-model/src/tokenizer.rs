//! The tokenizer: HF's `tokenizer.json` when the checkpoint has one, else rebuilt from a GGUF file's
//! metadata (byte-level BPE: `tokenizer.ggml.tokens` / `merges`, control tokens as specials).

use crate::error::{ModelError, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// Loads `tokenizer.json`.
pub fn from_file(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn strings(md: &std::collections::HashMap<String, Value>, key: &str) -> Option<Vec<String>> {
    md.get(key)?
        .to_vec()
        .ok()?
        .iter()
        .map(|v| v.to_string().ok().cloned())
        .collect()
}

/// Rebuilds the tokenizer of a GGUF checkpoint whose `tokenizer.ggml.model` is `gpt2` (byte-level
/// BPE, as Llama 3, Qwen and SmolLM2 ship). The pre-tokenizer splits digits one by one and then
/// applies byte-level splitting without a prefix space (`smollm`, `qwen2`, `llama-bpe` presets all
/// behave this way on digits-first splitting; others are rejected rather than silently mis-tokenised).
pub fn from_gguf(path: &Path, content: &Content) -> Result<Tokenizer> {
    let bad = |message: String| ModelError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    let md = &content.metadata;
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("");
    if model != "gpt2" {
        return Err(bad(format!(
            "tokenizer.ggml.model is {model:?}; only byte-level BPE (\"gpt2\") can be rebuilt — pass a \
             tokenizer.json"
        )));
    }
    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("default");
    if !matches!(pre, "smollm" | "default" | "gpt-2" | "starcoder") {
        return Err(bad(format!(
            "GGUF pre-tokenizer {pre:?} is not rebuilt here (known: smollm, gpt-2, starcoder) — pass a \
             tokenizer.json"
        )));
    }
    let tokens = strings(md, "tokenizer.ggml.tokens")
        .ok_or_else(|| bad("no tokenizer.ggml.tokens".into()))?;
    let merges = strings(md, "tokenizer.ggml.merges")
        .ok_or_else(|| bad("no tokenizer.ggml.merges".into()))?;
    let types: Vec<i32> = md
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|v| v.iter().filter_map(|t| t.to_i32().ok()).collect())
        .unwrap_or_default();
    let mut vocab = Vocab::default();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert(tok.clone(), id as u32);
    }
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad(format!("malformed merge {m:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    let digits: PreTokenizerWrapper = Digits::new(pre == "smollm" || pre == "starcoder").into();
    let bytes: PreTokenizerWrapper = ByteLevel::new(false, true, true).into();
    tok.with_pre_tokenizer(Some(Sequence::new(vec![digits, bytes])));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    // Control tokens (type 3) are specials: matched whole in text, skipped when decoding.
    let specials: Vec<AddedToken> = types
        .iter()
        .enumerate()
        .filter(|(_, &t)| t == 3)
        .map(|(id, _)| AddedToken::from(tokens[id].clone(), true))
        .collect();
    tok.add_special_tokens(specials)
        .map_err(|e| bad(e.to_string()))?;
    Ok(tok)
}

/// Checks that every id the tokenizer can produce has a row in the embedding.
pub fn check_vocab(tok: &Tokenizer, vocab_size: usize, path: &Path) -> Result<()> {
    let n = tok.get_vocab_size(true);
    if n > vocab_size {
        return Err(ModelError::Tokenizer {
            path: path.to_path_buf(),
            message: format!(
                "the tokenizer has {n} tokens but the model's embedding has {vocab_size} rows: they do \
                 not belong together"
            ),
        });
    }
    Ok(())
}
