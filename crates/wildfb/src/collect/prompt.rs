//! The annotator prompts (our wording, in `configs/wildfb/prompts/`) filled in with a turn's content,
//! and the `[[n]]` answer contract: the first `[[d]]` in the answer (after any `</think>` reasoning) is
//! the verdict; anything else is unparseable and never becomes a label.

use super::config::ConfigText;
use crate::error::{Error, Result};
use regex::Regex;
use std::sync::OnceLock;
use wildreward_types::Instance;

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Slot(usize),
}

/// A prompt with `{name}` slots, parsed once and filled in a single pass (so text inside a slot's
/// value that looks like `{feedback}` is never substituted again).
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTemplate {
    pieces: Vec<Piece>,
    slots: Vec<&'static str>,
}

impl PromptTemplate {
    /// Parses `source`, which must contain every one of `slots` (as `{name}`) at least once.
    pub fn parse(source: &ConfigText, slots: &[&'static str]) -> Result<Self> {
        let text = &source.text;
        let mut pieces = Vec::new();
        let mut seen = vec![false; slots.len()];
        let mut rest = text.as_str();
        let mut literal = String::new();
        while let Some(start) = rest.find('{') {
            literal.push_str(&rest[..start]);
            let after = &rest[start..];
            match slots
                .iter()
                .position(|s| after.starts_with(&format!("{{{s}}}")))
            {
                Some(i) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Slot(i));
                    seen[i] = true;
                    rest = &after[slots[i].len() + 2..];
                }
                None => {
                    literal.push('{');
                    rest = &after[1..];
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(Error::Config {
                path: source.path.clone(),
                message: format!("the prompt has no {{{}}} slot", slots[i]),
            });
        }
        Ok(Self {
            pieces,
            slots: slots.to_vec(),
        })
    }

    /// Fills the slots with `values` (in the order the slots were declared).
    pub fn render(&self, values: &[&str]) -> String {
        let len = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.len(),
                Piece::Slot(i) => values.get(*i).map_or(0, |v| v.len()),
            })
            .sum();
        let mut out = String::with_capacity(len);
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Slot(i) => out.push_str(values.get(*i).copied().unwrap_or("")),
            }
        }
        out
    }

    /// The slot names.
    pub fn slots(&self) -> &[&'static str] {
        &self.slots
    }
}

/// The two prompts of the pipeline.
#[derive(Debug, Clone)]
pub struct Prompts {
    feedback: PromptTemplate,
    refusal: PromptTemplate,
}

impl Prompts {
    /// Parses the classification prompt (`{query}`, `{response}`, `{feedback}`) and the refusal prompt
    /// (`{query}`, `{response}`).
    pub fn new(feedback: &ConfigText, refusal: &ConfigText) -> Result<Self> {
        Ok(Self {
            feedback: PromptTemplate::parse(feedback, &["query", "response", "feedback"])?,
            refusal: PromptTemplate::parse(refusal, &["query", "response"])?,
        })
    }

    /// The classification prompt for a turn: the judged query and response, and the content (only the
    /// content: the reference pasted Python's repr of the whole message dict) of the next user message.
    pub fn feedback(&self, instance: &Instance) -> String {
        self.feedback.render(&[
            instance.query(),
            instance.response(),
            &instance.user_feedback.content,
        ])
    }

    /// The refusal-validation prompt for a turn.
    pub fn refusal(&self, instance: &Instance) -> String {
        self.refusal
            .render(&[instance.query(), instance.response()])
    }
}

/// The first `[[d]]` of an answer, looked for after the last `</think>` when the model wrote its
/// reasoning into the content. `None` if there is none.
pub fn first_bracketed_digit(answer: &str) -> Option<u8> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = RE
        .get_or_init(|| Regex::new(r"\[\[(\d)\]\]").ok())
        .as_ref()?;
    let visible = answer
        .rfind("</think>")
        .map_or(answer, |i| &answer[i + "</think>".len()..]);
    let caps = re.captures(visible)?;
    caps.get(1)?.as_str().parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::PathBuf;

    fn text(t: &str) -> ConfigText {
        ConfigText {
            path: PathBuf::from("p.txt"),
            text: t.to_string(),
        }
    }

    #[test]
    fn slots_are_filled_once_and_literal_braces_survive() {
        let t = PromptTemplate::parse(
            &text("Q={query} {json} F={feedback}!"),
            &["query", "feedback"],
        )
        .unwrap();
        assert_eq!(t.render(&["{feedback}", "ok"]), "Q={feedback} {json} F=ok!");
        let err = PromptTemplate::parse(&text("no slots"), &["query"]).unwrap_err();
        assert!(err.to_string().contains("p.txt") && err.to_string().contains("{query}"));
    }

    #[test]
    fn the_first_bracketed_digit_is_the_answer() {
        assert_eq!(
            first_bracketed_digit("[[4]] builds on it; not [[5]]"),
            Some(4)
        );
        assert_eq!(first_bracketed_digit("Reason first.\n[[2]]"), Some(2));
        assert_eq!(
            first_bracketed_digit("<think>maybe [[5]]</think>[[3]] unclear"),
            Some(3)
        );
        assert_eq!(first_bracketed_digit("category 4"), None);
        assert_eq!(first_bracketed_digit("[[12]]"), None);
        assert_eq!(first_bracketed_digit(""), None);
    }
}
