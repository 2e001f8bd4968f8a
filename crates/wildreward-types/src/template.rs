//! The reward model's input text, byte-identical to WildReward's `build_text` (`08.split.py`, the
//! online-DPO reward client and the WildReward-8B model card), so released checkpoints score our text
//! exactly as they were trained.
//!
//! One difference between training and inference is kept explicit rather than papered over: the
//! reference trains with `No previous context.` when the history is empty but its inference code
//! passes `history_str=""`. [`EmptyHistory`] chooses which.

use crate::chat::Message;

/// What the Context section holds when there is no history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyHistory {
    /// `No previous context.`, as every first-turn training example of WildFB was built (the default:
    /// it is what the released weights saw).
    #[default]
    Training,
    /// An empty section, as the model card's `build_text(query, response, history_str="")` and the
    /// reference's online-DPO client send it.
    Inference,
}

/// The placeholder the training data uses for an empty history.
pub const NO_PREVIOUS_CONTEXT: &str = "No previous context.";

/// Everything before the history: the task description and scoring criteria. Truncation keeps it
/// whole (with the BOS before it), so an over-long text still reads as the task the model learnt.
pub const HEADER: &str = "# Task Description\n\
You are an expert conversation evaluator. Your task is to judge the **User's Satisfaction** with the Assistant's response based on the conversation context.\n\
Please rate the response on a scale of 1 to 5 integers.\n\
\n\
# Scoring Criteria\n\
[1] CLEARLY NEGATIVE / REJECTION\n\
[2] CORRECTION / ERROR POINTER (Negative)\n\
[3] NEUTRAL\n\
[4] POSITIVE ENGAGEMENT\n\
[5] CLEAR SATISFACTION\n\
\n\
# Input Data\n\
## Context (History)\n";

/// The instruction after the response; the reward is read at its last token.
pub const FOOTER: &str = "# Output\n\
Based on the criteria above, please output ONLY the integer score (1, 2, 3, 4, or 5).";

/// Formats a history the way the reference does: `role: content\n` for each message, in order.
pub fn format_history(history: &[Message]) -> String {
    let mut out = String::new();
    for m in history {
        out.push_str(m.role.as_str());
        out.push_str(": ");
        out.push_str(&m.content);
        out.push('\n');
    }
    out
}

/// Builds the RM text from a formatted history string (see [`format_history`]), the user query and
/// the assistant response. Neither query nor response is stripped (the reference does not either).
///
/// A history that is empty or only whitespace (Python's `str.isspace` definition) becomes
/// [`NO_PREVIOUS_CONTEXT`] or nothing, as `empty` says.
pub fn build_text_from_history_str(
    history_str: &str,
    query: &str,
    response: &str,
    empty: EmptyHistory,
) -> String {
    let history_str = if history_str.chars().all(is_python_whitespace) {
        match empty {
            EmptyHistory::Training => NO_PREVIOUS_CONTEXT,
            EmptyHistory::Inference => "",
        }
    } else {
        history_str
    };
    let mut text = String::with_capacity(
        HEADER.len() + FOOTER.len() + history_str.len() + query.len() + response.len() + 64,
    );
    text.push_str(HEADER);
    text.push_str(history_str);
    text.push_str("\n\n## User Query\n");
    text.push_str(query);
    text.push_str("\n\n## Assistant Response\n");
    text.push_str(response);
    text.push_str("\n\n");
    text.push_str(FOOTER);
    text
}

/// Builds the RM text for a response to `query` after the messages in `history`.
pub fn build_text(history: &[Message], query: &str, response: &str, empty: EmptyHistory) -> String {
    build_text_from_history_str(&format_history(history), query, response, empty)
}

/// Python's `str.isspace` per character, which also counts the ASCII separators U+001C..U+001F
/// (Rust's `char::is_whitespace` does not).
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_includes_ascii_separators() {
        assert!(is_python_whitespace('\u{1f}'));
        assert!(is_python_whitespace('\u{3000}'));
        assert!(!is_python_whitespace('a'));
        let t = build_text_from_history_str("\u{1c} \n", "q", "r", EmptyHistory::Training);
        assert!(t.contains("## Context (History)\nNo previous context.\n\n## User Query"));
    }
}
