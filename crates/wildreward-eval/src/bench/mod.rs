//! Benchmark files → a [`Dataset`]: the responses to score ([`Candidate`]s) and how their scores are
//! compared (pairs, RM-Bench prompts, or labels). Every loader names the file and line of a bad row.

mod files;
mod hh;
mod judgebench;
mod pairs;
mod rm_bench;
mod wildfb;

pub use files::data_dir;
pub use hh::{parse_pair, HhPair};

use std::path::{Path, PathBuf};
use wildreward_types::exit::BadInput;
use wildreward_types::{build_text, EmptyHistory, Message};

/// One response to score, with what the RM template needs around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Messages before the query.
    pub history: Vec<Message>,
    /// The user query.
    pub query: String,
    /// The response judged.
    pub response: String,
}

impl Candidate {
    /// The RM text of this candidate (the shared template, as training builds it): the key of its
    /// cached score.
    pub fn text(&self) -> String {
        build_text(
            &self.history,
            &self.query,
            &self.response,
            EmptyHistory::Training,
        )
    }

    /// The turn as the scorer takes it: (history, query, response).
    pub fn turn(&self) -> (&[Message], &str, &str) {
        (
            self.history.as_slice(),
            self.query.as_str(),
            self.response.as_str(),
        )
    }
}

/// A preference pair: indexes into [`Dataset::candidates`].
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The better response.
    pub chosen: usize,
    /// The worse one.
    pub rejected: usize,
    /// What accuracy is reported by (HH subset, JudgeBench category, a pairs file's `subset`).
    pub subset: String,
    /// The file (or response model) it came from, reported when a bench has several.
    pub source: String,
}

/// One RM-Bench prompt: the same answer in 3 styles, chosen and rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct StylePrompt {
    /// chat, code, math or safety.
    pub domain: String,
    /// Candidates of the chosen answer: concise, detailed plain, detailed markdown.
    pub chosen: [usize; 3],
    /// The same for the rejected answer.
    pub rejected: [usize; 3],
}

/// A pointwise example with its level (WildFB test data).
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// Index into [`Dataset::candidates`].
    pub candidate: usize,
    /// The level, 1..=K.
    pub label: u8,
}

/// What the dataset's units are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Preference pairs (HH, JudgeBench, pairs files).
    Pairwise,
    /// RM-Bench prompts with their 3×3 style matrix.
    StyleMatrix,
    /// Labelled single responses (WildFB).
    Pointwise,
}

/// A loaded benchmark.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `rm-bench`, `judgebench`, `hh`, `wildfb` or `pairs`.
    pub name: String,
    /// Which of the unit lists is used.
    pub kind: Kind,
    /// Every response to score.
    pub candidates: Vec<Candidate>,
    /// Units of a pairwise bench.
    pub pairs: Vec<Pair>,
    /// Units of RM-Bench.
    pub prompts: Vec<StylePrompt>,
    /// Units of a pointwise bench.
    pub labelled: Vec<Labelled>,
    /// The files read.
    pub files: Vec<PathBuf>,
}

impl Dataset {
    fn new(name: &str, kind: Kind) -> Self {
        Self {
            name: name.to_string(),
            kind,
            candidates: Vec::new(),
            pairs: Vec::new(),
            prompts: Vec::new(),
            labelled: Vec::new(),
            files: Vec::new(),
        }
    }

    fn push(&mut self, candidate: Candidate) -> usize {
        self.candidates.push(candidate);
        self.candidates.len() - 1
    }

    /// How many units (pairs, prompts or labelled examples) there are.
    pub fn units(&self) -> usize {
        match self.kind {
            Kind::Pairwise => self.pairs.len(),
            Kind::StyleMatrix => self.prompts.len(),
            Kind::Pointwise => self.labelled.len(),
        }
    }

    /// Keeps `limit` units spread evenly over the dataset (unit ⌊i·n/limit⌋ for i < limit), so every
    /// subset stays represented, and drops the candidates no kept unit uses.
    pub fn limit(&mut self, limit: usize) {
        let n = self.units();
        if limit >= n {
            return;
        }
        let keep: Vec<usize> = (0..limit).map(|i| i * n / limit).collect();
        match self.kind {
            Kind::Pairwise => self.pairs = keep.iter().map(|&i| self.pairs[i].clone()).collect(),
            Kind::StyleMatrix => {
                self.prompts = keep.iter().map(|&i| self.prompts[i].clone()).collect()
            }
            Kind::Pointwise => {
                self.labelled = keep.iter().map(|&i| self.labelled[i].clone()).collect()
            }
        }
        self.compact();
    }

