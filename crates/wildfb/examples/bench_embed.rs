//! Sentences/s of the two MiniLM embedders in one run, on the same real sentences: the reference
//! (candle_transformers' `BertModel`, padded batches: hindsight's embedder before the packed forward)
//! and [`SentenceEmbedder`] (the packed forward on wildreward-model's AVX-512 matmul). The sentences
//! are the distinct user messages of the shipped ShareGPT sample in file order, cut at `--max-tokens`
//! as hindsight cuts them. Each path embeds all of them `--repeats` times; the fastest pass counts.
//! Prints one JSON object; `--texts-out` and `--embeddings-out` write the sentences (a JSON array)
//! and the packed path's embeddings (little-endian f32, 384 per sentence) for
//! `scripts/bench/minilm_reference.py`, the PyTorch peer.
//!
//!     cargo run -p wildfb --example bench_embed -- [--sentences 4000] [--repeats 3]
//!         [--max-tokens 128] [--batch-size 32] [--texts-out F] [--embeddings-out F]
#![allow(clippy::unwrap_used)] // a benchmark: a failed unwrap is a failed run

use std::io::{BufRead, Write};
use std::time::Instant;
use wildfb::embed::reference::CandleEmbedder;
use wildfb::embed::{cosine, default_model_dir, SentenceEmbedder};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut sentences, mut repeats, mut max_tokens, mut batch_size) = (4000, 3, 128, 32);
    let (mut texts_out, mut embeddings_out) = (None, None);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--sentences" => sentences = value().parse().unwrap(),
            "--repeats" => repeats = value().parse().unwrap(),
            "--max-tokens" => max_tokens = value().parse().unwrap(),
            "--batch-size" => batch_size = value().parse().unwrap(),
            "--texts-out" => texts_out = Some(value()),
            "--embeddings-out" => embeddings_out = Some(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    let texts = user_messages(sentences);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let dir = default_model_dir();
    let packed = SentenceEmbedder::load(&dir, max_tokens, batch_size).unwrap();
    let candle = CandleEmbedder::load(&dir, max_tokens, batch_size).unwrap();

    let fastest = |run: &dyn Fn() -> Vec<Vec<f32>>| {
        let mut best = f64::INFINITY;
        let mut out = Vec::new();
        for _ in 0..repeats.max(1) {
            let start = Instant::now();
            out = run();
            best = best.min(start.elapsed().as_secs_f64());
        }
        (best, out)
    };
    let (packed_s, packed_vectors) = fastest(&|| packed.embed(&refs).unwrap());
    let (candle_s, candle_vectors) = fastest(&|| candle.embed(&refs).unwrap());

    let mut max_abs = 0f32;
    let mut min_cos = 1f32;
    for (p, c) in packed_vectors.iter().zip(&candle_vectors) {
        min_cos = min_cos.min(cosine(p, c));
        for (a, b) in p.iter().zip(c) {
            max_abs = max_abs.max((a - b).abs());
        }
    }
    let tokens = token_count(&dir, &refs, max_tokens);
    if let Some(path) = texts_out {
        std::fs::write(path, serde_json::to_string(&texts).unwrap()).unwrap();
    }
    if let Some(path) = embeddings_out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        for v in &packed_vectors {
            for x in v {
                f.write_all(&x.to_le_bytes()).unwrap();
            }
        }
    }
    let n = texts.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "sentences": texts.len(),
            "tokens": tokens,
            "max_tokens": max_tokens,
            "batch_size": batch_size,
            "repeats": repeats,
            "threads": rayon::current_num_threads(),
            "candle_seconds": candle_s,
            "candle_sentences_per_s": n / candle_s,
            "packed_seconds": packed_s,
            "packed_sentences_per_s": n / packed_s,
            "speedup": candle_s / packed_s,
            "max_abs_diff": max_abs,
            "min_cosine": min_cos,
        })
    );
}

/// The first `limit` distinct user messages of the shipped ShareGPT sample, in file order.
fn user_messages(limit: usize) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz");
    let file = std::fs::File::open(&path).unwrap();
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in reader.lines() {
        let record: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        for turn in record["conversations"].as_array().into_iter().flatten() {
            if turn["from"] == "human" {
                let text = turn["value"].as_str().unwrap_or_default().to_string();
                if !text.trim().is_empty() && seen.insert(text.clone()) {
                    out.push(text);
                    if out.len() == limit {
                        return out;
                    }
                }
            }
        }
    }
    out
}

/// Tokens the embedders read for `texts` (with `[CLS]` and `[SEP]`, cut at `max_tokens`).
fn token_count(dir: &std::path::Path, texts: &[&str], max_tokens: usize) -> usize {
    let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: max_tokens,
            ..Default::default()
        }))
        .unwrap();
    tokenizer
        .encode_batch(texts.to_vec(), true)
        .unwrap()
        .iter()
        .map(|e| e.get_ids().len())
        .sum()
}
