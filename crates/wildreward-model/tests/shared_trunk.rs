//! Models that share their first blocks score together ([`SharedScorers`]) exactly as each scores
//! alone, on SmolLM2: a copy with its last two blocks and its head changed (what last-2-layer
//! training makes) and a copy with only its head changed (head-only training), on the packed
//! forward (f32 and, where the CPU has it, bf16) and the candle forward; and the trunk / resume
//! split of one model gives its plain last hidden states, with and without a shared prefix.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor};
use std::path::Path;
use wildreward_model::assets::{asset, SMOLLM2_GGUF};
use wildreward_model::shared::shared_blocks;
use wildreward_model::weights::Checkpoint;
use wildreward_model::{LoadOptions, RewardModel, ScoreHead, Scorer, ScorerOptions, SharedScorers};
use wildreward_types::template::EmptyHistory;

fn base(opts: &LoadOptions) -> RewardModel {
    let path = asset(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        SMOLLM2_GGUF,
    )
    .unwrap();
    let mut model = RewardModel::load(&path, opts).unwrap();
    model.set_head(
        ScoreHead::random(
            wildreward_model::HeadKind::Ordinal,
            3,
            model.config().hidden_size,
            1,
            &Device::Cpu,
        )
        .unwrap(),
    );
    model
}

