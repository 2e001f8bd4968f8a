//! The scoring client against a real axum server on loopback that scores with the real `Scorer`
//! (SmolLM2 from assets/, seeded random head) and fails chunks on purpose.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wildreward_client::test_server::{Fault, FaultRule, TestServer};
use wildreward_client::{BlockingClient, ClientError, ClientOptions, FailureKind, ScoringClient};
use wildreward_model::assets::{asset, SMOLLM2_GGUF};
use wildreward_model::{LoadOptions, RewardModel, Scorer, ScorerOptions};
use wildreward_types::wire::ScoreItem;
use wildreward_types::{build_text, EmptyHistory, Message, Role};

fn scorer() -> Scorer {
    static SCORER: OnceLock<Scorer> = OnceLock::new();
    SCORER
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let gguf = asset(&root, SMOLLM2_GGUF).unwrap_or_else(|e| panic!("{e}"));
            let model = RewardModel::load(&gguf, &LoadOptions::inference()).unwrap();
            Scorer::new(
                model,
                ScorerOptions {
                    max_length: 48,
                    ..ScorerOptions::default()
                },
            )
        })
        .clone()
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("Answer {i}: the sum of {i} and {} is {}.", i + 1, 2 * i + 1))
        .collect()
}

fn quick(chunk_size: usize) -> ClientOptions {
    ClientOptions {
        chunk_size,
        concurrency: 3,
        timeout: Duration::from_secs(60),
        retries: 2,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_secs(5),
        bearer_token: None,
    }
}

#[test]
fn rewards_come_back_in_input_order_and_equal_the_scorer() {
    let server = TestServer::start(scorer(), None).unwrap();
    let client = BlockingClient::new(&format!("{}/get_reward", server.url()), quick(4)).unwrap();
    let texts = texts(14);
    let mut done = 0;
    let got = client.get_rewards(&texts, &mut |n| done += n).unwrap();
    assert_eq!(done, 14, "progress covers every item");
    assert_eq!(server.requests(), 4, "ceil(14 / 4) chunks, no retries");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = scorer().score(&refs).unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        let g = *g.as_ref().unwrap();
        assert!((g - w.reward).abs() < 1e-4, "{g} vs {}", w.reward);
    }
    // A random head still tells different texts apart: the order check above is not vacuous.
    let distinct = want
        .iter()
        .map(|s| s.reward.to_bits())
        .collect::<std::collections::HashSet<_>>();
    assert!(distinct.len() > 7, "{distinct:?}");
}

