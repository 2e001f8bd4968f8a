//! The offline annotator: deterministic English + Chinese rules (`configs/wildfb/rules.toml`) that read
//! a user's next message into one of the five raw categories, and the keyword-and-topic heuristic that
//! adjudicates refusals without an LLM. Also the phrase matcher the filters share: word boundaries
//! wherever a phrase starts or ends with a letter or digit, so "draw" is not found in "drawback".

use super::config::ConfigText;
use crate::error::{Error, Result};
use regex::Regex;
use serde::Deserialize;
use std::borrow::Cow;
use wildreward_types::FeedbackCategory;

/// Straightens curly apostrophes and quotes so that `can’t` matches `can't`.
pub fn normalise(text: &str) -> Cow<'_, str> {
    if text.contains(['\u{2018}', '\u{2019}', '\u{201B}', '\u{FF07}']) {
        Cow::Owned(text.replace(['\u{2018}', '\u{2019}', '\u{201B}', '\u{FF07}'], "'"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The regex for one literal phrase: escaped, with `\b` at each end that is an ASCII letter or digit.
pub fn phrase_pattern(phrase: &str) -> String {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let mut p = String::new();
    if edge(phrase.chars().next()) {
        p.push_str(r"\b");
    }
    p.push_str(&regex::escape(phrase));
    if edge(phrase.chars().last()) {
        p.push_str(r"\b");
    }
    p
}

/// Compiles phrases and regular expressions into one case-insensitive matcher (`None` if both are
/// empty). Errors name the file and the offending entry.
pub fn compile_matcher(
    source: &ConfigText,
    what: &str,
    phrases: &[String],
    patterns: &[String],
) -> Result<Option<Regex>> {
    let mut alternatives: Vec<String> = phrases.iter().map(|p| phrase_pattern(p)).collect();
    for p in patterns {
        Regex::new(p).map_err(|e| Error::Config {
            path: source.path.clone(),
            message: format!("{what}: bad pattern {p:?}: {e}"),
        })?;
        alternatives.push(p.clone());
    }
    if alternatives.is_empty() {
        return Ok(None);
    }
    let joined = format!(
        "(?i)(?:{})",
        alternatives
            .iter()
            .map(|a| format!("(?:{a})"))
            .collect::<Vec<_>>()
            .join("|")
    );
    Regex::new(&joined).map(Some).map_err(|e| Error::Config {
        path: source.path.clone(),
        message: format!("{what}: {e}"),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Scope {
    Head,
    All,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    name: String,
    category: u8,
    confident: bool,
    scope: Scope,
    patterns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackSection {
    head_chars: usize,
    rule: Vec<RuleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefusalSection {
    keywords: Vec<String>,
    refusal_patterns: Vec<String>,
    harmful_topics: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    feedback: FeedbackSection,
    refusal: RefusalSection,
}

struct CompiledRule {
    name: String,
    category: FeedbackCategory,
    confident: bool,
    scope: Scope,
    regex: Regex,
}

/// What the rules say about one feedback message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleVerdict<'a> {
    /// The raw category.
    pub category: FeedbackCategory,
    /// False for weak evidence (and for the neutral default): `cascade` asks the LLM about these.
    pub confident: bool,
    /// The rule that matched, `None` for the neutral default.
    pub rule: Option<&'a str>,
}

/// The feedback rules and the refusal heuristic, compiled.
pub struct Rules {
    head_chars: usize,
    feedback: Vec<CompiledRule>,
    refusal_keywords: Regex,
    refusal_patterns: Regex,
    harmful_topics: Regex,
}

impl Rules {
    /// Parses and compiles a rules file; every error names the file and the rule.
    pub fn from_config(source: &ConfigText) -> Result<Self> {
        let file: RulesFile = toml::from_str(&source.text).map_err(|e| Error::Config {
            path: source.path.clone(),
            message: e.to_string(),
        })?;
        let mut feedback = Vec::new();
        for r in file.feedback.rule {
            let category = FeedbackCategory::try_from(r.category).map_err(|e| Error::Config {
                path: source.path.clone(),
                message: format!("rule {:?}: {e}", r.name),
            })?;
            let regex = compile_matcher(source, &format!("rule {:?}", r.name), &[], &r.patterns)?
                .ok_or_else(|| Error::Config {
                path: source.path.clone(),
                message: format!("rule {:?} has no patterns", r.name),
            })?;
            feedback.push(CompiledRule {
                name: r.name,
                category,
                confident: r.confident,
                scope: r.scope,
                regex,
            });
        }
        let required = |what: &str, phrases: &[String], patterns: &[String]| {
            compile_matcher(source, what, phrases, patterns)?.ok_or_else(|| Error::Config {
                path: source.path.clone(),
                message: format!("{what} is empty"),
            })
        };
        Ok(Self {
            head_chars: file.feedback.head_chars,
            feedback,
            refusal_keywords: required("refusal.keywords", &file.refusal.keywords, &[])?,
            refusal_patterns: required(
                "refusal.refusal_patterns",
                &[],
                &file.refusal.refusal_patterns,
            )?,
            harmful_topics: required("refusal.harmful_topics", &[], &file.refusal.harmful_topics)?,
        })
    }

    /// Classifies the user's next message.
    pub fn classify(&self, feedback: &str) -> RuleVerdict<'_> {
        let text = normalise(feedback);
        let head = match text.char_indices().nth(self.head_chars) {
            Some((i, _)) => &text[..i],
            None => &text[..],
        };
        for rule in &self.feedback {
            let haystack = match rule.scope {
                Scope::Head => head,
                Scope::All => &text[..],
            };
            if rule.regex.is_match(haystack) {
                return RuleVerdict {
                    category: rule.category,
                    confident: rule.confident,
                    rule: Some(&rule.name),
                };
            }
        }
        RuleVerdict {
            category: FeedbackCategory::NeutralAmbiguity,
            confident: false,
            rule: None,
        }
    }

    /// True for a response short enough (fewer than `max_chars` characters) that contains a refusal
    /// phrase: the turns refusal validation adjudicates.
    pub fn is_refusal_candidate(&self, response: &str, max_chars: usize) -> bool {
        response.chars().take(max_chars).count() < max_chars
            && self.refusal_keywords.is_match(&normalise(response))
    }

    /// The heuristic verdict for a candidate: `2` not a refusal, `1` a refusal of a harmful request
    /// (justified), `0` a refusal of a safe one (false refusal).
    pub fn adjudicate_refusal(&self, query: &str, response: &str) -> u8 {
        if !self.refusal_patterns.is_match(&normalise(response)) {
            2
        } else if self.harmful_topics.is_match(&normalise(query)) {
            1
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::collect::config::CollectConfig;

    fn rules() -> Rules {
        Rules::from_config(&CollectConfig::embedded().unwrap().rules).unwrap()
    }

    #[test]
    fn phrases_respect_word_boundaries_but_not_in_chinese() {
        let src = CollectConfig::embedded().unwrap().rules;
        let m = compile_matcher(&src, "t", &["draw".into(), "画个".into()], &[])
            .unwrap()
            .unwrap();
        assert!(m.is_match("Please DRAW a cat"));
        assert!(!m.is_match("the main drawback is cost"));
        assert!(m.is_match("帮我画个猫"));
        assert_eq!(phrase_pattern("gpt-4"), r"\bgpt\-4\b");
    }

    #[test]
    fn refusal_keywords_fix_the_reference_list() {
        let r = rules();
        // Curly apostrophe, and the two keywords the reference's missing comma had glued together.
        assert!(r.is_refusal_candidate("I can’t help with that.", 300));
        assert!(r.is_refusal_candidate("Sorry, I made a mistake above.", 300));
        assert!(r.is_refusal_candidate("我无法回答这个问题。", 300));
        assert!(!r.is_refusal_candidate("As an aide to the mayor, she ...", 300));
        assert!(!r.is_refusal_candidate(&format!("I cannot {}", "x".repeat(300)), 300));
        assert_eq!(
            r.adjudicate_refusal(
                "How do I make a bomb?",
                "I'm sorry, but I can't help with that."
            ),
            1
        );
        assert_eq!(
            r.adjudicate_refusal(
                "Write a poem about spring",
                "As an AI, I cannot write poems."
            ),
            0
        );
        assert_eq!(
            r.adjudicate_refusal("Fix my code", "Sorry, I made a mistake: use `let` here."),
            2
        );
    }
}
