//! Step `classify`: every instance's user reaction read into one of the five raw categories, by the
//! offline rules, the LLM, or both (`cascade`: the rules where they are confident, the LLM for the rest).
//! An LLM answer without a valid `[[1..5]]`, or a call that failed, drops the instance (counted); it is
//! never turned into a label.

use super::io::{AtomicWriter, JsonlReader};
use super::llm::{run_jobs, Job, Outcome};
use super::prompt::first_bracketed_digit;
use super::records::{LabelSource, LabelledTurn};
use super::stats::StepStats;
use super::{Annotator, StepEnv};
use crate::error::{Error, Result};
use indicatif::ProgressBar;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use wildreward_types::{FeedbackCategory, Instance};

fn labelled(instance: Instance, label: FeedbackCategory, source: LabelSource) -> LabelledTurn {
    LabelledTurn {
        instance,
        label,
        label_source: source,
        hindsight: None,
        refusal: None,
    }
}

/// Parses a classification answer: the first `[[d]]` with `d` in 1..=5.
pub fn parse_category(answer: &str) -> Option<FeedbackCategory> {
    first_bracketed_digit(answer).and_then(|d| FeedbackCategory::try_from(d).ok())
}

/// Runs the step from `input` (instances) to `output` (labelled turns).
pub fn run(
    env: &StepEnv<'_>,
    input: &Path,
    output: &Path,
    progress: &ProgressBar,
) -> Result<StepStats> {
    let mut stats = StepStats::default();
    let mut writer = AtomicWriter::create(output)?;
    let reader = JsonlReader::<Instance>::open(input)?;
    let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
    if env.annotator == Annotator::Rules {
        for instance in reader {
            let instance = instance?;
            stats.rows_in += 1;
            let verdict = env.rules.classify(&instance.user_feedback.content);
            *by_rule
                .entry(verdict.rule.unwrap_or("none (neutral)").to_string())
                .or_default() += 1;
            stats.label(verdict.category.value());
            writer.write_json(&labelled(instance, verdict.category, LabelSource::Rules))?;
            progress.inc(1);
        }
        stats.detail(
            "rules_matched",
            serde_json::to_value(&by_rule).unwrap_or_default(),
        );
    } else {
        let llm = env.llm()?;
        let cascade = env.annotator == Annotator::Cascade;
        let mut journal = env.journal()?;
        let mut calls_saved = 0u64;
        let mut unparseable = 0u64;
        let jobs = reader.map(|instance| {
            instance.map(|instance| {
                let verdict = cascade.then(|| env.rules.classify(&instance.user_feedback.content));
                match verdict {
                    Some(v) if v.confident => {
                        calls_saved += 1;
                        Job {
                            item: (instance, Some(v.category)),
                            prompt: None,
                        }
                    }
                    _ => Job {
                        prompt: Some(env.prompts.feedback(&instance)),
                        item: (instance, None),
                    },
                }
            })
        });
        let sink = |(instance, by_rules): (Instance, Option<FeedbackCategory>),
                    outcome: Option<Outcome>| {
            stats.rows_in += 1;
            let turn = match (by_rules, outcome) {
                (Some(label), None) => labelled(instance, label, LabelSource::Rules),
                (_, Some(Outcome::Answer(text))) => match parse_category(&text) {
                    Some(label) => labelled(instance, label, LabelSource::Llm),
                    None => {
                        unparseable += 1;
                        stats.drop("unparseable_answer");
                        return Ok(());
                    }
                },
                (_, Some(Outcome::Failed(_))) => {
                    stats.drop("api_failed");
                    return Ok(());
                }
                (None, None) => {
                    return Err(Error::Step {
                        path: input.to_path_buf(),
                        message: format!(
                            "internal error: {} got neither a rule nor an answer",
                            instance.id
                        ),
                    })
                }
            };
            stats.label(turn.label.value());
            *by_rule
                .entry(format!("{:?}", turn.label_source).to_lowercase())
                .or_default() += 1;
            writer.write_json(&turn)
        };
        let mut api = llm.runtime.block_on(run_jobs(
            Arc::clone(&llm.client),
            &mut journal,
            llm.feedback_max_tokens,
            jobs,
            sink,
            progress,
        ))?;
        api.unparseable = unparseable;
        stats.api = Some(api);
        if cascade {
            stats.detail("calls_saved_by_rules", calls_saved);
        }
        stats.detail(
            "labelled_by",
            serde_json::to_value(&by_rule).unwrap_or_default(),
        );
    }
    stats.rows_out = writer.commit()?;
    Ok(stats)
}
