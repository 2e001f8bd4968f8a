//! The model core on the real SmolLM2-135M-Instruct weights (fetched by scripts/fetch-assets.sh).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor, Var};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wildreward_model::assets::{asset, SMOLLM2_GGUF};
use wildreward_model::weights::{self, Checkpoint};
use wildreward_model::{
    checkpoint, loss, HeadKind, Kernels, KvCache, LoadOptions, RewardModel, ScoreHead, Scorer,
    ScorerOptions,
};
use wildreward_types::{build_text, EmptyHistory, Message};

fn gguf() -> PathBuf {
    asset(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        SMOLLM2_GGUF,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The dequantised checkpoint, read once for all tests of this file.
fn ckpt() -> Checkpoint {
    static CKPT: OnceLock<Checkpoint> = OnceLock::new();
    CKPT.get_or_init(|| weights::load(&gguf(), &Device::Cpu, DType::F32).unwrap())
        .clone()
}

fn model(kernels: Kernels) -> RewardModel {
    let opts = LoadOptions {
        kernels,
        ..LoadOptions::default()
    };
    RewardModel::from_checkpoint(ckpt(), &opts).unwrap()
}

fn chatml(question: &str) -> String {
    format!(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )
}

#[test]
fn greedy_decoding_answers_paris_and_cache_matches_full_sequence() {
    let m = model(Kernels::Fused);
    let tok = m.tokenizer();
    let prompt = tok
        .encode(chatml("What is the capital of France?"), true)
        .unwrap()
        .get_ids()
        .to_vec();
    let bb = m.backbone();
    // Incremental decoding, keeping every step's logits.
    let mut cache = KvCache::new();
    let mut step_logits: Vec<Vec<f32>> = vec![];
    let mut generated: Vec<u32> = vec![];
    let mut input = prompt.clone();
    for _ in 0..12 {
        let ids = Tensor::new(input.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let hidden = bb.forward_cached(&ids, &mut cache).unwrap();
        let last = hidden.narrow(1, input.len() - 1, 1).unwrap();
        let logits = bb
            .lm_logits(&last)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let next = wildreward_model::generate::argmax(&logits);
        step_logits.push(logits);
        if next == 2 {
            break;
        }
        generated.push(next);
        input = vec![next];
    }
    let text = tok.decode(&generated, true).unwrap();
    assert!(
        text.starts_with("The capital of France is Paris."),
        "{text:?}"
    );

    // The whole sequence in one pass gives the same logits at every generated position.
    let all: Vec<u32> = prompt.iter().chain(&generated).copied().collect();
    let ids = Tensor::new(all.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let hidden = bb.forward(&ids, &[all.len()]).unwrap();
    let full = bb.lm_logits(&hidden).unwrap().squeeze(0).unwrap();
    let mut worst = 0f32;
    for (step, logits) in step_logits.iter().enumerate() {
        let pos = prompt.len() - 1 + step;
        let row = full.get(pos).unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in row.iter().zip(logits) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst <= 1e-4, "cache vs full max |Δlogit| = {worst}");

    // The library's sampler, greedy, gives the same answer.
    let params = wildreward_model::generate::SamplingParams {
        max_new_tokens: 12,
        stop_tokens: vec![2],
        ..Default::default()
    };
    let candle = wildreward_model::candle_forward::CandleForward::new(bb.clone());
    let out = wildreward_model::generate::generate(&candle, &prompt, 2, &params).unwrap();
    assert_eq!(out[0].tokens, generated);
    assert_eq!(
        out[1].tokens, generated,
        "greedy samples of one prompt agree"
    );
}

fn texts() -> Vec<String> {
    let long_history: Vec<Message> = (0..12)
        .flat_map(|i| {
            [
                Message::user(format!("Question number {i}: how do rivers form deltas?")),
                Message::assistant("Sediment settles where the current slows at the river mouth."),
            ]
        })
        .collect();
    vec![
        build_text(&[], "What is 2+2?", "4", EmptyHistory::Training),
        build_text(
            &long_history,
            "And lakes?",
            "Lakes fill basins carved by glaciers, faults or rivers.",
            EmptyHistory::Training,
        ),
        build_text(
            &[],
            "写一首关于秋天的诗。",
            "秋风起，落叶黄。",
            EmptyHistory::Inference,
        ),
        "short".to_string(),
    ]
}

/// Right-pads token rows into one batch for `RewardModel::logits`.
fn padded(rows: &[Vec<u32>], pad: u32) -> (Tensor, Vec<usize>) {
    let longest = rows.iter().map(Vec::len).max().unwrap();
    let flat: Vec<u32> = rows
        .iter()
        .flat_map(|r| {
            r.iter()
                .copied()
                .chain(std::iter::repeat_n(pad, longest - r.len()))
        })
        .collect();
    let ids = Tensor::from_vec(flat, (rows.len(), longest), &Device::Cpu).unwrap();
    (ids, rows.iter().map(Vec::len).collect())
}

#[test]
fn packed_scoring_padding_invariance_and_fused_kernels_agree_with_differentiable_ones() {
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let fused_model = model(Kernels::Fused);
    let scorer = Scorer::new(fused_model.clone(), ScorerOptions::default());
    assert!(
        scorer.packs_rows(),
        "f32 on the CPU runs the packed forward"
    );
    let batched = scorer.score(&refs).unwrap();
    // The same rows right-padded into one batch through the differentiable (training) kernels and
    // the fused ones.
    let rows: Vec<Vec<u32>> = scorer
        .tokenize(&refs)
        .unwrap()
        .into_iter()
        .map(|(ids, _)| ids)
        .collect();
    let (ids, lengths) = padded(&rows, fused_model.pad_id());
    let diff: Vec<Vec<f32>> = model(Kernels::Differentiable)
        .logits(&ids, &lengths)
        .unwrap()
        .to_vec2()
        .unwrap();
    let fused: Vec<Vec<f32>> = fused_model
        .logits(&ids, &lengths)
        .unwrap()
        .to_vec2()
        .unwrap();
    for (i, t) in refs.iter().enumerate() {
        let alone = scorer.score(&[t]).unwrap().remove(0);
        assert!(
            (alone.reward - batched[i].reward).abs() <= 1e-5,
            "text {i}: alone {} vs batched {}",
            alone.reward,
            batched[i].reward
        );
        for (path, want) in [("differentiable", &diff[i]), ("fused", &fused[i])] {
            for (a, b) in batched[i].logits.iter().zip(want) {
                assert!(
                    (a - b).abs() <= 2e-5,
                    "text {i}: packed {:?} vs padded {path} {want:?}",
                    batched[i].logits
                );
            }
        }
        assert!(batched[i].reward > 1.0 && batched[i].reward < 4.0);
        assert_eq!(batched[i].probs.len(), 4);
    }
    // A row inside a batch of two with a much longer text, scored in one forward pass.
    let one = ScorerOptions {
        max_batch_size: 2,
        max_batch_tokens: 100_000,
        ..ScorerOptions::default()
    };
    let pair = Scorer::new(model(Kernels::Fused), one)
        .score(&[refs[0], refs[1]])
        .unwrap();
    assert!((pair[0].reward - batched[0].reward).abs() <= 1e-5);
}

/// Rows opening with the same tokens (the template header; the answers to one prompt share the prompt
/// too) run that prefix once: each row's state matches the row run alone and the padded
/// differentiable path, including a row that is the prefix plus one token and a row that is another
/// row's prefix.
#[test]
fn bf16_projections_stay_close_to_f32_on_smollm2() {
    let kernel = wildreward_kernels::Bf16Kernel::best();
    if kernel == wildreward_kernels::Bf16Kernel::Portable {
        eprintln!(
            "SKIPPED: this CPU lacks AVX512_BF16 and AMX-BF16; SmolLM2 in bf16 is NOT tested here"
        );
        return;
    }
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let f32_scores = Scorer::new(model(Kernels::Fused), ScorerOptions::default())
        .score(&refs)
        .unwrap();
    let mut m = model(Kernels::Fused);
    m.use_bf16_matmul(kernel).unwrap();
    assert_eq!(m.forward().matmul_name(), kernel.name());
    let bf16 = Scorer::new(m, ScorerOptions::default());
    assert!(bf16.packs_rows());
    let bf16_scores = bf16.score(&refs).unwrap();
    let mut total = 0f32;
    for (a, b) in f32_scores.iter().zip(&bf16_scores) {
        let d = (a.reward - b.reward).abs();
        eprintln!("reward f32 {} bf16 {} |diff| {d:.2e}", a.reward, b.reward);
        assert!(d < 1e-2, "{} vs {}", a.reward, b.reward);
        total += d;
    }
    let mean = total / f32_scores.len() as f32;
    assert!(mean > 0.0, "bf16 really ran");
    assert!(mean <= 4e-3, "mean |diff| {mean}");
    // Greedy decoding through bf16 projections (and a bf16 LM head) still answers.
    use wildreward_model::generate::argmax;
    let mut m = model(Kernels::Fused);
    m.use_bf16_matmul(kernel).unwrap();
    let prompt = m
        .tokenizer()
        .encode(chatml("What is the capital of France?"), true)
        .unwrap()
        .get_ids()
        .to_vec();
    let (mut dec, first) = m.forward().prefill(&prompt, 1, 8).unwrap();
    let mut out = vec![argmax(&first)];
    for _ in 0..6 {
        let logits = dec.step(&[*out.last().unwrap()]).unwrap();
        out.push(argmax(&logits));
    }
    let text = m.tokenizer().decode(&out, true).unwrap();
    assert!(text.contains("Paris"), "{text}");
}

#[test]
fn a_shared_prefix_runs_once_with_the_numbers_of_unshared_rows() {
    let m = model(Kernels::Fused);
    let texts: Vec<String> = [
        ("Name a colour.", "Blue."),
        ("Name a colour.", "Red, like a ripe tomato in late summer."),
        ("Name a colour.", "Green"),
        ("Say something about the sea.", "It is salty."),
    ]
    .iter()
    .map(|(q, a)| build_text(&[], q, a, EmptyHistory::Training))
    .collect();
    let tok = |t: &str| m.tokenizer().encode(t, false).unwrap().get_ids().to_vec();
    let mut rows: Vec<Vec<u32>> = texts.iter().map(|t| tok(t)).collect();
    let header = rows[0]
        .iter()
        .zip(&rows[3])
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        header > 100,
        "the template header is shared: {header} tokens"
    );
    rows.push(rows[0][..header + 1].to_vec());
    rows.push(rows[1][..rows[1].len() - 3].to_vec());
    let packed = m.forward();
    assert_eq!(packed.name(), "packed-cpu");
    let check = |rows: &[Vec<u32>]| {
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let shared: Vec<Vec<f32>> = packed.last_hidden(&refs).unwrap().to_vec2().unwrap();
        let (ids, lengths) = padded(rows, m.pad_id());
        let hidden = model(Kernels::Differentiable)
            .backbone()
            .forward(&ids, &lengths)
            .unwrap();
        let diff: Vec<Vec<f32>> = wildreward_model::Backbone::last_token(&hidden, &lengths)
            .unwrap()
            .to_vec2()
            .unwrap();
        for (i, row) in refs.iter().enumerate() {
            let alone: Vec<Vec<f32>> = packed.last_hidden(&[row]).unwrap().to_vec2().unwrap();
            for (what, want) in [("alone", &alone[0]), ("padded", &diff[i])] {
                let worst = shared[i]
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst <= 1e-4, "row {i}: max |shared − {what}| = {worst}");
            }
        }
    };
    // The header shared by all rows; then the header and the query, shared by the first three.
    check(&rows);
    check(&rows[..3]);
}

#[test]
fn every_trainable_tensor_receives_a_nonzero_gradient() {
    let mut ck = ckpt();
    let head =
        wildreward_model::ScoreHead::random(HeadKind::Ordinal, 3, 576, 7, &Device::Cpu).unwrap();
    for (name, t) in head.tensors() {
        ck.tensors.insert(name, t);
    }
    let mut vars = vec![];
    for (name, t) in ck.tensors.iter_mut() {
        let v = Var::from_tensor(t).unwrap();
        *t = v.as_tensor().clone();
        vars.push((name.clone(), v));
    }
    let mut cfg = ck.config.clone();
    cfg.num_labels = Some(3);
    cfg.architectures = vec!["LlamaForSequenceClassification".into()];
    ck.config = cfg;
    let m = RewardModel::from_checkpoint(ck, &LoadOptions::default()).unwrap();
    assert!(
        !m.head_was_initialised(),
        "the head comes from the (trainable) tensors"
    );
    let tok = m.tokenizer();
    let rows: Vec<Vec<u32>> = [
        "The user said thanks, great answer.",
        "That is wrong, try again",
    ]
    .iter()
    .map(|t| tok.encode(*t, true).unwrap().get_ids().to_vec())
    .collect();
    let (ids, lengths) = padded(&rows, 2);
    let logits = m.logits(&ids, &lengths).unwrap();
    let l = loss::ordinal_bce(&logits, &[4, 1]).unwrap();
    let grads = l.backward().unwrap();
    let mut missing = vec![];
    for (name, v) in &vars {
        let g = grads.get(v.as_tensor());
        let norm = g.map(|g| {
            g.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        });
        if !norm.is_some_and(|n| n > 0.0 && n.is_finite()) {
            missing.push(format!("{name}: {norm:?}"));
        }
    }
    assert_eq!(
        vars.len(),
        30 * 9 + 2 + 1,
        "every backbone tensor and the head"
    );
    assert!(missing.is_empty(), "tensors without gradient: {missing:?}");
}

#[test]
fn convert_round_trip_gives_identical_rewards() {
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let from_gguf = RewardModel::from_checkpoint(ckpt(), &LoadOptions::inference()).unwrap();
    assert!(from_gguf.head_was_initialised());
    let want = Scorer::new(from_gguf.clone(), ScorerOptions::default())
        .score(&refs)
        .unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("converted-smollm2");
    checkpoint::save(&from_gguf, &dir).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "LlamaForSequenceClassification");
    assert_eq!(cfg["num_labels"], 3);
    assert_eq!(cfg["problem_type"], "multi_label_classification");
    assert_eq!(cfg["pad_token_id"], 2);
    assert_eq!(
        cfg["wildreward_head_initialised"], true,
        "the random head is marked"
    );
    let loaded = RewardModel::load(&dir, &LoadOptions::inference()).unwrap();
    assert!(
        loaded.head_was_initialised(),
        "the saved random head is still reported as untrained"
    );
    let got = Scorer::new(loaded, ScorerOptions::default())
        .score(&refs)
        .unwrap();
    for (a, b) in want.iter().zip(&got) {
        assert_eq!(a.logits, b.logits);
    }
    // A head set in its place (a trained one) clears the mark.
    let mut trained = RewardModel::load(&dir, &LoadOptions::inference()).unwrap();
    trained.set_head(trained.head().clone());
    assert!(!trained.head_was_initialised());
    let cfg = checkpoint::classification_config(&trained).unwrap();
    assert!(cfg.get("wildreward_head_initialised").is_none(), "{cfg}");
}

#[test]
fn a_coral_head_is_not_saved_because_transformers_cannot_load_it() {
    let mut model = RewardModel::from_checkpoint(ckpt(), &LoadOptions::inference()).unwrap();
    let hidden = model.config().hidden_size;
    let coral = ScoreHead::random(HeadKind::Coral, 3, hidden, 0, &Device::Cpu).unwrap();
    model.set_head(coral);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coral-not-saved");
    let e = checkpoint::save(&model, &dir).unwrap_err().to_string();
    assert!(e.contains("CORAL") && e.contains("transformers"), "{e}");
    assert!(!dir.exists(), "nothing is left behind");
    assert!(!dir.with_file_name("coral-not-saved.partial").exists());
}

fn write_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    let m = RewardModel::from_checkpoint(ckpt(), &LoadOptions::inference()).unwrap();
    let good = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad-ckpt-source");
    checkpoint::save(&m, &good).unwrap();
    let copy = |to: &Path, files: &[&str]| {
        for f in files {
            std::fs::copy(good.join(f), to.join(f)).unwrap();
        }
    };
    let err = |dir: &Path| {
        RewardModel::load(dir, &LoadOptions::inference())
            .unwrap_err()
            .to_string()
    };

    let missing = write_dir("bad-ckpt-missing-weights");
    copy(&missing, &["config.json", "tokenizer.json"]);
    let e = err(&missing);
    assert!(
        e.contains("model.safetensors") && e.contains("missing"),
        "{e}"
    );

    let truncated = write_dir("bad-ckpt-truncated");
    copy(&truncated, &["config.json", "tokenizer.json"]);
    let bytes = std::fs::read(good.join("model.safetensors")).unwrap();
    std::fs::write(
        truncated.join("model.safetensors"),
        &bytes[..bytes.len() / 3],
    )
    .unwrap();
    let e = err(&truncated);
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );

    let unsupported = write_dir("bad-ckpt-arch");
    copy(&unsupported, &["tokenizer.json", "model.safetensors"]);
    let cfg = std::fs::read_to_string(good.join("config.json"))
        .unwrap()
        .replace("\"llama\"", "\"gpt_neox\"")
        .replace(
            "LlamaForSequenceClassification",
            "GPTNeoXForSequenceClassification",
        );
    std::fs::write(unsupported.join("config.json"), cfg).unwrap();
    let e = err(&unsupported);
    assert!(
        e.contains("config.json") && e.contains("unsupported architecture"),
        "{e}"
    );

    let mismatch = write_dir("bad-ckpt-vocab");
    copy(&mismatch, &["tokenizer.json", "model.safetensors"]);
    let cfg = std::fs::read_to_string(good.join("config.json"))
        .unwrap()
        .replace("\"vocab_size\": 49152", "\"vocab_size\": 32000");
    std::fs::write(mismatch.join("config.json"), cfg).unwrap();
    let e = err(&mismatch);
    assert!(
        e.contains("tokenizer.json") && e.contains("do not belong together"),
        "{e}"
    );

    let e = err(&good.join("nope"));
    assert!(e.contains("nope"), "{e}");
}

