//! The two label spaces of WildFB: the annotator's 5 raw feedback categories and the 4 training levels.
//!
//! Raw 3 (neutral) has no training level; the rest map {1→1, 2→2, 4→3, 5→4}
//! (`08.split.py`'s `label_map` in the reference).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The annotator's raw category for a user's reaction (the `[[n]]` it answers, 1..=5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum FeedbackCategory {
    /// 1: the user rejects the answer outright.
    Rejection = 1,
    /// 2: the user points at an error or corrects the answer.
    ErrorCorrection = 2,
    /// 3: nothing can be read from the reaction.
    NeutralAmbiguity = 3,
    /// 4: the user builds on the answer.
    PositiveEngagement = 4,
    /// 5: the user says explicitly that they are satisfied.
    Satisfaction = 5,
}

impl FeedbackCategory {
    /// Every category, in order.
    pub const ALL: [FeedbackCategory; 5] = [
        FeedbackCategory::Rejection,
        FeedbackCategory::ErrorCorrection,
        FeedbackCategory::NeutralAmbiguity,
        FeedbackCategory::PositiveEngagement,
        FeedbackCategory::Satisfaction,
    ];

    /// The number the annotator writes (`[[n]]`).
    pub fn value(self) -> u8 {
        self as u8
    }

    /// The paper's name for the category.
    pub fn name(self) -> &'static str {
        match self {
            FeedbackCategory::Rejection => "Rejection",
            FeedbackCategory::ErrorCorrection => "Error Correction",
            FeedbackCategory::NeutralAmbiguity => "Neutral Ambiguity",
            FeedbackCategory::PositiveEngagement => "Positive Engagement",
            FeedbackCategory::Satisfaction => "Satisfaction",
        }
    }

    /// The training level this category trains as; `None` for neutral, which is not trained on.
    pub fn training_label(self) -> Option<TrainingLabel> {
        match self {
            FeedbackCategory::Rejection => Some(TrainingLabel(1)),
            FeedbackCategory::ErrorCorrection => Some(TrainingLabel(2)),
            FeedbackCategory::NeutralAmbiguity => None,
            FeedbackCategory::PositiveEngagement => Some(TrainingLabel(3)),
            FeedbackCategory::Satisfaction => Some(TrainingLabel(4)),
        }
    }

    /// True for the categories hindsight mining may propagate backwards (4 and 5).
    pub fn is_positive(self) -> bool {
        matches!(
            self,
            FeedbackCategory::PositiveEngagement | FeedbackCategory::Satisfaction
        )
    }
}

impl TryFrom<u8> for FeedbackCategory {
    type Error = crate::Error;

    fn try_from(v: u8) -> Result<Self, Self::Error> {
        match v {
            1 => Ok(FeedbackCategory::Rejection),
            2 => Ok(FeedbackCategory::ErrorCorrection),
            3 => Ok(FeedbackCategory::NeutralAmbiguity),
            4 => Ok(FeedbackCategory::PositiveEngagement),
            5 => Ok(FeedbackCategory::Satisfaction),
            other => Err(crate::Error::LabelOutOfRange {
                what: "feedback category",
                value: i64::from(other),
                min: 1,
                max: 5,
            }),
        }
    }
}

impl From<FeedbackCategory> for u8 {
    fn from(c: FeedbackCategory) -> u8 {
        c.value()
    }
}

impl fmt::Display for FeedbackCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.value(), self.name())
    }
}

/// A training level, 1..=[`TrainingLabel::NUM_LEVELS`]: what the reward model learns (`label` in WildFB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct TrainingLabel(u8);

impl TrainingLabel {
    /// K, the number of ordinal levels WildFB trains on (the model has K-1 logits).
    pub const NUM_LEVELS: usize = 4;

    /// The level, 1..=4.
    pub fn value(self) -> u8 {
        self.0
    }

    /// The WildFB card's name for the level.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "CLEARLY NEGATIVE",
            2 => "CORRECTION",
            3 => "POSITIVE ENGAGEMENT",
            _ => "CLEAR SATISFACTION",
        }
    }

    /// The ordinal targets `[y>1, y>2, …, y>K-1]` for this level (`num_thresholds` = K-1).
    pub fn threshold_targets(self, num_thresholds: usize) -> Vec<f32> {
        (1..=num_thresholds)
            .map(|k| if usize::from(self.0) > k { 1.0 } else { 0.0 })
            .collect()
    }
}

impl TryFrom<i64> for TrainingLabel {
    type Error = crate::Error;

    fn try_from(v: i64) -> Result<Self, Self::Error> {
        if (1..=TrainingLabel::NUM_LEVELS as i64).contains(&v) {
            Ok(TrainingLabel(v as u8))
        } else {
            Err(crate::Error::LabelOutOfRange {
                what: "training label",
                value: v,
                min: 1,
                max: TrainingLabel::NUM_LEVELS as i64,
            })
        }
    }
}

impl From<TrainingLabel> for u8 {
    fn from(l: TrainingLabel) -> u8 {
        l.0
    }
}

impl fmt::Display for TrainingLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_to_training_mapping_is_the_reference_label_map() {
        let mapped: Vec<Option<u8>> = FeedbackCategory::ALL
            .iter()
            .map(|c| c.training_label().map(TrainingLabel::value))
            .collect();
        assert_eq!(mapped, vec![Some(1), Some(2), None, Some(3), Some(4)]);
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        assert!(FeedbackCategory::try_from(0).is_err());
        assert!(FeedbackCategory::try_from(6).is_err());
        assert!(TrainingLabel::try_from(0).is_err());
        assert!(TrainingLabel::try_from(5).is_err());
        assert!(TrainingLabel::try_from(-1).is_err());
        let err = serde_json::from_str::<TrainingLabel>("7").unwrap_err();
        assert!(err.to_string().contains("training label 7"), "{err}");
    }

    #[test]
    fn serde_round_trip_as_integers() {
        let c: FeedbackCategory = serde_json::from_str("4").unwrap();
        assert_eq!(c, FeedbackCategory::PositiveEngagement);
        assert_eq!(serde_json::to_string(&c).unwrap(), "4");
        let l: TrainingLabel = serde_json::from_str("3").unwrap();
        assert_eq!(serde_json::to_string(&l).unwrap(), "3");
    }

    #[test]
    fn threshold_targets_match_the_reference_encoding() {
        let t = |v| TrainingLabel::try_from(v).unwrap().threshold_targets(3);
        assert_eq!(t(1), vec![0.0, 0.0, 0.0]);
        assert_eq!(t(2), vec![1.0, 0.0, 0.0]);
        assert_eq!(t(3), vec![1.0, 1.0, 0.0]);
        assert_eq!(t(4), vec![1.0, 1.0, 1.0]);
    }
}
