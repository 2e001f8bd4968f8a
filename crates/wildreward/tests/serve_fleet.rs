//! `wildreward serve` as real processes on loopback with the real SmolLM2 GGUF: a fleet of 4 workers
//! keeps every client request answered while one worker is SIGKILLed mid-request, restarts it and
//! sends it traffic again, and drains on SIGTERM; a worker under more load than it admits answers
//! 429 + Retry-After and never queues more than its bound.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn texts(client: usize) -> String {
    json!({ "query": [
        format!("client {client} asks about the weather"),
        format!("client {client} wants a short poem about the sea and the sky"),
        "ok",
    ]})
    .to_string()
}

#[test]
fn fleet_survives_a_sigkilled_worker_restarts_it_and_drains_on_sigterm() {
    let model = gguf();
    let (mut fleet, url) = spawn(
        &[
            "serve",
            "--model",
            model.to_str().unwrap(),
            "--allow-untrained-head",
            "--workers",
            "4",
            "--port",
            "0",
            "--worker-port",
            "0",
            "--max-length",
            "32",
            "--max-batch-size",
            "8",
            "--max-batch-tokens",
            "256",
            "--tokenization-workers",
            "1",
            "--health-interval-ms",
            "200",
        ],
        "serve-fleet.log",
    );
    wait_for("4 healthy workers", Duration::from_secs(240), || {
        http("GET", &format!("{url}/"), None)
            .map(|r| r.json()["healthy_workers"] == 4)
            .unwrap_or(false)
    });
    let info = get(&format!("{url}/"));
    assert_eq!(info["policy"], "round-robin");

    // Every client checks its rewards against its first answer (the model is deterministic).
    let expected: Vec<Vec<f64>> = (0..4)
        .map(|c| rewards(&http("POST", &format!("{url}/get_reward"), Some(&texts(c))).unwrap()))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (url, stop, ok, failures, want) = (
                url.clone(),
                stop.clone(),
                ok.clone(),
                failures.clone(),
                expected[c].clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match http("POST", &format!("{url}/get_reward"), Some(&texts(c))) {
                        Ok(r) if r.status == 200 => {
                            let got = rewards(&r);
                            let same = got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-5);
                            if same && got.len() == want.len() {
                                ok.fetch_add(1, Ordering::SeqCst);
                            } else {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("rewards {got:?} != {want:?}"));
                            }
                        }
                        Ok(r) => failures.lock().unwrap().push(format!(
                            "{}: {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        )),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();

    wait_for("some answers", Duration::from_secs(120), || {
        ok.load(Ordering::SeqCst) >= 8
    });
    // SIGKILL worker 1 while it has a request in flight.
    let mut victim = 0;
    wait_for("worker 1 busy", Duration::from_secs(60), || {
        let w = &get(&format!("{url}/"))["workers"][1];
        victim = w["pid"].as_u64().unwrap_or(0) as u32;
        w["in_flight"].as_u64().unwrap_or(0) > 0 && victim > 0
    });
    signal(victim, "-KILL");
    let killed_at = ok.load(Ordering::SeqCst);

    // It is restarted (a new process), comes back healthy, and gets traffic again.
    let mut served_after_restart = 0;
    wait_for(
        "worker 1 restarted and healthy",
        Duration::from_secs(180),
        || {
            let w = get(&format!("{url}/"))["workers"][1].clone();
            served_after_restart = w["served"].as_u64().unwrap_or(0);
            w["restarts"].as_u64().unwrap_or(0) >= 1
                && w["healthy"] == true
                && w["pid"].as_u64().is_some_and(|p| p as u32 != victim)
        },
    );
    wait_for(
        "traffic on the restarted worker",
        Duration::from_secs(120),
        || {
            get(&format!("{url}/"))["workers"][1]["served"]
                .as_u64()
                .unwrap_or(0)
                > served_after_restart
        },
    );
    wait_for(
        "more answers after the kill",
        Duration::from_secs(120),
        || ok.load(Ordering::SeqCst) >= killed_at + 8,
    );
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed client requests: {failures:?}");
    let metrics =
        String::from_utf8(http("GET", &format!("{url}/metrics"), None).unwrap().body).unwrap();
    assert!(
        metrics.contains(r#"outcome="connect""#),
        "the killed worker's in-flight request was retried elsewhere:\n{metrics}"
    );
    assert!(
        metrics.contains(r#"wildreward_router_worker_restarts{worker="1"} 1"#),
        "{metrics}"
    );

    // Graceful drain: a request in flight when SIGTERM arrives is still answered.
    let big = json!({ "query": (0..24).map(|i| format!("draining text number {i} with some words")).collect::<Vec<_>>() })
        .to_string();
    let u = url.clone();
    let in_flight =
        std::thread::spawn(move || http("POST", &format!("{u}/get_reward"), Some(&big)));
    wait_for(
        "the request to reach the workers",
        Duration::from_secs(60),
        || {
            get(&format!("{url}/"))["workers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["in_flight"].as_u64().unwrap_or(0) > 0)
        },
    );
    let pids: Vec<u32> = get(&format!("{url}/"))["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
        .collect();
    signal(fleet.id(), "-TERM");
    let reply = in_flight.join().unwrap().unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(rewards(&reply).len(), 24);
    let status = fleet.wait().unwrap();
    assert!(status.success(), "fleet exit: {status}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} outlived the fleet"
        );
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn an_overloaded_worker_answers_429_with_retry_after_and_stays_bounded() {
    let model = gguf();
    let (mut worker, url) = spawn(
        &[
            "serve",
            "worker",
            "--model",
            model.to_str().unwrap(),
            "--allow-untrained-head",
            "--port",
            "0",
            "--max-length",
            "32",
            "--max-batch-size",
            "8",
            "--max-batch-tokens",
            "256",
            "--max-in-flight",
            "8",
            "--max-client-batch",
            "8",
            "--tokenization-workers",
            "1",
        ],
        "serve-overload.log",
    );
    wait_for("the worker", Duration::from_secs(120), || {
        http("GET", &format!("{url}/health"), None).is_ok_and(|r| r.status == 200)
    });
    let body = json!({ "query": (0..8).map(|i| format!("overload text {i} about things")).collect::<Vec<_>>() })
        .to_string();
    let want = rewards(&http("POST", &format!("{url}/get_reward"), Some(&body)).unwrap());
    let rss_before = rss_kib(worker.id());

    let statuses = Arc::new(Mutex::new(Vec::new()));
    let start = Arc::new(std::sync::Barrier::new(24));
    let threads: Vec<_> = (0..24)
        .map(|_| {
            let (url, body, statuses, start, want) = (
                url.clone(),
                body.clone(),
                statuses.clone(),
                start.clone(),
                want.clone(),
            );
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..3 {
                    let r = http("POST", &format!("{url}/get_reward"), Some(&body)).unwrap();
                    match r.status {
                        200 => assert_eq!(rewards(&r).len(), want.len()),
                        429 => {
                            assert_eq!(r.header("retry-after"), Some("1"));
                            assert_eq!(r.json()["error_type"], "overloaded");
                        }
                        other => panic!("{other}: {}", String::from_utf8_lossy(&r.body)),
                    }
                    statuses.lock().unwrap().push(r.status);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    let (ok, refused) = (
        statuses.iter().filter(|&&s| s == 200).count(),
        statuses.iter().filter(|&&s| s == 429).count(),
    );
    assert!(ok >= 1 && refused >= 1, "200s: {ok}, 429s: {refused}");

    // Never more than 8 texts admitted: no batch ever held more, and nothing is left in flight.
    let metrics =
        String::from_utf8(http("GET", &format!("{url}/metrics"), None).unwrap().body).unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(
        value(r#"wildreward_batch_next_size_bucket{le="8"}"#),
        value("wildreward_batch_next_size_count")
    );
    assert_eq!(value("wildreward_in_flight"), 0.0);
    assert!(value(r#"wildreward_request_failure{error_type="overloaded"}"#) >= 1.0);
    let grown_mib = rss_kib(worker.id()).saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 200,
        "resident memory grew by {grown_mib} MiB under overload"
    );

    // And it still answers, with the same rewards.
    let r = http("POST", &format!("{url}/get_reward"), Some(&body)).unwrap();
    assert_eq!(r.status, 200);
    let again = rewards(&r);
    assert!(
        again.iter().zip(&want).all(|(a, w)| (a - w).abs() < 1e-5),
        "{again:?} vs {want:?}"
    );
    signal(worker.id(), "-TERM");
    assert!(worker.wait().unwrap().success());
}