/// Generation's packed decoder gives the logits of candle's KV-cache path, row by row, and greedy
/// `generate` (which runs on it) still answers Paris.
#[test]
fn packed_decoding_matches_the_candle_kv_cache_path() {
    use wildreward_model::generate::{argmax, generate, SamplingParams};
    let m = model(Kernels::Fused);
    assert_eq!(m.forward().name(), "packed-cpu");
    let bb = m.backbone();
    let prompt = m
        .tokenizer()
        .encode(chatml("What is the capital of France?"), true)
        .unwrap()
        .get_ids()
        .to_vec();
    let close = |a: &[f32], b: &[f32], what: &str| {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{what}: max |packed − candle| = {worst}");
    };
    let (mut dec, first) = m.forward().prefill(&prompt, 2, 8).unwrap();
    let mut cache = KvCache::new();
    let ids = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let h = bb.forward_cached(&ids, &mut cache).unwrap();
    let want: Vec<f32> = bb
        .lm_logits(&h.narrow(1, prompt.len() - 1, 1).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    close(&first, &want, "prompt");
    cache.expand_batch(2).unwrap();
    // Row 0 decodes greedily, row 1 is fed other tokens: the rows must not see each other.
    let mut next = [argmax(&first), 1000u32];
    for step in 0..6 {
        let got = dec.step(&next).unwrap();
        let ids = Tensor::new(&[[next[0]], [next[1]]], &Device::Cpu).unwrap();
        let h = bb.forward_cached(&ids, &mut cache).unwrap();
        let want: Vec<Vec<f32>> = bb
            .lm_logits(&h)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .to_vec2()
            .unwrap();
        let vocab = want[0].len();
        close(&got[..vocab], &want[0], &format!("step {step} row 0"));
        close(&got[vocab..], &want[1], &format!("step {step} row 1"));
        next = [argmax(&got[..vocab]), 2000 + step as u32];
    }
    let params = SamplingParams {
        max_new_tokens: 12,
        stop_tokens: m.config().eos_ids(),
        ..SamplingParams::default()
    };
    let answer = &generate(m.forward(), &prompt, 1, &params).unwrap()[0];
    let text = m.tokenizer().decode(&answer.tokens, true).unwrap();
    assert!(text.starts_with("The capital of France is Paris"), "{text}");
}

#[test]
fn raw_texts_keep_the_header_and_their_end_and_tiny_budgets_fall_back_to_that() {
    use wildreward_model::encode::{cut_text_ids, ids_of, TurnEncoder};
    use wildreward_types::template::HEADER;
    let ckpt = ckpt();
    let tok = &ckpt.tokenizer;
    let query = "why? ".repeat(400);
    let text = build_text(&[], &query, "Because.", EmptyHistory::Training);
    let full = ids_of(tok, &text).unwrap();
    let header = ids_of(tok, HEADER).unwrap();
    let (ids, cut) = cut_text_ids(tok, &text, 300).unwrap();
    assert!(cut && ids.len() == 300);
    let stable = header.len() - 1;
    assert_eq!(ids[..stable], header[..stable]);
    let tail = 300 - (header.len() + 1);
    assert_eq!(ids[300 - tail..], full[full.len() - tail..]);
    // Under the header's own length only the leading special tokens (BOS, if the tokenizer adds
    // one) and the end are kept.
    let specials = tok
        .encode(text.as_str(), true)
        .unwrap()
        .get_special_tokens_mask()
        .iter()
        .take_while(|&&m| m == 1)
        .count();
    let want: Vec<u32> = full[..specials]
        .iter()
        .chain(&full[full.len() - (40 - specials)..])
        .copied()
        .collect();
    let (ids, _) = cut_text_ids(tok, &text, 40).unwrap();
    assert_eq!(ids, want);
    // A turn budget below the template: the encoder cuts the whole text that way, never errs.
    let (ids, cut) = TurnEncoder::new(tok, 40, EmptyHistory::Training)
        .encode(&[], &query, "Because.")
        .unwrap();
    assert!(cut);
    assert_eq!(ids, want);
}
