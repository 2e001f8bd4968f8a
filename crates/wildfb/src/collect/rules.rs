//! The offline annotators: deterministic English + Chinese cue rules that read a user's next message
//! into one of the five raw categories — `configs/wildfb/rules.toml` (the original `rules` annotator) and
//! `configs/wildfb/cues.toml` (the `cues` annotator, which may look at the response too and abstains
//! where the evidence is weak) — and the keyword-and-topic heuristic that adjudicates refusals without
//! an LLM. Also the phrase matcher the filters share: word boundaries
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
    /// The rule does not apply when one of these matches the same text.
    #[serde(default)]
    unless: Vec<String>,
    /// The rule applies only when one of these matches the assistant's response.
    #[serde(default)]
    response: Vec<String>,
    /// The rule does not apply when one of these matches the assistant's response.
    #[serde(default)]
    unless_response: Vec<String>,
    /// The rule applies only to feedback of at most this many characters.
    #[serde(default)]
    max_chars: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackSection {
    head_chars: usize,
    /// Whether the neutral default (no rule matched) counts as a decision.
    #[serde(default)]
    default_confident: bool,
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
    /// Absent in a feedback-only file (`cues.toml`): refusal validation reads `rules.toml`.
    refusal: Option<RefusalSection>,
}

/// The compiled refusal heuristic.
struct RefusalMatchers {
    keywords: Regex,
    patterns: Regex,
    harmful_topics: Regex,
}

struct CompiledRule {
    name: String,
    category: FeedbackCategory,
    confident: bool,
    scope: Scope,
    regex: Regex,
    unless: Option<Regex>,
    response: Option<Regex>,
    unless_response: Option<Regex>,
    max_chars: Option<usize>,
}

/// What the rules say about one feedback message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleVerdict<'a> {
    /// The raw category.
    pub category: FeedbackCategory,
    /// False for weak evidence (and, unless the file says otherwise, for the neutral default): `cascade`
    /// asks the LLM about these, and the `cues` annotator abstains on them.
    pub confident: bool,
    /// The rule that matched, `None` for the neutral default.
    pub rule: Option<&'a str>,
}