    /// Renumbers candidates so only used ones remain.
    fn compact(&mut self) {
        let mut map = vec![usize::MAX; self.candidates.len()];
        let mut kept = Vec::new();
        let mut remap = |i: usize, kept: &mut Vec<Candidate>| {
            if map[i] == usize::MAX {
                map[i] = kept.len();
                kept.push(self.candidates[i].clone());
            }
            map[i]
        };
        for p in &mut self.pairs {
            p.chosen = remap(p.chosen, &mut kept);
            p.rejected = remap(p.rejected, &mut kept);
        }
        for p in &mut self.prompts {
            for i in p.chosen.iter_mut().chain(p.rejected.iter_mut()) {
                *i = remap(*i, &mut kept);
            }
        }
        for l in &mut self.labelled {
            l.candidate = remap(l.candidate, &mut kept);
        }
        self.candidates = kept;
    }
}

/// Reads the benchmark named by a `--bench` value: `rm-bench`, `judgebench` or `hh` (the slices
/// shipped under `data/`, or `<name>:<dir or file>` for other copies such as the full upstream
/// files), `wildfb:<test.jsonl or dir>`, `pairs:<file.jsonl>`.
pub fn load(spec: &str) -> Result<Dataset, BadInput> {
    let (name, path) = match spec.split_once(':') {
        Some((n, p)) => (n, Some(PathBuf::from(p))),
        None => (spec, None),
    };
    let shipped = |folder: &str| -> Result<PathBuf, BadInput> {
        match &path {
            Some(p) => Ok(p.clone()),
            None => Ok(data_dir()?.join(folder)),
        }
    };
    let needs_path = |what: &str| {
        path.clone()
            .ok_or_else(|| BadInput(format!("--bench {name} needs a file: `{name}:<{what}>`")))
    };
    let dataset = match name {
        "rm-bench" => rm_bench::load(&shipped("rm-bench")?)?,
        "judgebench" => judgebench::load(&shipped("judgebench")?)?,
        "hh" => hh::load(&shipped("hh-rlhf")?)?,
        "wildfb" => wildfb::load(&needs_path("test.jsonl")?)?,
        "pairs" => pairs::load(&needs_path("file.jsonl")?)?,
        other => {
            return Err(BadInput(format!(
            "unknown benchmark `{other}`: expected rm-bench, judgebench, hh, wildfb:<test.jsonl> \
                 or pairs:<file.jsonl>"
        )))
        }
    };
    if dataset.units() == 0 {
        return Err(BadInput(format!(
            "{}: no {} examples found",
            display_files(&dataset.files),
            dataset.name
        )));
    }
    Ok(dataset)
}

fn display_files(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A file's subset name: its name up to the first dot (`helpful-base.eval.jsonl.gz` → `helpful-base`).
fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split('.').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(s: &str) -> Candidate {
        Candidate {
            history: vec![],
            query: "q".into(),
            response: s.into(),
        }
    }

    #[test]
    fn limit_spreads_over_units_and_drops_unused_candidates() {
        let mut d = Dataset::new("pairs", Kind::Pairwise);
        for i in 0..10 {
            let c = d.push(cand(&format!("c{i}")));
            let r = d.push(cand(&format!("r{i}")));
            d.pairs.push(Pair {
                chosen: c,
                rejected: r,
                subset: format!("s{}", i / 5),
                source: "f".into(),
            });
        }
        d.limit(4);
        let kept: Vec<&str> = d
            .pairs
            .iter()
            .map(|p| d.candidates[p.chosen].response.as_str())
            .collect();
        assert_eq!(kept, vec!["c0", "c2", "c5", "c7"], "both subsets kept");
        assert_eq!(d.candidates.len(), 8);
        assert_eq!(d.candidates[d.pairs[3].rejected].response, "r7");
    }

    #[test]
    fn unknown_benchmarks_and_missing_paths_are_explained() {
        assert!(load("mmlu")
            .unwrap_err()
            .0
            .contains("unknown benchmark `mmlu`"));
        assert!(load("wildfb")
            .unwrap_err()
            .0
            .contains("wildfb:<test.jsonl>"));
    }

    #[test]
    fn subset_names_come_from_file_names() {
        assert_eq!(
            stem(Path::new("/x/helpful-base.eval.jsonl.gz")),
            "helpful-base"
        );
    }
}
