//! Turning requests into reward-model texts. `/get_reward` in `raw` format scores texts as sent (the
//! reference's client wraps them in the WildReward template itself); in `openrlhf` format each query
//! is OpenRLHF's decoded prompt + response, chat-template markup and special tokens included, with
//! the prompt beside it: the response is what follows the prompt, the markup (ChatML, Llama-3,
//! Qwen) is stripped, and the WildReward template is applied here. `/score` items stay structured
//! turns, encoded by the training encoder ([`wildreward_model::TurnEncoder`]).
//! The template itself is `wildreward_types::template`, never re-implemented.

use crate::backend::ScoreInput;
use crate::config::QueryFormat;
use crate::error::ServeError;
use wildreward_types::wire::{GetRewardRequest, ScoreItem};
use wildreward_types::{EmptyHistory, Message, Role};

/// The inputs of a `/get_reward` request: raw texts as sent, OpenRLHF queries as the structured
/// turns they carry (encoded, and cut when over-long, as training encodes them). `offset` shifts
/// the indexes named in errors.
pub fn get_reward_inputs(
    req: GetRewardRequest,
    format: QueryFormat,
    empty: EmptyHistory,
    offset: usize,
) -> Result<Vec<ScoreInput>, ServeError> {
    match format {
        QueryFormat::Raw => Ok(req.query.into_iter().map(ScoreInput::Text).collect()),
        QueryFormat::OpenRlhf => {
            let prompts = req.prompts.ok_or_else(|| {
                ServeError::Validation(
                    "this server reads OpenRLHF queries (--query-format openrlhf): send `prompts` \
                     beside `query`, one per query"
                        .into(),
                )
            })?;
            if prompts.len() != req.query.len() {
                return Err(ServeError::Validation(format!(
                    "{} prompts for {} queries: send one prompt per query",
                    prompts.len(),
                    req.query.len()
                )));
            }
            req.query
                .iter()
                .zip(&prompts)
                .enumerate()
                .map(|(i, (q, p))| {
                    openrlhf_item(q, p)
                        .map(|item| ScoreInput::Turn(item, empty))
                        .map_err(|m| ServeError::Validation(format!("query[{}]: {m}", i + offset)))
                })
                .collect()
        }
    }
}

/// The inputs of `/score` items: structured turns, encoded (and cut when over-long) exactly as
/// training encodes them.
pub fn score_inputs(items: Vec<ScoreItem>, empty: EmptyHistory) -> Vec<ScoreInput> {
    items
        .into_iter()
        .map(|it| ScoreInput::Turn(it, empty))
        .collect()
}

/// The turn (history, query, response) of one OpenRLHF query (prompt + response as decoded by the
/// policy's tokenizer) given its prompt. Where the response starts is found by the first rule that holds:
/// 1. the prompt occurs in the query as sent (padding or a BOS before it is skipped);
/// 2. the chat template's assistant marker: the query has at least as many assistant headers as the
///    prompt, and the response follows the one that ends the prompt (decoding with tokenizer
///    clean-up can change spaces inside the turns, never the markers);
/// 3. the prompt's non-space characters are the start of the query's (a plain prompt decoded with
///    clean-up spaces, `"a ."` → `"a."`).
///
/// When none holds the error says what each found.
pub fn openrlhf_item(query: &str, prompt: &str) -> Result<ScoreItem, String> {
    if prompt.trim().is_empty() {
        return Err("its prompt is empty".into());
    }
    let response_start = match query.find(prompt) {
        Some(start) => start + prompt.len(),
        None => {
            let markers = (assistant_marker_ends(prompt), assistant_marker_ends(query));
            match markers {
                // Only when the prompt ends with its assistant header (the generation prompt).
                (p, q)
                    if p.last()
                        .is_some_and(|&end| strip_think(&prompt[end..]).trim().is_empty())
                        && q.len() >= p.len() =>
                {
                    q[p.len() - 1]
                }
                (p, q) => prefix_ignoring_spaces(query, prompt).ok_or_else(|| {
                    format!(
                        "cannot tell where its response starts: rule 1 (the prompt as sent) — \
                         prompts[i] is not in query[i]; rule 2 (the chat template's assistant \
                         marker) — the prompt has {} assistant headers and the query {}; rule 3 \
                         (prefix ignoring spaces) — the prompt's characters are not the query's \
                         start",
                        p.len(),
                        q.len()
                    )
                })?,
            }
        }
    };
    let response = clean_response(&query[response_start..]);
    let messages = parse_chat(prompt);
    let last_user = messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .ok_or("its prompt has no user message")?;
    let history: Vec<Message> = messages[..last_user]
        .iter()
        .filter(|m| m.role != Role::System)
        .cloned()
        .collect();
    Ok(ScoreItem {
        history,
        query: messages[last_user].content.clone(),
        response,
    })
}

