//! JudgeBench (ScalerLab): hard response pairs whose correct answer is known; `label` says which
//! wins. Reported by category (knowledge, reasoning, math, coding) and by response model.

use super::files::{at, files_in, is_jsonl, read_jsonl};
use super::{Candidate, Dataset, Kind, Pair};
use serde::Deserialize;
use std::path::Path;
use wildreward_types::exit::BadInput;

#[derive(Deserialize)]
struct Row {
    source: String,
    question: String,
    response_model: String,
    #[serde(rename = "response_A")]
    response_a: String,
    #[serde(rename = "response_B")]
    response_b: String,
    label: String,
}

/// JudgeBench's four categories from a row's `source` (`mmlu-pro-*` is knowledge).
pub fn category(source: &str) -> &str {
    if source.starts_with("mmlu-pro") {
        "knowledge"
    } else if source.contains("reasoning") {
        "reasoning"
    } else if source.contains("math") {
        "math"
    } else if source.contains("code") || source.contains("coding") {
        "coding"
    } else {
        source
    }
}

/// Reads JudgeBench JSON Lines (`judgebench*.jsonl[.gz]` in a directory, or one file).
pub fn load(path: &Path) -> Result<Dataset, BadInput> {
    let files = files_in(
        path,
        |n| n.starts_with("judgebench") && is_jsonl(n),
        "JudgeBench judgebench*.jsonl",
    )?;
    let mut d = Dataset::new("judgebench", Kind::Pairwise);
    for file in files {
        for (line, row) in read_jsonl::<Row>(&file)? {
            let a_wins = match row.label.as_str() {
                "A>B" => true,
                "B>A" => false,
                other => {
                    return Err(at(
                        &file,
                        line,
                        format!("`label` is `{other}`, expected `A>B` or `B>A`"),
                    ))
                }
            };
            let mut candidate = |response: String| {
                d.push(Candidate {
                    history: vec![],
                    query: row.question.clone(),
                    response,
                })
            };
            let a = candidate(row.response_a);
            let b = candidate(row.response_b);
            let (chosen, rejected) = if a_wins { (a, b) } else { (b, a) };
            d.pairs.push(Pair {
                chosen,
                rejected,
                subset: category(&row.source).to_string(),
                source: row.response_model,
            });
        }
        d.files.push(file);
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_of_upstream_sources() {
        assert_eq!(category("mmlu-pro-law"), "knowledge");
        assert_eq!(category("livebench-reasoning"), "reasoning");
        assert_eq!(category("livebench-math"), "math");
        assert_eq!(category("livecodebench"), "coding");
    }
}
