//! The tests' fake OpenAI-compatible server as a program, for `scripts/bench/collect.sh`: every answer
//! after a fixed latency, no faults. Prints `listening on http://127.0.0.1:PORT/v1`, serves until killed.
//!
//!     cargo run -p wildfb --example fake_openai -- --latency-ms 100
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/fake_openai.rs"]
mod fake_openai;

use std::time::Duration;

fn main() {
    let mut latency_ms = 100u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--latency-ms" => latency_ms = args.next().and_then(|v| v.parse().ok()).unwrap_or(100),
            other => {
                eprintln!("unknown argument {other:?} (expected --latency-ms N)");
                std::process::exit(2);
            }
        }
    }
    let fake = fake_openai::FakeOpenAi::start(fake_openai::Behaviour {
        latency: Duration::from_millis(latency_ms),
        faults: false,
        slow: Duration::ZERO,
        reject_all: false,
    });
    println!("listening on {}", fake.base_url());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
