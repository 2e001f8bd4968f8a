//! The MiniLM sentence embedder on the real all-MiniLM-L6-v2 weights (fetched by
//! scripts/fetch-assets.sh): unit vectors, batching that changes nothing, similarities that put
//! paraphrases above the hindsight threshold and unrelated sentences below it, and the packed forward
//! against two independent implementations: candle_transformers' `BertModel` (the reference embedder)
//! on real ShareGPT user messages, and sentence-transformers' own vectors.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::BufRead;
use wildfb::embed::reference::CandleEmbedder;
use wildfb::embed::{cosine, default_model_dir, SentenceEmbedder};

#[test]
fn minilm_embeddings_behave_like_sentence_transformers() {
    let e = SentenceEmbedder::load(&default_model_dir(), 256, 8).unwrap();
    let texts = [
        "Thanks, that fixed the bug in my Python script!",
        "Great, the Python script works now, thank you.",
        "What is the capital of Australia?",
        "ok",
        "Can you explain how photosynthesis works in plants, step by step, with the chemical equation?",
    ];
    let all = e.embed(&texts).unwrap();
    for v in &all {
        assert_eq!(v.len(), 384);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    // Batched with longer sentences (so padded) or alone: the same vector.
    for (i, t) in texts.iter().enumerate() {
        let alone = &e.embed(&[t]).unwrap()[0];
        let sim = cosine(alone, &all[i]);
        assert!(sim > 0.9999, "{t}: {sim}");
    }
    let paraphrase = cosine(&all[0], &all[1]);
    let unrelated = cosine(&all[0], &all[2]);
    assert!(paraphrase > 0.6, "{paraphrase}");
    assert!(unrelated < 0.2, "{unrelated}");
    assert!(paraphrase > unrelated + 0.4);
}

#[test]
fn a_missing_model_directory_says_how_to_get_it() {
    let err = SentenceEmbedder::load(std::path::Path::new("/nonexistent/minilm"), 256, 8)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("/nonexistent/minilm") && err.contains("fetch-assets"),
        "{err}"
    );
}

/// Every `step`-th distinct user message of the shipped ShareGPT sample, up to `count` of them.
fn sharegpt_user_messages(step: usize, count: usize) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz");
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(
        std::fs::File::open(path).unwrap(),
    ));
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in reader.lines() {
        let record: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        for turn in record["conversations"].as_array().unwrap() {
            let text = turn["value"].as_str().unwrap();
            if turn["from"] == "human" && seen.insert(text.to_string()) && seen.len() % step == 0 {
                out.push(text.to_string());
                if out.len() == count {
                    return out;
                }
            }
        }
    }
    out
}

/// The largest elementwise difference and the smallest cosine between two sets of vectors.
fn differences(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let mut max_abs = 0f32;
    let mut min_cos = 1f32;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        min_cos = min_cos.min(cosine(x, y));
        for (p, q) in x.iter().zip(y) {
            max_abs = max_abs.max((p - q).abs());
        }
    }
    (max_abs, min_cos)
}

/// 160 real user messages (one word to pasted documents, so many cut at `max_tokens`), plus the
/// empty string and Chinese: the packed forward gives candle's `BertModel` vectors, at the pipeline's
/// 128 tokens and at 256, with small batches (many per call) and one large one.
#[test]
fn packed_forward_matches_candle_bert_on_real_sentences() {
    let mut texts = sharegpt_user_messages(37, 160);
    texts.push(String::new());
    texts.push("你好，请帮我把这段话翻译成英文。".into());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // The shipped tokenizer pads and cuts every sentence at 128: count the real lengths.
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(default_model_dir().join("tokenizer.json")).unwrap();
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).unwrap();
    let lens: Vec<usize> = tokenizer
        .encode_batch(refs.clone(), true)
        .unwrap()
        .iter()
        .map(|e| e.get_ids().len())
        .collect();
    let long = lens.iter().filter(|&&n| n > 256).count();
    let short = lens.iter().filter(|&&n| n < 16).count();
    assert!(long >= 10 && short >= 10, "{long} long, {short} short");
    for (max_tokens, batch_size) in [(128, 2), (256, 32)] {
        let packed = SentenceEmbedder::load(&default_model_dir(), max_tokens, batch_size).unwrap();
        let candle = CandleEmbedder::load(&default_model_dir(), max_tokens, batch_size).unwrap();
        let (max_abs, min_cos) =
            differences(&packed.embed(&refs).unwrap(), &candle.embed(&refs).unwrap());
        assert!(
            max_abs < 1e-4 && min_cos >= 0.99999,
            "max_tokens {max_tokens}: max |diff| {max_abs}, min cosine {min_cos}"
        );
    }
}

/// The vectors sentence-transformers 6.3 / torch 2.15 computes for five sentences (an empty one, a
/// Chinese one, one cut at 128 tokens), written by `scripts/bench/minilm_reference.py golden`.
#[test]
fn packed_forward_matches_sentence_transformers() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("data/minilm_sentence_transformers.json")).unwrap();
    let texts: Vec<&str> = golden["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let want: Vec<Vec<f32>> = golden["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let max_tokens = golden["max_tokens"].as_u64().unwrap() as usize;
    let packed = SentenceEmbedder::load(&default_model_dir(), max_tokens, 32).unwrap();
    let (max_abs, min_cos) = differences(&packed.embed(&texts).unwrap(), &want);
    assert!(
        max_abs < 1e-4 && min_cos >= 0.99999,
        "max |diff| {max_abs}, min cosine {min_cos}"
    );
}

/// A `max_tokens` past the model's 512 positions is refused at load, naming the limit.
#[test]
fn max_tokens_past_the_position_table_is_refused() {
    let err = SentenceEmbedder::load(&default_model_dir(), 600, 8)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("600") && err.contains("512"), "{err}");
}
