//! `wildreward-eval` end to end with the real SmolLM2 backbone (GGUF from assets/, seeded random
//! head) on small slices of every shipped benchmark, a labelled WildFB file and a pairs file; the
//! endpoint path against a real axum server scoring with the same `Scorer`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use wildreward_client::test_server::{Fault, FaultRule, TestServer};
use wildreward_eval::bench;
use wildreward_eval::scoring::{ScoreSource, ScorerSpec};
use wildreward_eval::{run, ClientOptions, EvalOptions, Report};
use wildreward_model::assets::{asset, SMOLLM2_GGUF};
use wildreward_model::{LoadOptions, RewardModel, Scorer, ScorerOptions};
use wildreward_types::{build_text, EmptyHistory, Message, Role, WildFbRecord};

const MAX_LENGTH: usize = 64;

fn gguf() -> PathBuf {
    asset(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        SMOLLM2_GGUF,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn data(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(rel)
        .display()
        .to_string()
}

fn eval(bench: &str, out: &Path, limit: usize, cache: Option<&Path>) -> Report {
    run(&EvalOptions {
        scorer: ScorerSpec::Model(gguf()),
        bench: bench.to_string(),
        out: out.to_path_buf(),
        limit: Some(limit),
        max_length: MAX_LENGTH,
        // The GGUF has no reward head (a seeded random one is scored, announced in the report).
        allow_untrained_head: true,
        cache_dir: cache.map(Path::to_path_buf),
        client: ClientOptions::default(),
    })
    .unwrap()
}

fn in_unit(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

/// The report files exist, every number is a share in [0, 1], and every PNG decodes.
fn check_outputs(report: &Report, out: &Path) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let accuracy = json["accuracy"].as_f64().unwrap();
    assert_eq!(accuracy, report.accuracy);
    assert!(in_unit(accuracy), "{accuracy}");
    let [lo, hi] = report.accuracy_ci95;
    assert!(lo <= accuracy && accuracy <= hi, "{lo} {accuracy} {hi}");
    for (name, g) in &report.subsets {
        assert!(
            in_unit(g.accuracy) && g.ci95[0] <= g.accuracy && g.accuracy <= g.ci95[1],
            "{name}"
        );
    }
    for p in &report.threshold_curve {
        assert!(in_unit(p.coverage) && p.accuracy.is_none_or(in_unit));
    }
    if let Some(auc) = report.consistency_auc {
        assert!(in_unit(auc));
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("accuracy"), "{md}");
    assert!(!report.plots.is_empty());
    for plot in &report.plots {
        let decoder = png::Decoder::new(std::fs::File::open(out.join(plot)).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert!(info.width >= 600 && info.height >= 500, "{plot}");
        // Not a blank canvas: some pixels are not white.
        assert!(buf.iter().any(|&b| b < 200), "{plot} is blank");
        assert!(md.contains(plot.as_str()));
    }
}

#[test]
fn rm_bench_slice_reports_easy_normal_hard_per_domain() {
    let dir = tempfile::tempdir().unwrap();
    let report = eval("rm-bench", dir.path(), 4, None);
    check_outputs(&report, dir.path());
    let rm = report.rm_bench.as_ref().unwrap();
    assert_eq!(report.units, 4);
    assert_eq!(report.accuracy_kind, "rm_bench_average");
    assert!(rm
        .domains
        .keys()
        .all(|d| ["chat", "code", "safety"].contains(&d.as_str())));
    for s in rm.domains.values().chain([&rm.overall]) {
        for x in [s.easy, s.normal, s.hard, s.average] {
            assert!(in_unit(x));
        }
        assert!(((s.easy + s.normal + s.hard) / 3.0 - s.average).abs() < 1e-9);
    }
    assert_eq!(
        report.threshold_curve[0].pairs,
        4 * 9,
        "nine comparisons per prompt"
    );
    assert_eq!(report.scoring.scored, 4 * 6);
    assert!(report.plots.contains(&"subsets.png".to_string()));
    assert!(report.notes.iter().any(|n| n.contains("math")));
}

#[test]
fn judgebench_and_hh_slices_report_per_subset() {
    let dir = tempfile::tempdir().unwrap();
    let jb = eval("judgebench", &dir.path().join("jb"), 8, None);
    check_outputs(&jb, &dir.path().join("jb"));
    assert_eq!(jb.units, 8);
    assert!(jb
        .subsets
        .keys()
        .all(|k| ["knowledge", "reasoning", "math", "coding"].contains(&k.as_str())));
    assert_eq!(
        jb.sources.len(),
        2,
        "both response models: {:?}",
        jb.sources.keys()
    );
    let hh = eval("hh", &dir.path().join("hh"), 4, None);
    check_outputs(&hh, &dir.path().join("hh"));
    assert_eq!(
        hh.subsets.keys().collect::<Vec<_>>(),
        [
            "harmless-base",
            "helpful-base",
            "helpful-online",
            "helpful-rejection-sampled"
        ],
        "--limit keeps every subset"
    );
    assert!(hh.plots.contains(&"threshold_curve.png".to_string()));
}

fn message(role: Role, content: &str) -> Message {
    Message {
        role,
        content: content.into(),
    }
}

/// A small labelled file in the WildFB format, with both good and bad levels.
fn wildfb_file(dir: &Path) -> PathBuf {
    let rows = [
        (
            "How do I reverse a list in Python?",
            "Use my_list.reverse() or my_list[::-1].",
            "thanks, that works!",
            4,
        ),
        (
            "What is the capital of Australia?",
            "Sydney.",
            "wrong, it is Canberra",
            2,
        ),
        (
            "Translate 'good morning' to French.",
            "Bonjour.",
            "great",
            3,
        ),
        (
            "Write a haiku about rain.",
            "I cannot help with that.",
            "why not? useless",
            1,
        ),
        ("Sum of 2 and 2?", "5", "no, that's wrong", 2),
        (
            "Name a prime number.",
            "7 is prime.",
            "perfect, thank you",
            4,
        ),
    ];
    let lines: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (q, r, feedback, label))| {
            let history = if i % 2 == 0 {
                vec![]
            } else {
                vec![
                    message(Role::User, "hi"),
                    message(Role::Assistant, "Hello!"),
                ]
            };
            let record = WildFbRecord {
                id: format!("conv{i}_turn{}", history.len() / 2),
                text: build_text(&history, q, r, EmptyHistory::Training),
                history,
                messages: [message(Role::User, q), message(Role::Assistant, r)],
                user_feedback: message(Role::User, feedback),
                label: serde_json::from_value(serde_json::json!(label)).unwrap(),
            };
            serde_json::to_string(&record).unwrap()
        })
        .collect();
    let path = dir.join("test.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn wildfb_labelled_data_gets_calibration_and_the_cache_makes_a_second_report_free() {
    let dir = tempfile::tempdir().unwrap();
    let file = wildfb_file(dir.path());
    let cache = dir.path().join("cache");
    let bench = format!("wildfb:{}", file.display());
    let first = eval(&bench, &dir.path().join("a"), 100, Some(&cache));
    check_outputs(&first, &dir.path().join("a"));
    assert_eq!(first.accuracy_kind, "level");
    let cal = first.calibration.as_ref().unwrap();
    assert!(in_unit(cal.ece));
    assert_eq!(
        cal.bins.iter().map(|b| b.count).sum::<usize>(),
        6 * 3,
        "three thresholds per example"
    );
    assert_eq!(cal.confusion.iter().flatten().sum::<usize>(), 6);
    assert!(first.plots.contains(&"reliability.png".to_string()));
    assert_eq!((first.scoring.scored, first.scoring.from_cache), (6, 0));

    let second = eval(&bench, &dir.path().join("b"), 100, Some(&cache));
    assert_eq!((second.scoring.scored, second.scoring.from_cache), (0, 6));
    // Nothing to score: the model was not even loaded, yet the report still knows its head is random.
    assert!(
        second
            .notes
            .iter()
            .any(|n| n.contains("seeded random head")),
        "{:?}",
        second.notes
    );
    assert_eq!(second.accuracy, first.accuracy);
    assert_eq!(second.calibration, first.calibration);
    assert_eq!(second.consistency_auc, first.consistency_auc);
}

#[test]
fn a_pairs_file_with_history_is_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my-pairs.jsonl");
    let lines = [
        r#"{"prompt":"What is 2+2?","chosen":"4","rejected":"5","subset":"math"}"#,
        r#"{"prompt":"Capital of France?","chosen":"Paris.","rejected":"Lyon.","history":[{"role":"user","content":"Quiz time"},{"role":"assistant","content":"Ready!"}]}"#,
        r#"{"prompt":"Say hi","chosen":"Hi!","rejected":"Hi!"}"#,
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    let report = eval(&format!("pairs:{}", path.display()), dir.path(), 10, None);
    check_outputs(&report, dir.path());
    assert_eq!(report.units, 3);
    assert_eq!(report.subsets["all"].n, 2);
    assert_eq!(report.subsets["math"].n, 1);
    // The identical pair is one text scored once, and a tie worth ½: accuracy is a multiple of ⅙.
    assert_eq!(report.scoring.scored, 5);
    assert!(((report.accuracy * 6.0).round() - report.accuracy * 6.0).abs() < 1e-9);
}

fn local_scorer() -> Scorer {
    let model = RewardModel::load(&gguf(), &LoadOptions::inference()).unwrap();
    Scorer::new(
        model,
        ScorerOptions {
            max_length: MAX_LENGTH,
            ..ScorerOptions::default()
        },
    )
}

#[test]
fn endpoint_and_model_give_the_same_scores() {
    let server = TestServer::start(local_scorer(), None).unwrap();
    let mut dataset = bench::load(&format!("hh:{}", data("hh-rlhf"))).unwrap();
    dataset.limit(3);
    let mut local = ScoreSource::open(
        &ScorerSpec::Model(gguf()),
        MAX_LENGTH,
        None,
        &ClientOptions::default(),
        true,
    )
    .unwrap();
    let (want, _) = local.score(&dataset.candidates).unwrap();
    for url in [
        server.url().to_string(),
        format!("{}/get_reward", server.url()),
    ] {
        let mut remote = ScoreSource::open(
            &ScorerSpec::Endpoint(url.clone()),
            MAX_LENGTH,
            None,
            &ClientOptions::default(),
            true,
        )
        .unwrap();
        let (got, stats) = remote.score(&dataset.candidates).unwrap();
        assert_eq!(stats.failed, 0);
        for (g, w) in got.iter().zip(&want) {
            let (g, w) = (g.as_ref().unwrap(), w.as_ref().unwrap());
            assert!(
                (g.reward - w.reward).abs() < 1e-4,
                "{url}: {} vs {}",
                g.reward,
                w.reward
            );
            if !url.ends_with("/get_reward") {
                assert_eq!(g.probs.len(), w.probs.len());
            }
        }
    }
    // Through `run`: the same report as the local model's.
    let dir = tempfile::tempdir().unwrap();
    let opts = |scorer, out: &str| EvalOptions {
        scorer,
        bench: "hh".into(),
        out: dir.path().join(out),
        limit: Some(3),
        max_length: MAX_LENGTH,
        // The GGUF has no reward head (a seeded random one is scored, announced in the report).
        allow_untrained_head: true,
        cache_dir: None,
        client: ClientOptions::default(),
    };
    let by_model = run(&opts(ScorerSpec::Model(gguf()), "m")).unwrap();
    let by_endpoint = run(&opts(ScorerSpec::Endpoint(server.url().to_string()), "e")).unwrap();
    assert_eq!(by_model.accuracy, by_endpoint.accuracy);
    assert_eq!(by_model.subsets, by_endpoint.subsets);
}

#[test]
fn responses_the_endpoint_cannot_score_drop_their_pairs_and_are_counted() {
    let server = TestServer::start(local_scorer(), None).unwrap();
    let mut dataset = bench::load(&format!("hh:{}", data("hh-rlhf"))).unwrap();
    dataset.limit(4);
    // A long response, so the marker selects only the requests carrying it.
    let marker = dataset
        .pairs
        .iter()
        .map(|p| dataset.candidates[p.chosen].response.clone())
        .find(|r| r.len() > 40)
        .unwrap();
    server.add_fault(FaultRule {
        marker,
        fault: Fault::Status(500),
        times: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let report = run(&EvalOptions {
        scorer: ScorerSpec::Endpoint(server.url().to_string()),
        bench: format!("hh:{}", data("hh-rlhf")),
        out: dir.path().to_path_buf(),
        limit: Some(4),
        max_length: MAX_LENGTH,
        // The GGUF has no reward head (a seeded random one is scored, announced in the report).
        allow_untrained_head: true,
        cache_dir: None,
        // Chunks of 2: the failing response takes only its own chunk (one pair) down.
        client: ClientOptions {
            chunk_size: 2,
            retries: 1,
            backoff: std::time::Duration::from_millis(10),
            ..ClientOptions::default()
        },
    })
    .unwrap();
    assert!(
        report.dropped >= 1 && report.units + report.dropped == 4,
        "{report:?}"
    );
    assert!(report.scoring.failed >= 1);
    assert!(report.notes.iter().any(|n| n.contains("dropped")));
}