/// The turn of a conversation rendered by a chat template (ChatML, Qwen, Llama-3) that
/// ends in the assistant turn to score (what verl's reward loop sends to `/classify`): the last
/// assistant message is the response, the user message before it the query, earlier user and
/// assistant turns the history (system messages are left out).
pub fn chat_item(text: &str) -> Result<ScoreItem, String> {
    if !text.contains(CHATML_START) && !text.contains(LLAMA3_HEADER) {
        return Err("no chat markup (ChatML `<|im_start|>` or Llama-3 headers) found".into());
    }
    let messages = parse_chat(text);
    let Some(last) = messages.last().filter(|m| m.role == Role::Assistant) else {
        return Err("the conversation does not end with an assistant turn to score".into());
    };
    let response = clean_response(&last.content);
    let turns = &messages[..messages.len() - 1];
    let last_user = turns
        .iter()
        .rposition(|m| m.role == Role::User)
        .ok_or("no user message before the assistant turn")?;
    let history: Vec<Message> = turns[..last_user]
        .iter()
        .filter(|m| m.role != Role::System)
        .cloned()
        .collect();
    Ok(ScoreItem {
        history,
        query: turns[last_user].content.clone(),
        response,
    })
}

/// Byte offsets just past each assistant header (ChatML or Llama-3) in `text`, in order.
fn assistant_marker_ends(text: &str) -> Vec<usize> {
    let mut ends = Vec::new();
    for marker in [CHATML_ASSISTANT, LLAMA3_ASSISTANT] {
        let mut from = 0;
        while let Some(at) = text[from..].find(marker) {
            from += at + marker.len();
            ends.push(from);
        }
    }
    ends.sort_unstable();
    ends
}

/// Where the query continues after the prompt when both are compared without whitespace.
fn prefix_ignoring_spaces(query: &str, prompt: &str) -> Option<usize> {
    let mut want = prompt.chars().filter(|c| !c.is_whitespace()).peekable();
    want.peek()?;
    for (at, c) in query.char_indices() {
        if c.is_whitespace() {
            continue;
        }
        if want.next() != Some(c) {
            return None;
        }
        if want.peek().is_none() {
            return Some(at + c.len_utf8());
        }
    }
    None
}

const CHATML_START: &str = "<|im_start|>";
const CHATML_END: &str = "<|im_end|>";
const LLAMA3_HEADER: &str = "<|start_header_id|>";
const LLAMA3_HEADER_END: &str = "<|end_header_id|>";
const LLAMA3_END: &str = "<|eot_id|>";
const CHATML_ASSISTANT: &str = "<|im_start|>assistant";
const LLAMA3_ASSISTANT: &str = "<|start_header_id|>assistant<|end_header_id|>";

/// Tokens that end a response (and any padding after it).
const END_MARKERS: &[&str] = &[
    CHATML_END,
    LLAMA3_END,
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
];

