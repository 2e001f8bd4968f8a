//! WildFB test data (`test.jsonl` from `wildfb collect`, or the released dataset): labelled single
//! responses for calibration and cross-sample consistency.

use super::files::read_jsonl;
use super::{Candidate, Dataset, Kind, Labelled};
use std::path::Path;
use wildreward_types::exit::BadInput;
use wildreward_types::WildFbRecord;

/// Reads a WildFB JSON Lines file (or `test.jsonl` in a directory).
pub fn load(path: &Path) -> Result<Dataset, BadInput> {
    let file = if path.is_dir() {
        path.join("test.jsonl")
    } else {
        path.to_path_buf()
    };
    let mut d = Dataset::new("wildfb", Kind::Pointwise);
    for (_, record) in read_jsonl::<WildFbRecord>(&file)? {
        let [query, response] = record.messages;
        let candidate = d.push(Candidate {
            history: record.history,
            query: query.content,
            response: response.content,
        });
        d.labelled.push(Labelled {
            candidate,
            label: record.label.value(),
        });
    }
    d.files.push(file);
    Ok(d)
}