#[test]
fn structured_items_get_the_template_and_level_probabilities() {
    let server = TestServer::start(scorer(), None).unwrap();
    let client = BlockingClient::new(server.url(), quick(2)).unwrap();
    let items: Vec<ScoreItem> = (0..3)
        .map(|i| ScoreItem {
            query: format!("What is {i} + {i}?"),
            response: format!("It is {}.", 2 * i),
            history: if i == 1 {
                vec![Message {
                    role: Role::User,
                    content: "hello".into(),
                }]
            } else {
                vec![]
            },
        })
        .collect();
    let got = client.score_items(&items, &mut |_| {}).unwrap();
    let rm_texts: Vec<String> = items
        .iter()
        .map(|i| build_text(&i.history, &i.query, &i.response, EmptyHistory::Training))
        .collect();
    let refs: Vec<&str> = rm_texts.iter().map(String::as_str).collect();
    for (g, w) in got.iter().zip(scorer().score(&refs).unwrap()) {
        let g = g.as_ref().unwrap();
        assert!((g.reward - w.reward).abs() < 1e-4);
        assert_eq!(g.probs.len(), 4);
        assert!((g.probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
}

#[test]
fn a_chunk_that_keeps_failing_errs_for_its_items_only() {
    let server = TestServer::start(scorer(), None).unwrap();
    server.add_fault(FaultRule {
        marker: "Answer 5:".into(),
        fault: Fault::Status(500),
        times: None,
    });
    let client = BlockingClient::new(server.url(), quick(4)).unwrap();
    let got = client.get_rewards(&texts(10), &mut |_| {}).unwrap();
    for (i, r) in got.iter().enumerate() {
        if (4..8).contains(&i) {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.kind, FailureKind::Status(500), "{e}");
            assert_eq!(e.attempts, 3, "first try + 2 retries");
            assert!(e.detail.contains("injected 500"), "{e}");
        } else {
            assert!(r.is_ok(), "item {i}: {r:?}");
        }
    }
    assert_eq!(server.requests(), 3 + 2);
}

#[test]
fn transient_500_and_429_with_retry_after_are_retried_to_success() {
    let server = TestServer::start(scorer(), None).unwrap();
    server.add_fault(FaultRule {
        marker: "Answer 1:".into(),
        fault: Fault::Status(503),
        times: Some(1),
    });
    server.add_fault(FaultRule {
        marker: "Answer 4:".into(),
        fault: Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        times: Some(1),
    });
    let client = BlockingClient::new(server.url(), quick(3)).unwrap();
    let start = Instant::now();
    let got = client.get_rewards(&texts(6), &mut |_| {}).unwrap();
    assert!(got.iter().all(Result::is_ok), "{got:?}");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured, not the 20 ms backoff"
    );
    assert_eq!(server.requests(), 2 + 2);
}

#[test]
fn slow_answers_time_out_and_are_reported_as_timeouts() {
    let server = TestServer::start(scorer(), None).unwrap();
    server.add_fault(FaultRule {
        marker: "Answer 0:".into(),
        fault: Fault::Delay(Duration::from_secs(8)),
        times: None,
    });
    // Long enough for the normal chunk to be scored on a busy 2-core machine, far below the delay.
    let opts = ClientOptions {
        timeout: Duration::from_secs(2),
        retries: 1,
        ..quick(2)
    };
    let client = BlockingClient::new(server.url(), opts).unwrap();
    let start = Instant::now();
    let got = client.get_rewards(&texts(4), &mut |_| {}).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "did not wait for the slow server"
    );
    for r in &got[..2] {
        let e = r.as_ref().unwrap_err();
        assert_eq!(
            (e.kind.clone(), e.attempts),
            (FailureKind::Timeout, 2),
            "{e}"
        );
    }
    assert!(got[2..].iter().all(Result::is_ok));
}

#[test]
fn wrong_result_counts_and_client_errors_are_not_retried() {
    let server = TestServer::start(scorer(), Some("sesame".into())).unwrap();
    let anonymous = BlockingClient::new(server.url(), quick(4)).unwrap();
    let got = anonymous.get_rewards(&texts(2), &mut |_| {}).unwrap();
    let e = got[0].as_ref().unwrap_err();
    assert_eq!(
        (e.kind.clone(), e.attempts),
        (FailureKind::Status(401), 1),
        "{e}"
    );

    let opts = ClientOptions {
        bearer_token: Some("sesame".into()),
        ..quick(4)
    };
    let client = BlockingClient::new(server.url(), opts).unwrap();
    assert!(client
        .get_rewards(&texts(2), &mut |_| {})
        .unwrap()
        .iter()
        .all(Result::is_ok));
    server.add_fault(FaultRule {
        marker: "Answer 0:".into(),
        fault: Fault::ShortAnswer,
        times: None,
    });
    let got = client.get_rewards(&texts(2), &mut |_| {}).unwrap();
    let e = got[1].as_ref().unwrap_err();
    assert_eq!(
        (e.kind.clone(), e.attempts),
        (FailureKind::BadResponse, 1),
        "{e}"
    );
    assert!(e.detail.contains("1 results for 2 items"), "{e}");
}

#[test]
fn an_unreachable_server_gives_connect_errors_for_every_item() {
    // A port that was free a moment ago: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = BlockingClient::new(&format!("http://127.0.0.1:{port}"), quick(2)).unwrap();
    let got = client.get_rewards(&texts(5), &mut |_| {}).unwrap();
    assert_eq!(got.len(), 5);
    for r in got {
        let e = r.unwrap_err();
        assert_eq!(
            (e.kind.clone(), e.attempts),
            (FailureKind::Connect, 3),
            "{e}"
        );
    }
}

#[test]
fn the_blocking_client_refuses_to_run_inside_a_runtime_and_the_async_one_works_there() {
    let server = TestServer::start(scorer(), None).unwrap();
    let blocking = BlockingClient::new(server.url(), quick(4)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(matches!(
            blocking.get_rewards(&texts(1), &mut |_| {}),
            Err(ClientError::InsideRuntime)
        ));
        let client = ScoringClient::new(server.url(), quick(4)).unwrap();
        let got = client.get_rewards(&texts(3)).await;
        assert!(got.iter().all(Result::is_ok));
    });
}
