//! RM-Bench (THU-KEG): per prompt the same chosen and rejected answer in three styles; the domain
//! comes from the file name, as upstream splits its data.

use super::files::{files_in, read_text};
use super::{stem, Candidate, Dataset, Kind, StylePrompt};
use serde::Deserialize;
use std::path::Path;
use wildreward_types::exit::BadInput;

#[derive(Deserialize)]
struct Item {
    prompt: String,
    chosen: [String; 3],
    rejected: [String; 3],
}

/// The domain of an RM-Bench file: `chat`, `code`, `math`, or `safety` for both safety files.
fn domain(path: &Path) -> String {
    let s = stem(path);
    let s = s.strip_suffix("_filtered").unwrap_or(&s);
    if s.starts_with("safety") {
        "safety".into()
    } else {
        s.to_string()
    }
}

/// Reads RM-Bench files (`*_filtered*.json[.gz]` in a directory, or one file).
pub fn load(path: &Path) -> Result<Dataset, BadInput> {
    let files = files_in(
        path,
        |n| n.contains("_filtered") && (n.ends_with(".json") || n.ends_with(".json.gz")),
        "RM-Bench *_filtered.json",
    )?;
    let mut d = Dataset::new("rm-bench", Kind::StyleMatrix);
    for file in files {
        let text = read_text(&file)?;
        // Typed parsing: a missing field or a list that is not 3 long is reported with its line.
        let items: Vec<Item> = serde_json::from_str(&text)
            .map_err(|e| BadInput(format!("{}:{}: {e}", file.display(), e.line())))?;
        let domain = domain(&file);
        for item in items {
            let mut candidate = |response: String| {
                d.push(Candidate {
                    history: vec![],
                    query: item.prompt.clone(),
                    response,
                })
            };
            let chosen = item.chosen.map(&mut candidate);
            let rejected = item.rejected.map(&mut candidate);
            d.prompts.push(StylePrompt {
                domain: domain.clone(),
                chosen,
                rejected,
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
    fn domains_follow_upstream_file_names() {
        assert_eq!(domain(Path::new("chat_filtered.json")), "chat");
        assert_eq!(
            domain(Path::new("d/safety-refuse_filtered.slice.json.gz")),
            "safety"
        );
        assert_eq!(domain(Path::new("safety-response_filtered.json")), "safety");
        assert_eq!(domain(Path::new("code_filtered.slice.json.gz")), "code");
    }
}
