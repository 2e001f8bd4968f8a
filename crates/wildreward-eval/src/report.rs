//! From a dataset and its scores to the numbers of `report.json`: accuracy with a bootstrap
//! interval, per subset and source, RM-Bench's easy / normal / hard, the threshold curve, ROC-AUC
//! across prompts, and for labelled data ECE, a reliability diagram and a confusion matrix.

use crate::bench::{Dataset, Kind};
use crate::metrics::{
    self, bootstrap_ci, confusion, ece, pooled, prompt_outcomes, reliability, roc_auc,
    threshold_curve, Pooling, ReliabilityBin, StyleMatrix, ThresholdPoint,
};
use crate::scoring::{Score, ScoringStats};
use serde::Serialize;
use std::collections::BTreeMap;

/// Bootstrap resamples for every interval.
pub const RESAMPLES: usize = 1000;
/// Seed of every bootstrap.
pub const SEED: u64 = 8;
/// Step and end of the threshold curve (the paper's plot: 0 to 1 by 0.02).
pub const CURVE_STEP: f64 = 0.02;
/// See [`CURVE_STEP`].
pub const CURVE_MAX: f64 = 1.0;
/// Bins of the reliability diagram.
pub const BINS: usize = 10;

/// Accuracy of a group of units.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupAccuracy {
    /// The share of correct units (ties half).
    pub accuracy: f64,
    /// 95% bootstrap interval.
    pub ci95: [f64; 2],
    /// Units.
    pub n: usize,
}

/// RM-Bench scores of a domain or overall.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StyleScores {
    /// Chosen more stylish than rejected.
    pub easy: f64,
    /// Same style.
    pub normal: f64,
    /// Chosen plainer than rejected.
    pub hard: f64,
    /// Mean of the three (= mean of the 9 cells).
    pub average: f64,
    /// Prompts.
    pub prompts: usize,
    /// The 3×3 matrix (rows: chosen style; columns: rejected style); absent for the overall row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix: Option<[[f64; 3]; 3]>,
}

/// RM-Bench's section of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RmBenchReport {
    /// Per domain.
    pub domains: BTreeMap<String, StyleScores>,
    /// Mean of the domains (upstream's overall is the mean of chat, code, math and safety; a missing
    /// domain makes this differ from it).
    pub overall: StyleScores,
}

/// Calibration on labelled data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// ECE over 10 bins of every per-threshold probability P(y > k) against whether y > k.
    pub ece: f64,
    /// The same per threshold k = 1..K-1.
    pub ece_per_threshold: Vec<Option<f64>>,
    /// The reliability diagram's bins (all thresholds pooled).
    pub bins: Vec<ReliabilityBin>,
    /// `confusion[actual-1][predicted-1]`, predicted = the expected level rounded.
    pub confusion: Vec<Vec<usize>>,
    /// Mean absolute error of the expected level.
    pub mae: f64,
}

/// Everything `report.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The benchmark (`rm-bench`, `judgebench`, `hh`, `wildfb`, `pairs`).
    pub bench: String,
    /// The model path or endpoint.
    pub scorer: String,
    /// Files read.
    pub files: Vec<String>,
    /// Token limit of a scored text (local models).
    pub max_length: usize,
    /// What `accuracy` measures: `pairwise` (ties half), `rm_bench_average` (mean of domain
    /// averages), `level` (rounded expected level = label) or `roc_auc` (scalar head on labelled
    /// data).
    pub accuracy_kind: String,
    /// The headline number.
    pub accuracy: f64,
    /// Its 95% bootstrap interval.
    pub accuracy_ci95: [f64; 2],
    /// Mean of the subsets' accuracies (JudgeBench's macro-average; the headline is the micro one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macro_accuracy: Option<f64>,
    /// Units evaluated.
    pub units: usize,
    /// Units dropped because a response could not be scored.
    pub dropped: usize,
    /// Accuracy per subset (HH subset, JudgeBench category, RM-Bench domain, WildFB level).
    pub subsets: BTreeMap<String, GroupAccuracy>,
    /// Accuracy per source file or response model, when there are several.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, GroupAccuracy>,
    /// RM-Bench's easy / normal / hard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rm_bench: Option<RmBenchReport>,
    /// Accuracy and coverage of the pairs with |Δr| ≥ t.
    pub threshold_curve: Vec<ThresholdPoint>,
    /// ROC-AUC of raw rewards pooled across prompts: good (chosen, or level ≥ 3) vs bad.
    pub consistency_auc: Option<f64>,
    /// Calibration on labelled data with level probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Scoring cost.
    pub scoring: ScoringStats,
    /// PNG files written beside the report.
    pub plots: Vec<String>,
    /// Caveats.
    pub notes: Vec<String>,
}

