//! The final filters (reference step 08, `configs/wildfb/filters.toml`): neutral turns, queries about
//! image generation, web search or URLs, the assistant's identity, uploaded files, PII or media, long
//! histories, and too-short queries or responses. Phrases match on word boundaries, not as raw
//! substrings, so "drawback" is not "draw".

use super::config::ConfigText;
use super::records::LabelledTurn;
use super::rules::{compile_matcher, normalise};
use crate::error::{Error, Result};
use regex::Regex;
use serde::Deserialize;
use wildreward_types::FeedbackCategory;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterRule {
    name: String,
    #[serde(default)]
    phrases: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
}

/// `[limits]` of the filters file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Drop when the history has more messages than this.
    pub max_history_messages: usize,
    /// Drop responses shorter than this (words; non-space characters for Chinese).
    pub min_response_length: usize,
    /// Drop queries shorter than this.
    pub min_query_length: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FiltersFile {
    rule: Vec<FilterRule>,
    limits: Limits,
}

/// The compiled filters.
pub struct Filters {
    rules: Vec<(String, Regex)>,
    limits: Limits,
}

/// The length the limits compare: whitespace-separated words, or for Chinese the characters that are
/// not ASCII spaces (the reference's measure).
pub fn text_length(text: &str, language: &str) -> usize {
    if language == "Chinese" {
        text.chars().filter(|c| *c != ' ').count()
    } else {
        text.split_whitespace().count()
    }
}

impl Filters {
    /// Parses and compiles a filters file; errors name the file and the rule.
    pub fn from_config(source: &ConfigText) -> Result<Self> {
        let file: FiltersFile = toml::from_str(&source.text).map_err(|e| Error::Config {
            path: source.path.clone(),
            message: e.to_string(),
        })?;
        let mut rules = Vec::new();
        for r in file.rule {
            let what = format!("filter {:?}", r.name);
            if let Some(regex) = compile_matcher(source, &what, &r.phrases, &r.patterns)? {
                rules.push((r.name, regex));
            }
        }
        Ok(Self {
            rules,
            limits: file.limits,
        })
    }

    /// Why `turn` is dropped, or `None` to keep it. The first matching rule decides.
    pub fn reject<'a>(&'a self, turn: &LabelledTurn) -> Option<&'a str> {
        if turn.label == FeedbackCategory::NeutralAmbiguity {
            return Some("neutral");
        }
        let instance = &turn.instance;
        let query = normalise(instance.query());
        if let Some((name, _)) = self.rules.iter().find(|(_, re)| re.is_match(&query)) {
            return Some(name);
        }
        if instance.history.len() > self.limits.max_history_messages {
            return Some("long_history");
        }
        if text_length(instance.response(), &instance.language) < self.limits.min_response_length {
            return Some("short_response");
        }
        if text_length(instance.query(), &instance.language) < self.limits.min_query_length {
            return Some("short_query");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::collect::config::CollectConfig;
    use crate::collect::records::LabelSource;
    use wildreward_types::{Instance, Message};

    fn turn(query: &str, response: &str, label: FeedbackCategory) -> LabelledTurn {
        LabelledTurn {
            instance: Instance {
                id: "h_turn0".into(),
                model: "m".into(),
                turn: 0,
                history: vec![],
                messages: [Message::user(query), Message::assistant(response)],
                user_feedback: Message::user("thanks"),
                language: "English".into(),
            },
            user: Default::default(),
            label,
            label_source: LabelSource::Rules,
            rule: None,
            abstained: false,
            hindsight: None,
            refusal: None,
        }
    }

    #[test]
    fn filters_use_word_boundaries_and_the_reference_order() {
        let f = Filters::from_config(&CollectConfig::embedded().unwrap().filters).unwrap();
        let long = "Here is a detailed answer with more than ten words in it for sure.";
        let keep = |q: &str| f.reject(&turn(q, long, FeedbackCategory::Satisfaction));
        assert_eq!(
            keep("What is the main drawback of this design choice?"),
            None
        );
        assert_eq!(
            keep("Please draw a cat sitting on a mat"),
            Some("image_generation")
        );
        assert_eq!(
            keep("Summarise https://example.com/page for me please"),
            Some("web_search")
        );
        assert_eq!(
            keep("Are you ChatGPT or something else entirely?"),
            Some("identity")
        );
        assert_eq!(
            keep("Mail me at someone@example.org about the plan"),
            Some("pii")
        );
        assert_eq!(
            keep("My number is 13812345678, call me later ok"),
            Some("pii")
        );
        assert_eq!(
            keep("Order 213812345678901 has not arrived yet, why?"),
            None
        );
        assert_eq!(keep("Short query"), Some("short_query"));
        assert_eq!(
            f.reject(&turn(
                "A long enough query for sure",
                long,
                FeedbackCategory::NeutralAmbiguity
            )),
            Some("neutral")
        );
        assert_eq!(
            f.reject(&turn(
                "A long enough query for sure",
                "Too short.",
                FeedbackCategory::Rejection
            )),
            Some("short_response")
        );
        assert_eq!(text_length("你好 世界", "Chinese"), 4);
    }
}
