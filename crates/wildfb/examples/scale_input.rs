//! Makes a large WildChat-shaped input for `scripts/bench/collect.sh` by repeating a parquet file:
//! copy `k` gets fresh conversation hashes (SHA-256 of the original hash and `k`) and its user messages
//! end with ` [copy k]`, so no cache (embeddings, journal) can make the copies cheaper than real data.
//! Writes one parquet file per copy into the output directory.
//!
//!     cargo run -p wildfb --example scale_input -- IN.parquet OUT_DIR CONVERSATIONS
#![allow(clippy::unwrap_used)]

use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 {
        eprintln!("usage: scale_input IN.parquet OUT_DIR CONVERSATIONS");
        std::process::exit(2);
    }
    let (input, out, target) = (
        PathBuf::from(&args[0]),
        PathBuf::from(&args[1]),
        args[2].parse::<usize>().unwrap(),
    );
    let rows = wildfb::parquet::read_wildchat(&input).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let mut written = 0;
    let mut copy = 0;
    while written < target {
        let take = rows.len().min(target - written);
        let batch: Vec<_> = rows[..take]
            .iter()
            .map(|r| {
                let mut r = r.clone();
                let digest = Sha256::digest(format!("{}:{copy}", r.conversation_hash));
                r.conversation_hash = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
                for m in &mut r.conversation {
                    if m.role == "user" {
                        m.content.push_str(&format!(" [copy {copy}]"));
                    }
                }
                r
            })
            .collect();
        wildfb::parquet::write_wildchat(&out.join(format!("part-{copy:05}.parquet")), &batch)
            .unwrap();
        written += take;
        copy += 1;
    }
    println!(
        "{written} conversations in {copy} files under {}",
        out.display()
    );
}