fn group(values: &[f64]) -> Option<GroupAccuracy> {
    let groups = [values.to_vec()];
    let accuracy = pooled(&groups, Pooling::Micro)?;
    let (lo, hi) = bootstrap_ci(&groups, Pooling::Micro, RESAMPLES, SEED)?;
    Some(GroupAccuracy {
        accuracy,
        ci95: [lo, hi],
        n: values.len(),
    })
}

fn by_key(units: &[(String, f64)]) -> BTreeMap<String, Vec<f64>> {
    let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (k, v) in units {
        m.entry(k.clone()).or_default().push(*v);
    }
    m
}

/// The parts of a report computed from the scores (the caller fills in who scored and the plots).
pub fn compute(
    dataset: &Dataset,
    scores: &[Option<Score>],
    base: Report,
) -> anyhow::Result<Report> {
    let reward = |i: usize| scores[i].as_ref().map(|s| f64::from(s.reward));
    let mut r = base;
    r.bench = dataset.name.clone();
    r.files = dataset
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    match dataset.kind {
        Kind::Pairwise => {
            let mut units = Vec::new();
            let mut deltas = Vec::new();
            let mut auc = Vec::new();
            for p in &dataset.pairs {
                let (Some(c), Some(j)) = (reward(p.chosen), reward(p.rejected)) else {
                    r.dropped += 1;
                    continue;
                };
                units.push((
                    p.subset.clone(),
                    p.source.clone(),
                    metrics::pair_outcome(c, j),
                ));
                deltas.push(c - j);
                auc.push((c, true));
                auc.push((j, false));
            }
            let subsets = by_key(&units.iter().map(|u| (u.0.clone(), u.2)).collect::<Vec<_>>());
            let sources = by_key(&units.iter().map(|u| (u.1.clone(), u.2)).collect::<Vec<_>>());
            let groups: Vec<Vec<f64>> = subsets.values().cloned().collect();
            r.accuracy_kind = "pairwise".into();
            r.units = units.len();
            let (acc, ci) = headline(&groups, Pooling::Micro)?;
            r.accuracy = acc;
            r.accuracy_ci95 = ci;
            if groups.len() > 1 {
                r.macro_accuracy = pooled(&groups, Pooling::Macro);
            }
            r.subsets = subsets
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), group(v)?)))
                .collect();
            if sources.len() > 1 && sources != subsets {
                r.sources = sources
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), group(v)?)))
                    .collect();
            }
            r.threshold_curve = threshold_curve(&deltas, CURVE_STEP, CURVE_MAX);
            r.consistency_auc = roc_auc(&auc);
        }
        Kind::StyleMatrix => {
            let mut per_domain: BTreeMap<String, Vec<[[f64; 3]; 3]>> = BTreeMap::new();
            let mut deltas = Vec::new();
            let mut auc = Vec::new();
            for p in &dataset.prompts {
                let chosen: Option<Vec<f64>> = p.chosen.iter().map(|&i| reward(i)).collect();
                let rejected: Option<Vec<f64>> = p.rejected.iter().map(|&i| reward(i)).collect();
                let (Some(c), Some(j)) = (chosen, rejected) else {
                    r.dropped += 1;
                    continue;
                };
                let c = [c[0], c[1], c[2]];
                let j = [j[0], j[1], j[2]];
                for a in c {
                    auc.push((a, true));
                    for b in j {
                        deltas.push(a - b);
                    }
                }
                auc.extend(j.iter().map(|&b| (b, false)));
                per_domain
                    .entry(p.domain.clone())
                    .or_default()
                    .push(prompt_outcomes(c, j));
            }
            let mut domains = BTreeMap::new();
            let mut groups = Vec::new();
            for (name, prompts) in &per_domain {
                let m = StyleMatrix::of(prompts);
                domains.insert(name.clone(), style_scores(&m, true));
                let per_prompt: Vec<f64> = prompts
                    .iter()
                    .map(|p| p.iter().flatten().sum::<f64>() / 9.0)
                    .collect();
                if let Some(g) = group(&per_prompt) {
                    r.subsets.insert(name.clone(), g);
                }
                groups.push(per_prompt);
            }
            let mean_of = |f: fn(&StyleScores) -> f64| {
                domains.values().map(f).sum::<f64>() / domains.len().max(1) as f64
            };
            let overall = StyleScores {
                easy: mean_of(|s| s.easy),
                normal: mean_of(|s| s.normal),
                hard: mean_of(|s| s.hard),
                average: mean_of(|s| s.average),
                prompts: domains.values().map(|s| s.prompts).sum(),
                matrix: None,
            };
            r.accuracy_kind = "rm_bench_average".into();
            r.units = overall.prompts;
            let (acc, ci) = headline(&groups, Pooling::Macro)?;
            r.accuracy = acc;
            r.accuracy_ci95 = ci;
            r.rm_bench = Some(RmBenchReport { domains, overall });
            r.threshold_curve = threshold_curve(&deltas, CURVE_STEP, CURVE_MAX);
            r.consistency_auc = roc_auc(&auc);
            if !per_domain.contains_key("math") {
                r.notes.push(
                    "RM-Bench's math domain is not in these files: the overall is the mean of the \
                     domains present, not upstream's four-domain mean"
                        .into(),
                );
            }
        }
        Kind::Pointwise => pointwise(dataset, scores, &mut r)?,
    }
    Ok(r)
}