/// `model` with every tensor of blocks `from..` scaled by 1.01 (plus a small offset) and a head
/// from `head_seed`.
fn variant(model: &RewardModel, from: usize, head_seed: u64, opts: &LoadOptions) -> RewardModel {
    let mut tensors = model.tensors().clone();
    for (name, t) in tensors.iter_mut() {
        let block = name
            .strip_prefix("model.layers.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|i| i.parse::<usize>().ok());
        if block.is_some_and(|b| b >= from) {
            *t = ((&*t * 1.01).unwrap() + 1e-3).unwrap();
        }
    }
    tensors.remove("score.weight");
    let ckpt = Checkpoint {
        config: model.config().clone(),
        tensors,
        tokenizer: model.tokenizer().clone(),
        chat_template: None,
        source: model.source().to_path_buf(),
    };
    let mut m = RewardModel::from_checkpoint(ckpt, opts).unwrap();
    m.set_head(
        ScoreHead::random(
            wildreward_model::HeadKind::Ordinal,
            3,
            model.config().hidden_size,
            head_seed,
            &Device::Cpu,
        )
        .unwrap(),
    );
    m
}

const TURNS: [(&str, &str); 5] = [
    (
        "What is the capital of France?",
        "The capital of France is Paris.",
    ),
    (
        "Write a haiku about rain.",
        "Soft rain on the roof\nthe garden drinks in silence\nmorning smells of earth",
    ),
    ("2+2?", "4"),
    (
        "Explain recursion briefly.",
        "A function that calls itself on a smaller problem until a base case stops it.",
    ),
    ("Thanks!", "You're welcome — happy to help."),
];

fn check(opts: &LoadOptions, what: &str) {
    let a = base(opts);
    let b = variant(&a, 28, 2, opts);
    let c = variant(&a, 30, 3, opts);
    let blocks = a.config().num_hidden_layers;
    assert_eq!(shared_blocks(&a, &b).unwrap(), 28, "{what}");
    assert_eq!(shared_blocks(&a, &c).unwrap(), blocks, "{what}");
    assert_eq!(shared_blocks(&a, &a).unwrap(), blocks, "{what}");
    let so = ScorerOptions {
        max_length: 512,
        // Small batches: several trunks per call, and both the shared-prefix and plain paths.
        max_batch_size: 2,
        ..ScorerOptions::default()
    };
    let scorers: Vec<Scorer> = [a, b, c]
        .into_iter()
        .map(|m| Scorer::new(m, so.clone()))
        .collect();
    let group = SharedScorers::new(scorers.iter().collect()).unwrap();
    assert_eq!(group.depth(), 28, "{what}");
    let empty: &[wildreward_types::chat::Message] = &[];
    let turns: Vec<_> = TURNS.iter().map(|(q, r)| (empty, *q, *r)).collect();
    let together = group.score_turns(&turns, EmptyHistory::Training).unwrap();
    for (m, scorer) in scorers.iter().enumerate() {
        let alone = scorer.score_turns(&turns, EmptyHistory::Training).unwrap();
        for (t, (x, y)) in together[m].iter().zip(&alone).enumerate() {
            assert_eq!(x.tokens, y.tokens);
            for (p, q) in x.logits.iter().zip(&y.logits) {
                assert!(
                    (p - q).abs() < 1e-4,
                    "{what}: model {m} turn {t}: {p} vs {q}"
                );
            }
        }
    }
    // The models differ where they should: the changed blocks move the rewards.
    let moved = together[0]
        .iter()
        .zip(&together[1])
        .any(|(x, y)| (x.reward - y.reward).abs() > 1e-3);
    assert!(
        moved,
        "{what}: the variant with changed blocks scores like the base"
    );
}

#[test]
fn shared_scoring_matches_each_model_alone_on_the_packed_forward() {
    check(&LoadOptions::inference(), "packed f32");
}

#[test]
fn shared_scoring_matches_each_model_alone_in_bf16() {
    if wildreward_kernels::Bf16Kernel::detect().is_err() {
        eprintln!("SKIPPED (bf16 part): this CPU has neither AVX512_BF16 nor AMX");
        return;
    }
    let opts = LoadOptions {
        dtype: Some(DType::BF16),
        ..LoadOptions::inference()
    };
    check(&opts, "packed bf16");
}

#[test]
fn shared_scoring_matches_each_model_alone_on_the_candle_forward() {
    // f16 weights run on the candle forward (the packed one reads f32 or bf16 packs).
    let opts = LoadOptions {
        dtype: Some(DType::F16),
        ..LoadOptions::inference()
    };
    let a = base(&opts);
    assert_eq!(a.forward().name(), "candle");
    check(&opts, "candle");
}

#[test]
fn a_trunk_resumed_gives_the_plain_last_hidden_states() {
    let model = base(&LoadOptions::inference());
    let tok = model.tokenizer();
    let enc = |s: &str| tok.encode(s, true).unwrap().get_ids().to_vec();
    // Rows sharing a long prefix (run once) and rows sharing none.
    let shared =
        "<|im_start|>system\nYou are a helpful assistant judged by a reward model.<|im_end|>\n";
    let with_prefix: Vec<Vec<u32>> = ["Hello there.", "A longer second row, with more words."]
        .iter()
        .map(|s| enc(&format!("{shared}{s}")))
        .collect();
    let without: Vec<Vec<u32>> = ["first", "and a second, different row"]
        .iter()
        .map(|s| enc(s))
        .collect();
    let forward = model.forward();
    for rows in [with_prefix, without] {
        let rows: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let plain: Vec<Vec<f32>> = forward.last_hidden(&rows).unwrap().to_vec2().unwrap();
        for depth in [0, 1, 17, 29, 30] {
            let trunk = forward.trunk(&rows, depth).unwrap();
            assert_eq!(trunk.layer, depth);
            for (i, r) in rows.iter().enumerate() {
                assert_eq!(trunk.row_len(i), r.len());
                assert_eq!(trunk.row(i).len(), r.len() * trunk.hidden);
            }
            let resumed: Vec<Vec<f32>> =
                forward.last_hidden_from(&trunk).unwrap().to_vec2().unwrap();
            for (p, q) in resumed.iter().flatten().zip(plain.iter().flatten()) {
                assert!((p - q).abs() < 1e-4, "depth {depth}: {p} vs {q}");
            }
        }
        // The trunk's states are the candle backbone's residual stream at that depth.
        let trunk = forward.trunk(&rows, 12).unwrap();
        let bb = model.backbone();
        for (i, r) in rows.iter().enumerate() {
            let ids = Tensor::from_slice(r, (1, r.len()), &Device::Cpu).unwrap();
            let x: Vec<f32> = bb
                .hidden_after(&ids, &[r.len()], 12)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (p, q) in trunk.row(i).iter().zip(&x) {
                assert!(
                    (p - q).abs() < 1e-3 * (1.0 + q.abs()),
                    "row {i}: {p} vs {q}"
                );
            }
        }
    }
}