/// The feedback rules and the refusal heuristic, compiled.
pub struct Rules {
    head_chars: usize,
    default_confident: bool,
    feedback: Vec<CompiledRule>,
    /// `None` for a feedback-only file: no response is a refusal candidate.
    refusal: Option<RefusalMatchers>,
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
            let unless =
                compile_matcher(source, &format!("rule {:?} unless", r.name), &[], &r.unless)?;
            let response = compile_matcher(
                source,
                &format!("rule {:?} response", r.name),
                &[],
                &r.response,
            )?;
            let unless_response = compile_matcher(
                source,
                &format!("rule {:?} unless_response", r.name),
                &[],
                &r.unless_response,
            )?;
            feedback.push(CompiledRule {
                name: r.name,
                category,
                confident: r.confident,
                scope: r.scope,
                regex,
                unless,
                response,
                unless_response,
                max_chars: r.max_chars,
            });
        }
        let required = |what: &str, phrases: &[String], patterns: &[String]| {
            compile_matcher(source, what, phrases, patterns)?.ok_or_else(|| Error::Config {
                path: source.path.clone(),
                message: format!("{what} is empty"),
            })
        };
        let refusal = match &file.refusal {
            Some(r) => Some(RefusalMatchers {
                keywords: required("refusal.keywords", &r.keywords, &[])?,
                patterns: required("refusal.refusal_patterns", &[], &r.refusal_patterns)?,
                harmful_topics: required("refusal.harmful_topics", &[], &r.harmful_topics)?,
            }),
            None => None,
        };
        Ok(Self {
            head_chars: file.feedback.head_chars,
            default_confident: file.feedback.default_confident,
            feedback,
            refusal,
        })
    }

    /// Classifies the user's next message on its own (rules that need the response do not apply).
    pub fn classify(&self, feedback: &str) -> RuleVerdict<'_> {
        self.classify_turn(feedback, None)
    }

    /// Classifies the user's next message, with the response it reacts to where known (rules with
    /// `response` patterns apply only when it is given and matches).
    pub fn classify_turn(&self, feedback: &str, response: Option<&str>) -> RuleVerdict<'_> {
        let text = normalise(feedback);
        let head = match text.char_indices().nth(self.head_chars) {
            Some((i, _)) => &text[..i],
            None => &text[..],
        };
        let response = response.map(normalise);
        let length = text.chars().count();
        for rule in &self.feedback {
            if rule.max_chars.is_some_and(|max| length > max) {
                continue;
            }
            if let Some(wanted) = &rule.response {
                if !response.as_deref().is_some_and(|r| wanted.is_match(r)) {
                    continue;
                }
            }
            if let Some(unwanted) = &rule.unless_response {
                if response.as_deref().is_some_and(|r| unwanted.is_match(r)) {
                    continue;
                }
            }
            let haystack = match rule.scope {
                Scope::Head => head,
                Scope::All => &text[..],
            };
            let vetoed = rule.unless.as_ref().is_some_and(|u| u.is_match(haystack));
            if !vetoed && rule.regex.is_match(haystack) {
                return RuleVerdict {
                    category: rule.category,
                    confident: rule.confident,
                    rule: Some(&rule.name),
                };
            }
        }
        RuleVerdict {
            category: FeedbackCategory::NeutralAmbiguity,
            confident: self.default_confident,
            rule: None,
        }
    }

    /// True for a response short enough (fewer than `max_chars` characters) that contains a refusal
    /// phrase: the turns refusal validation adjudicates. Always false for a feedback-only file.
    pub fn is_refusal_candidate(&self, response: &str, max_chars: usize) -> bool {
        self.refusal.as_ref().is_some_and(|r| {
            response.chars().take(max_chars).count() < max_chars
                && r.keywords.is_match(&normalise(response))
        })
    }

    /// The heuristic verdict for a candidate: `2` not a refusal, `1` a refusal of a harmful request
    /// (justified), `0` a refusal of a safe one (false refusal); `2` for a feedback-only file.
    pub fn adjudicate_refusal(&self, query: &str, response: &str) -> u8 {
        let Some(r) = &self.refusal else { return 2 };
        if !r.patterns.is_match(&normalise(response)) {
            2
        } else if r.harmful_topics.is_match(&normalise(query)) {
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

    fn from_text(text: &str) -> Rules {
        let src = ConfigText {
            path: "cues-test.toml".into(),
            text: text.to_string(),
        };
        Rules::from_config(&src).unwrap()
    }

    const GUARDED: &str = r#"
[feedback]
head_chars = 40
default_confident = true

[[feedback.rule]]
name = "no"
category = 2
confident = true
scope = "head"
unless_response = ['\?\s*$']
patterns = ['^no\b']

[[feedback.rule]]
name = "error-after-code"
category = 2
confident = true
scope = "all"
response = ['```']
patterns = ['Error:']

[[feedback.rule]]
name = "bare-thanks"
category = 5
confident = true
scope = "all"
max_chars = 20
unless = ['\?']
patterns = ['^thanks']

[[feedback.rule]]
name = "maybe"
category = 3
confident = false
scope = "head"
patterns = ['instead']

[refusal]
keywords = ["sorry"]
refusal_patterns = ['x']
harmful_topics = ['y']
"#;

    #[test]
    fn guards_look_at_the_response_the_length_and_vetoes() {
        let r = from_text(GUARDED);
        let name = |fb: &str, resp: Option<&str>| r.classify_turn(fb, resp).rule;
        // A bare "no" disputes a statement, but answers a question.
        assert_eq!(name("no, that is wrong", Some("It is 4.")), Some("no"));
        assert_eq!(name("no, that is all", Some("Anything else?")), None);
        // A pasted error counts only after code; without the response it cannot apply.
        let code = "```py\nprint(x)\n```";
        assert_eq!(name("NameError: x", Some(code)), Some("error-after-code"));
        assert_eq!(name("NameError: x", Some("Paris.")), None);
        assert_eq!(name("NameError: x", None), None);
        // Length and veto.
        assert_eq!(name("thanks!", None), Some("bare-thanks"));
        assert_eq!(name("thanks, and what about Lyon?", None), None);
        assert_eq!(name("thanks a lot, it all works now", None), None);
        // An abstaining rule and the decided default.
        let v = r.classify("use Rust instead");
        assert_eq!((v.category.value(), v.confident), (3, false));
        let v = r.classify("what is CRDT?");
        assert_eq!((v.category.value(), v.confident, v.rule), (3, true, None));
        // The original rules file keeps its undecided default.
        assert!(!rules().classify("what is CRDT?").confident);
    }

    #[test]
    fn the_cues_file_compiles_and_reads_the_guide_s_examples() {
        let cues = Rules::from_config(&CollectConfig::embedded().unwrap().cues).unwrap();
        let label = |fb: &str| {
            let v = cues.classify_turn(fb, Some("Here is the answer."));
            (v.category.value(), v.confident)
        };
        // The labelling guide's own examples (data/feedback-dev/GUIDE.md).
        assert_eq!(label("that's wrong"), (2, true));
        assert_eq!(label("you forgot the second step"), (2, true));
        assert_eq!(label("I said 500 words, not 200"), (2, true));
        assert_eq!(label("no, I meant the other file"), (2, true));
        assert_eq!(label("great, now do the same for March"), (4, true));
        assert_eq!(
            label("ok that works, next question: how do I deploy it?"),
            (4, true)
        );
        assert_eq!(label("perfect. Can you also add tests?"), (4, true));
        assert_eq!(label("thank you, that worked!"), (5, true));
        assert_eq!(label("perfect, exactly what I needed"), (5, true));
        assert_eq!(label("thanks. now write a haiku"), (4, true));
        assert_eq!(label("thanks, but the second function is wrong"), (2, true));
        assert_eq!(label("continue"), (3, true));
        assert_eq!(label("tell me more"), (3, true));
    }
}
