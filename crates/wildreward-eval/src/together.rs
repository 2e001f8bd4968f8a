//! Several local models on one benchmark in one pass: the models an experiment compares are
//! copies of one backbone whose lower blocks stayed frozen, so the blocks they share run once per
//! batch ([`wildreward_model::SharedScorers`]) and each model runs only its own. Each model's
//! scores land in its own cache (and memory), so the per-model reports that follow read them as if
//! each model had been scored alone — which is what their values are.

use crate::bench::Candidate;
use crate::cache::Score;
use crate::scoring::{progress_bar, ScoreSource, Store, LOCAL_CHUNK};
use std::time::Instant;
use wildreward_model::{Scorer, SharedScorers};
use wildreward_types::EmptyHistory;

/// Scores every candidate some source lacks with all of `sources` together (local models only);
/// returns a note for the reports (how many blocks were shared, what it cost), or `None` when
/// every score was already known.
pub fn score_together(
    sources: &mut [ScoreSource],
    candidates: &[Candidate],
) -> anyhow::Result<Option<String>> {
    let texts: Vec<String> = candidates.iter().map(Candidate::text).collect();
    let mut seen = std::collections::HashSet::new();
    let mut todo: Vec<usize> = (0..texts.len())
        .filter(|&i| seen.insert(texts[i].as_str()))
        .filter(|&i| sources.iter().any(|s| !s.knows(&texts[i])))
        .collect();
    if todo.is_empty() {
        return Ok(None);
    }
    todo.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
    for source in sources.iter_mut() {
        source.local_scorer()?;
    }
    let start = Instant::now();
    let mut stores: Vec<_> = sources.iter_mut().map(ScoreSource::take_store).collect();
    let result = fill(sources, &mut stores, candidates, &texts, &todo);
    for (source, store) in sources.iter_mut().zip(stores) {
        source.put_store(store);
    }
    let depth = result?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Some(format!(
        "scored together with {} model(s) sharing their first {depth} blocks: {} texts in {seconds:.0} s",
        sources.len(),
        todo.len()
    )))
}

/// The scoring loop of [`score_together`], writing into the stores taken out of the sources;
/// returns the shared depth.
fn fill(
    sources: &[ScoreSource],
    stores: &mut [Store],
    candidates: &[Candidate],
    texts: &[String],
    todo: &[usize],
) -> anyhow::Result<usize> {
    let scorers: Vec<&Scorer> = sources
        .iter()
        .map(|s| {
            s.loaded_scorer()
                .ok_or_else(|| anyhow::anyhow!("{}: not a local model", s.description))
        })
        .collect::<anyhow::Result<_>>()?;
    let group = SharedScorers::new(scorers)?;
    eprintln!(
        "wildreward eval: {} models share their first {} blocks; {} texts to score",
        sources.len(),
        group.depth(),
        todo.len()
    );
    let bar = progress_bar(todo.len());
    for chunk in todo.chunks(LOCAL_CHUNK) {
        let turns: Vec<_> = chunk.iter().map(|&i| candidates[i].turn()).collect();
        let scored = group.score_turns(&turns, EmptyHistory::Training)?;
        for ((cache, known), model) in stores.iter_mut().zip(scored) {
            for (&i, s) in chunk.iter().zip(model) {
                let score = Score::from(s);
                if let Some(cache) = cache.as_mut().filter(|c| c.get(&texts[i]).is_none()) {
                    cache.put(&texts[i], &score)?;
                }
                known.insert(texts[i].clone(), score);
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(group.depth())
}
