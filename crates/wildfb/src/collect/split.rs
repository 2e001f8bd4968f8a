//! Step `split`: the final filters, the training-label remap (1..5 → 1..4), the RM `text` from the shared
//! template, dedup by id, and a **seeded** train/test split **by conversation**: whole conversations go
//! to test (in an order fixed by the seed) until the test count is reached, so no conversation
//! straddles the two files. Both files are written in a seeded shuffled order. Each record carries its
//! user (`user`, `user_key`), and the step's `users` section in `stats.json` describes them
//! ([`super::users::UserStats`]).
//!
//! Two passes over the input: the first filters and remembers where each kept record is; the second
//! reads them back in output order, so memory holds offsets, not records.

use super::config::SplitConfig;
use super::filters::Filters;
use super::io::AtomicWriter;
use super::records::{conversation_of, LabelledTurn};
use super::stats::StepStats;
use super::users::{LabelledRecord, UserCounter, UserKey, UserTag, PART_TEST, PART_TRAIN};
use crate::error::{Error, Result};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use wildreward_types::{build_text, EmptyHistory, TrainingLabel, WildFbRecord};

/// The released record for a labelled turn (`None` for a neutral one, which has no training label).
pub fn to_record(turn: &LabelledTurn) -> Option<WildFbRecord> {
    let label = turn.label.training_label()?;
    let i = &turn.instance;
    Some(WildFbRecord {
        id: i.id.clone(),
        text: build_text(&i.history, i.query(), i.response(), EmptyHistory::Training),
        history: i.history.clone(),
        messages: i.messages.clone(),
        user_feedback: i.user_feedback.clone(),
        label,
    })
}

