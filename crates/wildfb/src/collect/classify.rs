//! Step `classify`: every instance's user reaction read into one of the five raw categories, by the
//! offline rules (`rules`), the cue rules (`cues`, which abstain where the evidence is weak), the LLM, or
//! both (`cascade`: the cues where they decide, the LLM for their abstentions).
//! An LLM answer without a valid `[[1..5]]`, or a call that failed, drops the instance (counted); it is
//! never turned into a label.

use super::io::{AtomicWriter, JsonlReader};
use super::llm::{run_jobs, Job, Outcome};
use super::prompt::first_bracketed_digit;
use super::records::{LabelSource, LabelledTurn};
use super::stats::StepStats;
use super::users::KeyedInstance;
use super::{Annotator, StepEnv};
use crate::error::{Error, Result};
use indicatif::ProgressBar;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use wildreward_types::{FeedbackCategory, Instance};

fn labelled(
    KeyedInstance { instance, user }: KeyedInstance,
    label: FeedbackCategory,
    source: LabelSource,
) -> LabelledTurn {
    LabelledTurn {
        instance,
        user,
        label,
        label_source: source,
        rule: None,
        abstained: false,
        hindsight: None,
        refusal: None,
    }
}

/// What an offline annotator says of one turn.
struct OfflineLabel {
    label: FeedbackCategory,
    source: LabelSource,
    rule: Option<String>,
    abstained: bool,
}

impl OfflineLabel {
    /// `rules` keeps each rule's category (weak or not); `cues` keeps only its decisions and writes an
    /// abstention as neutral, marked.
    fn of(env: &StepEnv<'_>, instance: &Instance) -> Self {
        let feedback = &instance.user_feedback.content;
        let (verdict, source) = match env.annotator {
            Annotator::Rules => (env.rules.classify(feedback), LabelSource::Rules),
            _ => (
                env.cues.classify_turn(feedback, Some(instance.response())),
                LabelSource::Cues,
            ),
        };
        let abstained = source == LabelSource::Cues && !verdict.confident;
        Self {
            label: if abstained {
                FeedbackCategory::NeutralAmbiguity
            } else {
                verdict.category
            },
            source,
            rule: verdict.rule.map(str::to_string),
            abstained,
        }
    }

    fn into_turn(self, instance: KeyedInstance) -> LabelledTurn {
        LabelledTurn {
            rule: self.rule,
            abstained: self.abstained,
            ..labelled(instance, self.label, self.source)
        }
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
    let reader = JsonlReader::<KeyedInstance>::open(input)?;
    let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
    if !env.annotator.uses_llm() {
        let mut abstained = 0u64;
        for instance in reader {
            let instance = instance?;
            let turn = OfflineLabel::of(env, &instance.instance).into_turn(instance);
            stats.rows_in += 1;
            *by_rule
                .entry(turn.rule.as_deref().unwrap_or("none (neutral)").to_string())
                .or_default() += 1;
            abstained += u64::from(turn.abstained);
            stats.label(turn.label.value());
            writer.write_json(&turn)?;
            progress.inc(1);
        }
        stats.detail(
            "rules_matched",
            serde_json::to_value(&by_rule).unwrap_or_default(),
        );
        if env.annotator == Annotator::Cues {
            stats.detail("abstained", abstained);
        }
    } else {
        let llm = env.llm()?;
        let cascade = env.annotator == Annotator::Cascade;
        let mut journal = env.journal()?;
        let mut calls_saved = 0u64;
        let mut unparseable = 0u64;
        let jobs = reader.map(|instance| {
            instance.map(|instance| {
                let decided = if cascade {
                    Some(OfflineLabel::of(env, &instance.instance)).filter(|l| !l.abstained)
                } else {
                    None
                };
                match decided {
                    Some(turn) => {
                        calls_saved += 1;
                        Job {
                            item: (instance, Some(turn)),
                            prompt: None,
                        }
                    }
                    None => Job {
                        prompt: Some(env.prompts.feedback(&instance.instance)),
                        item: (instance, None),
                    },
                }
            })
        });
        let sink = |(instance, by_cues): (KeyedInstance, Option<OfflineLabel>),
                    outcome: Option<Outcome>| {
            stats.rows_in += 1;
            let turn = match (by_cues, outcome) {
                (Some(decided), None) => decided.into_turn(instance),
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
                            instance.instance.id
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
            stats.detail("calls_saved_by_cues", calls_saved);
        }
        stats.detail(
            "labelled_by",
            serde_json::to_value(&by_rule).unwrap_or_default(),
        );
    }
    stats.rows_out = writer.commit()?;
    Ok(stats)
}
