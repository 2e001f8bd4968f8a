//! `wildreward serve --workers N` as real processes with the real SmolLM2 GGUF: the limit flags the
//! fleet takes reach the workers it spawns (a worker never refuses what the router accepted), and
//! a worker whose inference thread panics exits, is restarted, and no client request is lost.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SMALL: &[&str] = &[
    "--allow-untrained-head",
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
];

fn worker_urls(router: &str) -> Vec<String> {
    get(&format!("{router}/"))["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["url"].as_str().unwrap().to_string())
        .collect()
}

fn query(n: usize) -> String {
    json!({ "query": (0..n).map(|i| format!("limit text {i} about the sea")).collect::<Vec<_>>() })
        .to_string()
}

#[test]
fn spawned_workers_honour_the_limits_the_fleet_was_given() {
    let model = gguf();
    let mut args = vec![
        "serve",
        "--model",
        model.to_str().unwrap(),
        "--workers",
        "2",
    ];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(&[
        "--max-client-batch",
        "8",
        "--max-in-flight",
        "16",
        "--retry-after",
        "3",
        "--max-queue-seconds",
        "1.5",
        "--read-timeout",
        "7",
        "--min-split",
        "2",
    ]);
    let (mut fleet, url) = spawn(&args, "serve-fleet-limits.log");
    wait_for("2 healthy workers", Duration::from_secs(240), || {
        http("GET", &format!("{url}/"), None).is_ok_and(|r| r.json()["healthy_workers"] == 2)
    });
    for worker in worker_urls(&url) {
        let limits = get(&format!("{worker}/"))["limits"].clone();
        assert_eq!(limits["max_client_batch"], 8, "{worker}: {limits}");
        assert_eq!(limits["max_in_flight"], 16, "{worker}: {limits}");
        assert_eq!(limits["retry_after_s"], 3, "{worker}: {limits}");
        assert_eq!(limits["max_queue_seconds"], 1.5, "{worker}: {limits}");
        assert_eq!(limits["read_timeout_s"], 7.0, "{worker}: {limits}");
        let r = http("POST", &format!("{worker}/get_reward"), Some(&query(9))).unwrap();
        assert_eq!(r.status, 413, "the worker's own bound");
    }
    // The router's bound is the same, and what it accepts no worker refuses.
    let r = http("POST", &format!("{url}/get_reward"), Some(&query(8))).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(rewards(&r).len(), 8);
    let r = http("POST", &format!("{url}/get_reward"), Some(&query(9))).unwrap();
    assert_eq!(r.status, 413);
    signal(fleet.id(), "-TERM");
    assert!(fleet.wait().unwrap().success());
}

#[test]
fn a_worker_whose_inference_thread_panics_is_restarted_and_no_request_is_lost() {
    if cfg!(not(debug_assertions)) {
        eprintln!("skipped: the panic trigger exists in debug builds only");
        return;
    }
    let model = gguf();
    let trigger = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-panic-trigger");
    let _ = std::fs::remove_file(&trigger);
    let mut args = vec![
        "serve",
        "--model",
        model.to_str().unwrap(),
        "--workers",
        "2",
    ];
    args.extend_from_slice(SMALL);
    let (mut fleet, url) = spawn_with_env(
        &args,
        &[("WILDREWARD_DEBUG_PANIC_FILE", trigger.to_str().unwrap())],
        "serve-fleet-panic.log",
    );
    wait_for("2 healthy workers", Duration::from_secs(240), || {
        http("GET", &format!("{url}/"), None).is_ok_and(|r| r.json()["healthy_workers"] == 2)
    });
    let body = query(3);
    let want = rewards(&http("POST", &format!("{url}/get_reward"), Some(&body)).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (url, body, want) = (url.clone(), body.clone(), want.clone());
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match http("POST", &format!("{url}/get_reward"), Some(&body)) {
                        Ok(r) if r.status == 200 => {
                            let got = rewards(&r);
                            if got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-5) {
                                ok.fetch_add(1, Ordering::SeqCst);
                            } else {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{got:?} != {want:?}"));
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
    wait_for("answers", Duration::from_secs(120), || {
        ok.load(Ordering::SeqCst) >= 4
    });
    // The next batch to run on either worker panics on its inference thread.
    std::fs::write(&trigger, b"panic").unwrap();
    wait_for("the trigger taken", Duration::from_secs(60), || {
        !trigger.exists()
    });
    wait_for("a worker restarted", Duration::from_secs(180), || {
        let workers = get(&format!("{url}/"))["workers"].clone();
        let workers = workers.as_array().unwrap();
        workers
            .iter()
            .any(|w| w["restarts"].as_u64().unwrap_or(0) >= 1)
            && workers.iter().all(|w| w["healthy"] == true)
    });
    let after = ok.load(Ordering::SeqCst);
    wait_for(
        "answers after the restart",
        Duration::from_secs(120),
        || ok.load(Ordering::SeqCst) >= after + 4,
    );
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed client requests: {failures:?}");
    let log = std::fs::read_to_string(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-fleet-panic.log"),
    )
    .unwrap();
    assert!(log.contains("the inference thread panicked"), "{log}");
    signal(fleet.id(), "-TERM");
    assert!(fleet.wait().unwrap().success());
}

#[test]
fn a_fleet_whose_workers_refuse_an_untrained_head_stops_with_their_error() {
    let model = gguf();
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-fleet-untrained.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wildreward"))
        .args([
            "serve",
            "--model",
            model.to_str().unwrap(),
            "--workers",
            "1",
        ])
        .args(["--port", "0", "--worker-port", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_for("the fleet to stop", Duration::from_secs(180), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.unwrap().code(), Some(65), "{err}");
    assert!(err.contains("--allow-untrained-head"), "{err}");
    assert!(
        !err.contains("restarting"),
        "not restarted over and over: {err}"
    );
}