fn keyed(seed: u64, domain: &str, value: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(domain.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    h.finalize().into()
}

struct Kept {
    conversation: String,
    /// Index into the step's list of distinct users.
    user: usize,
    order: [u8; 32],
    offset: u64,
    len: usize,
    label: TrainingLabel,
}

/// Chooses the test conversations: in seeded order, each whole conversation whose records still fit
/// in `target`.
pub fn choose_test_conversations(
    sizes: &BTreeMap<&str, usize>,
    target: usize,
    seed: u64,
) -> HashSet<String> {
    let mut order: Vec<(&str, usize)> = sizes.iter().map(|(c, n)| (*c, *n)).collect();
    order.sort_by_key(|(c, _)| keyed(seed, "conversation", c));
    let mut chosen = HashSet::new();
    let mut taken = 0;
    for (c, n) in order {
        if taken == target {
            break;
        }
        if taken + n <= target {
            taken += n;
            chosen.insert(c.to_string());
        }
    }
    chosen
}

/// Runs the step from `input` into `train` and `test`.
pub fn run(
    input: &Path,
    train: &Path,
    test: &Path,
    filters: &Filters,
    cfg: &SplitConfig,
    progress: &ProgressBar,
) -> Result<StepStats> {
    let mut stats = StepStats::default();
    let mut kept: Vec<Kept> = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    let mut users: Vec<(UserKey, String)> = Vec::new();
    let mut user_index: HashMap<(UserKey, String), usize> = HashMap::new();
    let file = File::open(input).map_err(|e| Error::io(input, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let (mut offset, mut line_no) = (0u64, 0usize);
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(input, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let start = offset;
        offset += n as u64;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let turn: LabelledTurn = serde_json::from_slice(&line).map_err(|e| Error::Json {
            path: input.to_path_buf(),
            line: line_no,
            column: e.column(),
            message: e.to_string(),
        })?;
        stats.rows_in += 1;
        progress.inc(1);
        if let Some(reason) = filters.reject(&turn) {
            stats.drop(reason);
            continue;
        }
        let Some(label) = turn.label.training_label() else {
            stats.drop("neutral");
            continue;
        };
        if !ids.insert(turn.instance.id.clone()) {
            stats.drop("duplicate_id");
            continue;
        }
        let (user, key) = turn.user.resolve_at(&turn.instance.id, input, line_no)?;
        let identity = (key, user.to_string());
        let user = match user_index.get(&identity) {
            Some(&i) => i,
            None => {
                users.push(identity.clone());
                user_index.insert(identity, users.len() - 1);
                users.len() - 1
            }
        };
        kept.push(Kept {
            user,
            conversation: conversation_of(&turn.instance.id).to_string(),
            order: keyed(cfg.seed, "record", &turn.instance.id),
            offset: start,
            len: n,
            label,
        });
    }
    drop(ids);
    drop(user_index);

    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &kept {
        *sizes.entry(k.conversation.as_str()).or_default() += 1;
    }
    let cap = (kept.len() as f64 * cfg.max_test_fraction).floor() as usize;
    let target = cfg.test_count.min(cap);
    let test_conversations = choose_test_conversations(&sizes, target, cfg.seed);
    let n_conversations = sizes.len();
    drop(sizes);
    kept.sort_by_key(|k| k.order);

    let mut train_out = AtomicWriter::create(train)?;
    let mut test_out = AtomicWriter::create(test)?;
    let mut histograms: HashMap<bool, BTreeMap<u8, u64>> = HashMap::new();
    let mut counter = UserCounter::default();
    let mut file = File::open(input).map_err(|e| Error::io(input, e))?;
    let mut buf = Vec::new();
    for k in &kept {
        buf.resize(k.len, 0);
        file.seek(SeekFrom::Start(k.offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| Error::io(input, e))?;
        let turn: LabelledTurn = serde_json::from_slice(&buf).map_err(|e| Error::Format {
            path: input.to_path_buf(),
            message: format!("changed while it was being split (byte {}): {e}", k.offset),
        })?;
        let record = to_record(&turn).ok_or_else(|| Error::Format {
            path: input.to_path_buf(),
            message: format!("{} has no training label", turn.instance.id),
        })?;
        let (key, user) = &users[k.user];
        let record = LabelledRecord {
            record,
            user: UserTag::resolved(user, *key),
        };
        let is_test = test_conversations.contains(&k.conversation);
        let part = if is_test { PART_TEST } else { PART_TRAIN };
        counter.add_in(user, *key, k.label, part);
        *histograms
            .entry(is_test)
            .or_default()
            .entry(k.label.value())
            .or_default() += 1;
        stats.label(k.label.value());
        if is_test {
            test_out.write_json(&record)?;
        } else {
            train_out.write_json(&record)?;
        }
    }
    let test_rows = test_out.commit()?;
    let train_rows = train_out.commit()?;
    stats.rows_out = train_rows + test_rows;
    stats.detail("train", train_rows);
    stats.detail("test", test_rows);
    stats.detail("test_count_requested", cfg.test_count as u64);
    stats.detail("test_count_cap", cap as u64);
    stats.detail("test_conversations", test_conversations.len() as u64);
    stats.detail("conversations", n_conversations as u64);
    stats.detail("seed", cfg.seed);
    stats.users = Some(counter.finish());
    for (is_test, name) in [(false, "train_labels"), (true, "test_labels")] {
        let h = histograms.remove(&is_test).unwrap_or_default();
        stats.detail(name, serde_json::to_value(&h).unwrap_or_default());
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_conversations_are_whole_and_fill_the_target_when_they_can() {
        let sizes: BTreeMap<&str, usize> = [("a", 3), ("b", 1), ("c", 2), ("d", 5), ("e", 1)]
            .into_iter()
            .collect();
        let total: usize = sizes.values().sum();
        for seed in 0..20 {
            let chosen = choose_test_conversations(&sizes, 4, seed);
            let taken: usize = chosen.iter().map(|c| sizes[c.as_str()]).sum();
            assert!((3..=4).contains(&taken), "seed {seed}: {taken}");
            assert_eq!(chosen, choose_test_conversations(&sizes, 4, seed));
        }
        assert!(choose_test_conversations(&sizes, 0, 1).is_empty());
        let all = choose_test_conversations(&sizes, total, 1);
        assert_eq!(all.len(), sizes.len());
    }
}
