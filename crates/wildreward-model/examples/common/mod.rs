//! What the scorer benchmarks (`bench_score`, `bench_quantized`) share: their inputs and their
//! timing protocol.

use std::io::BufRead;
use std::time::Instant;
use wildreward_model::{Scored, Scorer};

/// The token ids of `path`, one `{"ids": [u32…]}` per line.
pub fn read_ids(path: &str) -> anyhow::Result<Vec<Vec<u32>>> {
    std::io::BufReader::new(std::fs::File::open(path)?)
        .lines()
        .map(|l| -> anyhow::Result<Vec<u32>> {
            let v: serde_json::Value = serde_json::from_str(&l?)?;
            Ok(serde_json::from_value(v["ids"].clone())?)
        })
        .collect()
}

/// How many passes each measurement takes: `REPEATS`, 3 when unset (the reference script reads the
/// same setting).
pub fn repeats() -> anyhow::Result<usize> {
    Ok(match std::env::var("REPEATS") {
        Ok(s) => s.parse::<usize>()?.max(1),
        Err(_) => 3,
    })
}

/// Scores `ids` `repeats` times: the last pass's results and every pass's seconds, fastest first. A
/// pass slowed by other work on the machine says nothing about the scorer, so the figures are read
/// from the fastest, as the matmul peak is.
pub fn passes(
    scorer: &Scorer,
    ids: &[Vec<u32>],
    repeats: usize,
) -> anyhow::Result<(Vec<Scored>, Vec<f64>)> {
    let (mut scored, mut secs) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        scored = scorer.score_ids(ids)?;
        secs.push(t.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    Ok((scored, secs))
}