/// The messages of a chat-templated prompt (ChatML — also Qwen's — or Llama-3); a prompt with
/// neither markup is one user message. A trailing empty assistant turn (the generation prompt) is
/// dropped; system messages are kept here and left out of the history by the caller.
pub fn parse_chat(prompt: &str) -> Vec<Message> {
    let turns: Vec<(String, String)> = if prompt.contains(CHATML_START) {
        prompt
            .split(CHATML_START)
            .skip(1)
            .map(|seg| {
                let (role, content) = seg.split_once('\n').unwrap_or((seg, ""));
                let content = content.split(CHATML_END).next().unwrap_or("");
                (role.trim().to_string(), content.to_string())
            })
            .collect()
    } else if prompt.contains(LLAMA3_HEADER) {
        prompt
            .split(LLAMA3_HEADER)
            .skip(1)
            .map(|seg| {
                let (role, content) = seg.split_once(LLAMA3_HEADER_END).unwrap_or((seg, ""));
                let content = content.split(LLAMA3_END).next().unwrap_or("");
                (
                    role.trim().to_string(),
                    content.trim_start_matches('\n').to_string(),
                )
            })
            .collect()
    } else {
        let text = strip_specials(prompt);
        return vec![Message {
            role: Role::User,
            content: text.trim().to_string(),
        }];
    };
    let mut messages: Vec<Message> = turns
        .into_iter()
        .filter_map(|(role, content)| {
            let role: Role = role.parse().ok()?;
            Some(Message {
                role,
                content: content.trim_end().to_string(),
            })
        })
        .collect();
    // The generation prompt: an assistant turn with nothing (or only an empty think block) in it.
    if messages
        .last()
        .is_some_and(|m| m.role == Role::Assistant && strip_think(&m.content).trim().is_empty())
    {
        messages.pop();
    }
    messages
}

/// The response part of a query: without a leading assistant header, cut at the first end marker,
/// without a reasoning block (everything up to `</think>`, as the reference's client drops it),
/// trimmed.
pub fn clean_response(raw: &str) -> String {
    let mut s = raw;
    for header in [
        "<|im_start|>assistant\n",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ] {
        if let Some(rest) = s.trim_start().strip_prefix(header) {
            s = rest;
        }
    }
    let end = END_MARKERS
        .iter()
        .filter_map(|m| s.find(m))
        .min()
        .unwrap_or(s.len());
    strip_think(&s[..end]).trim().to_string()
}

/// Everything after the last `</think>` (the whole text when there is none).
fn strip_think(s: &str) -> &str {
    match s.rfind("</think>") {
        Some(i) => &s[i + "</think>".len()..],
        None => s,
    }
}

