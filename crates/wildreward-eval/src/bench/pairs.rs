//! A generic preference-pairs file: `{prompt, chosen, rejected, history?, subset?}` per line — the
//! same format `wildreward train --loss bt` trains on.

use super::files::read_jsonl;
use super::{stem, Candidate, Dataset, Kind, Pair};
use serde::Deserialize;
use std::path::Path;
use wildreward_types::exit::BadInput;
use wildreward_types::Message;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    prompt: String,
    chosen: String,
    rejected: String,
    #[serde(default)]
    history: Vec<Message>,
    #[serde(default)]
    subset: Option<String>,
}

/// Reads one pairs file.
pub fn load(path: &Path) -> Result<Dataset, BadInput> {
    let mut d = Dataset::new("pairs", Kind::Pairwise);
    let source = stem(path);
    for (_, row) in read_jsonl::<Row>(path)? {
        let mut candidate = |response: String| {
            d.push(Candidate {
                history: row.history.clone(),
                query: row.prompt.clone(),
                response,
            })
        };
        let chosen = candidate(row.chosen);
        let rejected = candidate(row.rejected);
        d.pairs.push(Pair {
            chosen,
            rejected,
            subset: row.subset.unwrap_or_else(|| "all".into()),
            source: source.clone(),
        });
    }
    d.files.push(path.to_path_buf());
    Ok(d)
}
