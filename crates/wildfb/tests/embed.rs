//! The MiniLM sentence embedder on the real all-MiniLM-L6-v2 weights (fetched by
//! scripts/fetch-assets.sh): unit vectors, padding that changes nothing, and similarities that put
//! paraphrases above the hindsight threshold and unrelated sentences below it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

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