/// A plain prompt without BOS / padding specials.
fn strip_specials(s: &str) -> String {
    let mut out = s.to_string();
    for special in [
        "<|begin_of_text|>",
        "<s>",
        "<|endoftext|>",
        "<|end_of_text|>",
    ] {
        out = out.replace(special, "");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wildreward_types::build_text;

    /// The WildReward text the turn of an OpenRLHF query renders to.
    fn openrlhf_text(query: &str, prompt: &str, empty: EmptyHistory) -> Result<String, String> {
        openrlhf_item(query, prompt)
            .map(|it| build_text(&it.history, &it.query, &it.response, empty))
    }

    /// The WildReward text the turn of a chat-templated conversation renders to.
    fn chat_text(text: &str, empty: EmptyHistory) -> Result<String, String> {
        chat_item(text).map(|it| build_text(&it.history, &it.query, &it.response, empty))
    }

    fn text(history: &[(Role, &str)], query: &str, response: &str) -> String {
        let history: Vec<Message> = history
            .iter()
            .map(|(role, c)| Message {
                role: *role,
                content: c.to_string(),
            })
            .collect();
        build_text(&history, query, response, EmptyHistory::Training)
    }

    #[test]
    fn chatml_prompt_and_response_become_the_wildreward_text() {
        let prompt = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
                      <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n\
                      <|im_start|>assistant\n";
        let query = format!("{prompt}4.<|im_end|>\n<|endoftext|><|endoftext|>");
        let got = openrlhf_text(&query, prompt, EmptyHistory::Training).unwrap();
        let want = text(
            &[(Role::User, "Hi"), (Role::Assistant, "Hello!")],
            "What is 2+2?",
            "4.",
        );
        assert_eq!(got, want);
    }

    #[test]
    fn llama3_markup_is_stripped() {
        let prompt = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023<|eot_id|>\
                      <|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>\
                      <|start_header_id|>assistant<|end_header_id|>\n\n";
        let query = format!("{prompt}Blue.<|eot_id|>");
        let got = openrlhf_text(&query, prompt, EmptyHistory::Training).unwrap();
        assert_eq!(got, text(&[], "Name a colour.", "Blue."));
    }

    #[test]
    fn qwen_reasoning_is_dropped_and_padding_before_the_prompt_is_skipped() {
        let prompt = "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n";
        let query = format!(
            "<|endoftext|><|endoftext|>{prompt}<think>\nhmm\n</think>\n\nBecause.<|im_end|>"
        );
        let got = openrlhf_text(&query, prompt, EmptyHistory::Inference).unwrap();
        let want = build_text(&[], "Why?", "Because.", EmptyHistory::Inference);
        assert_eq!(got, want);
    }

    #[test]
    fn plain_prompts_are_one_user_message() {
        let got = openrlhf_text("Say hi. Hi!", "Say hi.", EmptyHistory::Training).unwrap();
        assert_eq!(got, text(&[], "Say hi.", "Hi!"));
    }

    #[test]
    fn mismatches_are_refused_with_the_index() {
        let req = GetRewardRequest {
            query: vec!["a b".into(), "c d".into()],
            prompts: Some(vec!["a".into(), "x".into()]),
            labels: None,
        };
        let e =
            get_reward_inputs(req, QueryFormat::OpenRlhf, EmptyHistory::Training, 10).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(
            e.to_string().starts_with("query[11]: cannot tell where")
                && e.to_string().contains("rule 2"),
            "{e}"
        );
        let req = GetRewardRequest {
            query: vec!["a".into()],
            prompts: None,
            labels: None,
        };
        let e =
            get_reward_inputs(req, QueryFormat::OpenRlhf, EmptyHistory::Training, 0).unwrap_err();
        assert!(e.to_string().contains("prompts"), "{e}");
    }

    #[test]
    fn clean_up_spaces_in_the_decoded_query_do_not_lose_the_response() {
        // The policy's decode with clean_up_tokenization_spaces drops the space before "?" and
        // "'s" inside the turns; the prompt as sent still has them.
        let prompt = "<|im_start|>user\nWhat 's 2+2 ?<|im_end|>\n<|im_start|>assistant\n";
        let query = "<|im_start|>user\nWhat's 2+2?<|im_end|>\n<|im_start|>assistant\n4.<|im_end|>";
        let got = openrlhf_text(query, prompt, EmptyHistory::Training).unwrap();
        assert_eq!(got, text(&[], "What 's 2+2 ?", "4."));
        // A plain prompt: rule 3, the prefix ignoring spaces.
        let got = openrlhf_text("Say hi .Hi!", "Say hi .", EmptyHistory::Training).unwrap();
        assert_eq!(got, text(&[], "Say hi .", "Hi!"));
        let got = openrlhf_text("Say hi. Hi!", "Say hi .", EmptyHistory::Training).unwrap();
        assert_eq!(got, text(&[], "Say hi .", "Hi!"));
    }

    #[test]
    fn a_rendered_conversation_becomes_the_wildreward_text() {
        let conv = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
                    <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
                    <|im_start|>assistant\n4<|im_end|>\n";
        let got = chat_text(conv, EmptyHistory::Training).unwrap();
        let want = text(
            &[(Role::User, "Hi"), (Role::Assistant, "Hello!")],
            "2+2?",
            "4",
        );
        assert_eq!(got, want);
        assert!(chat_text("plain text", EmptyHistory::Training)
            .unwrap_err()
            .contains("no chat markup"));
        let open = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
        assert!(chat_text(open, EmptyHistory::Training)
            .unwrap_err()
            .contains("assistant turn"));
    }

    #[test]
    fn raw_queries_pass_through_untouched() {
        let req = GetRewardRequest {
            query: vec!["<|im_start|>x".into()],
            prompts: Some(vec!["ignored".into()]),
            labels: None,
        };
        let got = get_reward_inputs(req, QueryFormat::Raw, EmptyHistory::Training, 0).unwrap();
        assert!(
            matches!(&got[..], [ScoreInput::Text(t)] if t == "<|im_start|>x"),
            "{got:?}"
        );
    }
}
