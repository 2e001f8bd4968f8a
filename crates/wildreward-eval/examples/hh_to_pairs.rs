//! Turns HH-RLHF files into the preference-pairs JSONL that `wildreward train --loss bt` trains on
//! (`{prompt, chosen, rejected, history, subset}`), with the same dialogue parser the evaluator uses.
//!
//! ```sh
//! cargo run -p wildreward-eval --example hh_to_pairs -- OUT.jsonl data/hh-rlhf/*.bt-train.jsonl.gz
//! ```

use std::io::Write;
use wildreward_eval::bench;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, inputs)) = args.split_first().filter(|(_, i)| !i.is_empty()) else {
        anyhow::bail!("usage: hh_to_pairs OUT.jsonl HH_FILE.jsonl[.gz]...");
    };
    let mut lines = Vec::new();
    for input in inputs {
        let d = bench::load(&format!("hh:{input}"))?;
        for p in &d.pairs {
            let (c, r) = (&d.candidates[p.chosen], &d.candidates[p.rejected]);
            lines.push(serde_json::to_string(&serde_json::json!({
                "prompt": c.query,
                "chosen": c.response,
                "rejected": r.response,
                "history": c.history,
                "subset": p.subset,
            }))?);
        }
    }
    let mut f = std::fs::File::create(out)?;
    writeln!(f, "{}", lines.join("\n"))?;
    eprintln!(
        "hh_to_pairs: {} pairs from {} files -> {out}",
        lines.len(),
        inputs.len()
    );
    Ok(())
}
