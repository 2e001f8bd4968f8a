//! Step `refusal`: refusal validation. A labelled (non-neutral) turn whose response is short and holds a
//! refusal phrase is adjudicated: `[[0]]` false refusal → rejection (1), `[[1]]` justified refusal → top
//! (5), `[[2]]` not a refusal → unchanged. The LLM adjudicates with `openai` and `cascade`, the
//! keyword-and-topic heuristic with `rules`. A failed or unparseable adjudication drops the turn
//! (counted): the reference turned those into label 1.
//!
//! Neutral turns are not adjudicated: they are dropped by the final filters whatever the verdict (as in
//! the reference, where refusal overrides never reach label 3), so asking about them would only cost.

use super::io::{AtomicWriter, JsonlReader};
use super::llm::{run_jobs, Job, Outcome};
use super::prompt::first_bracketed_digit;
use super::records::{LabelSource, LabelledTurn, RefusalVerdict};
use super::stats::StepStats;
use super::StepEnv;
use crate::error::Result;
use indicatif::ProgressBar;
use std::path::Path;
use std::sync::Arc;
use wildreward_types::FeedbackCategory;

/// Applies verdict `v` (0, 1 or 2) to `turn`.
pub fn apply_verdict(turn: &mut LabelledTurn, verdict: u8, source: LabelSource) {
    turn.refusal = Some(RefusalVerdict {
        verdict,
        source,
        original: turn.label,
    });
    match verdict {
        0 => turn.label = FeedbackCategory::Rejection,
        1 => turn.label = FeedbackCategory::Satisfaction,
        _ => {}
    }
}

/// Parses an adjudication: the first `[[d]]` with `d` in 0..=2.
pub fn parse_verdict(answer: &str) -> Option<u8> {
    first_bracketed_digit(answer).filter(|d| *d <= 2)
}

/// Runs the step from `input` to `output`.
pub fn run(
    env: &StepEnv<'_>,
    input: &Path,
    output: &Path,
    progress: &ProgressBar,
) -> Result<StepStats> {
    let mut stats = StepStats::default();
    let mut writer = AtomicWriter::create(output)?;
    let reader = JsonlReader::<LabelledTurn>::open(input)?;
    let max_chars = env.config.refusal.max_response_chars;
    let is_candidate = |t: &LabelledTurn| {
        t.label != FeedbackCategory::NeutralAmbiguity
            && env
                .rules
                .is_refusal_candidate(t.instance.response(), max_chars)
    };
    let mut verdicts = [0u64; 3];
    let mut candidates = 0u64;
    let mut finish = |turn: LabelledTurn, stats: &mut StepStats| -> Result<()> {
        if let Some(r) = &turn.refusal {
            verdicts[usize::from(r.verdict.min(2))] += 1;
        }
        stats.label(turn.label.value());
        writer.write_json(&turn)
    };
    if !env.annotator.uses_llm() {
        for turn in reader {
            let mut turn = turn?;
            stats.rows_in += 1;
            if is_candidate(&turn) {
                candidates += 1;
                let v = env
                    .rules
                    .adjudicate_refusal(turn.instance.query(), turn.instance.response());
                apply_verdict(&mut turn, v, LabelSource::Rules);
            }
            finish(turn, &mut stats)?;
            progress.inc(1);
        }
    } else {
        let llm = env.llm()?;
        let mut journal = env.journal()?;
        let jobs = reader.map(|turn| {
            turn.map(|turn| {
                let prompt = is_candidate(&turn).then(|| env.prompts.refusal(&turn.instance));
                candidates += u64::from(prompt.is_some());
                Job { item: turn, prompt }
            })
        });
        let mut unparseable = 0u64;
        let stats_ref = &mut stats;
        let sink = |mut turn: LabelledTurn, outcome: Option<Outcome>| {
            stats_ref.rows_in += 1;
            match outcome {
                None => {}
                Some(Outcome::Answer(text)) => match parse_verdict(&text) {
                    Some(v) => apply_verdict(&mut turn, v, LabelSource::Llm),
                    None => {
                        unparseable += 1;
                        stats_ref.drop("refusal_unparseable_answer");
                        return Ok(());
                    }
                },
                Some(Outcome::Failed(_)) => {
                    stats_ref.drop("refusal_api_failed");
                    return Ok(());
                }
            }
            finish(turn, stats_ref)
        };
        let mut api = llm.runtime.block_on(run_jobs(
            Arc::clone(&llm.client),
            &mut journal,
            llm.refusal_max_tokens,
            jobs,
            sink,
            progress,
        ))?;
        api.unparseable = unparseable;
        stats.api = Some(api);
    }
    stats.rows_out = writer.commit()?;
    stats.detail("candidates", candidates);
    stats.detail("false_refusals", verdicts[0]);
    stats.detail("justified_refusals", verdicts[1]);
    stats.detail("not_refusals", verdicts[2]);
    Ok(stats)
}