fn headline(groups: &[Vec<f64>], pooling: Pooling) -> anyhow::Result<(f64, [f64; 2])> {
    let acc = pooled(groups, pooling).ok_or_else(|| {
        anyhow::anyhow!("no unit could be evaluated (every response failed to score)")
    })?;
    let (lo, hi) = bootstrap_ci(groups, pooling, RESAMPLES, SEED).unwrap_or((acc, acc));
    Ok((acc, [lo, hi]))
}

fn style_scores(m: &StyleMatrix, with_matrix: bool) -> StyleScores {
    StyleScores {
        easy: m.easy(),
        normal: m.normal(),
        hard: m.hard(),
        average: m.average(),
        prompts: m.prompts,
        matrix: with_matrix.then_some(m.cells),
    }
}

/// Labelled single responses: level accuracy, calibration, consistency.
fn pointwise(dataset: &Dataset, scores: &[Option<Score>], r: &mut Report) -> anyhow::Result<()> {
    let scored: Vec<(u8, &Score)> = dataset
        .labelled
        .iter()
        .filter_map(|l| Some((l.label, scores[l.candidate].as_ref()?)))
        .collect();
    r.dropped = dataset.labelled.len() - scored.len();
    r.units = scored.len();
    let auc: Vec<(f64, bool)> = scored
        .iter()
        .map(|(label, s)| (f64::from(s.reward), *label >= 3))
        .collect();
    r.consistency_auc = roc_auc(&auc);
    let levels = scored.iter().map(|(_, s)| s.probs.len()).max().unwrap_or(0);
    if levels < 2 {
        // A scalar head: its reward is not on the 1..K scale, so only the ordering can be judged.
        r.accuracy_kind = "roc_auc".into();
        r.accuracy = r.consistency_auc.unwrap_or(f64::NAN);
        r.accuracy_ci95 = [r.accuracy, r.accuracy];
        r.notes.push(
            "no level probabilities (scalar head or /get_reward): accuracy is the ROC-AUC of good \
             (level ≥ 3) vs bad responses, and there is no calibration"
                .into(),
        );
        if !r.accuracy.is_finite() {
            anyhow::bail!("labelled data needs both good (≥ 3) and bad levels for a scalar head");
        }
        return Ok(());
    }
    let mut units = Vec::new();
    let mut pairs = Vec::new();
    let mut predictions = Vec::new();
    let mut per_threshold: Vec<Vec<(f64, bool)>> = vec![Vec::new(); levels - 1];
    let mut abs_err = 0.0;
    for (label, s) in &scored {
        let expected: f64 = s
            .probs
            .iter()
            .enumerate()
            .map(|(i, p)| (i + 1) as f64 * f64::from(*p))
            .sum();
        let predicted = expected.round().clamp(1.0, levels as f64) as u8;
        units.push((
            format!("level {label}"),
            if predicted == *label { 1.0 } else { 0.0 },
        ));
        pairs.push((*label, predicted));
        abs_err += (expected - f64::from(*label)).abs();
        // P(y > k) is the sum of the level probabilities above k.
        for (k, bucket) in per_threshold.iter_mut().enumerate() {
            let p: f64 = s.probs[k + 1..].iter().map(|&p| f64::from(p)).sum();
            let event = usize::from(*label) > k + 1;
            bucket.push((p.clamp(0.0, 1.0), event));
            predictions.push((p.clamp(0.0, 1.0), event));
        }
    }
    let all: Vec<f64> = units.iter().map(|u| u.1).collect();
    let (acc, ci) = headline(&[all], Pooling::Micro)?;
    r.accuracy_kind = "level".into();
    r.accuracy = acc;
    r.accuracy_ci95 = ci;
    r.subsets = by_key(&units)
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), group(v)?)))
        .collect();
    let bins = reliability(&predictions, BINS);
    r.calibration = Some(Calibration {
        ece: ece(&bins).unwrap_or(f64::NAN),
        ece_per_threshold: per_threshold
            .iter()
            .map(|b| ece(&reliability(b, BINS)))
            .collect(),
        bins,
        confusion: confusion(&pairs, levels),
        mae: abs_err / scored.len().max(1) as f64,
    });
    Ok(())
}
