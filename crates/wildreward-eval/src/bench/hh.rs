//! Anthropic HH-RLHF: each side of a pair is a whole dialogue (`\n\nHuman: …\n\nAssistant: …`); the
//! last Assistant turn is the response, the Human turn before it the query, the rest the history.

use super::files::{at, files_in, is_jsonl, read_jsonl};
use super::{stem, Candidate, Dataset, Kind, Pair};
use serde::Deserialize;
use std::path::Path;
use wildreward_types::exit::BadInput;
use wildreward_types::{Message, Role};

/// One HH row as stored upstream.
#[derive(Debug, Clone, Deserialize)]
pub struct HhPair {
    /// The preferred dialogue.
    pub chosen: String,
    /// The other dialogue.
    pub rejected: String,
}

const HUMAN: &str = "\n\nHuman:";
const ASSISTANT: &str = "\n\nAssistant:";

/// The turns of an HH dialogue (`\n\nHuman: …` / `\n\nAssistant: …`), in order.
fn parse_turns(dialogue: &str) -> Result<Vec<Message>, String> {
    let next_marker = |s: &str| -> Option<(usize, Role, usize)> {
        let h = s.find(HUMAN).map(|i| (i, Role::User, HUMAN.len()));
        let a = s
            .find(ASSISTANT)
            .map(|i| (i, Role::Assistant, ASSISTANT.len()));
        match (h, a) {
            (Some(h), Some(a)) => Some(if h.0 < a.0 { h } else { a }),
            (h, a) => h.or(a),
        }
    };
    let Some((first, _, _)) = next_marker(dialogue) else {
        return Err("no `Human:` / `Assistant:` turns".into());
    };
    if !dialogue[..first].trim().is_empty() {
        return Err("text before the first turn marker".into());
    }
    let mut turns = Vec::new();
    let mut rest = dialogue;
    while let Some((start, role, len)) = next_marker(rest) {
        let body = &rest[start + len..];
        let end = next_marker(body).map_or(body.len(), |m| m.0);
        turns.push(Message {
            role,
            content: strip_space(&body[..end]).to_string(),
        });
        rest = &body[end..];
    }
    Ok(turns)
}

fn strip_space(s: &str) -> &str {
    s.strip_prefix(' ').unwrap_or(s)
}

/// Splits an HH pair into its two scored [`Candidate`]s. The two dialogues share everything up to
/// the final `Assistant:` marker; what follows it is each side's response, taken whole — a response
/// may itself contain a made-up `Human:` turn (two rows of the test split do), which stays part of
/// that response. The shared part ends with the user's query; the turns before it are the history.
pub fn parse_pair(chosen: &str, rejected: &str) -> Result<(Candidate, Candidate), String> {
    let common = chosen
        .char_indices()
        .zip(rejected.chars())
        .find(|((_, a), b)| a != b)
        .map_or(chosen.len().min(rejected.len()), |((i, _), _)| i);
    let marker = chosen[..common]
        .rfind(ASSISTANT)
        .ok_or("the two dialogues share no `Assistant:` turn marker")?;
    let mut turns = parse_turns(&chosen[..marker])?;
    if turns.last().map(|m| m.role) != Some(Role::User) {
        return Err("the shared dialogue does not end with a Human turn before the replies".into());
    }
    let query = turns.pop().map(|m| m.content).unwrap_or_default();
    let candidate = |dialogue: &str| Candidate {
        history: turns.clone(),
        query: query.clone(),
        response: strip_space(&dialogue[marker + ASSISTANT.len()..]).to_string(),
    };
    Ok((candidate(chosen), candidate(rejected)))
}

/// Reads HH files: in a directory the `*.eval.jsonl[.gz]` slices when there are any, else every
/// JSON Lines file (e.g. upstream `*.test.jsonl.gz`); or one file. The subset is the file's name.
pub fn load(path: &Path) -> Result<Dataset, BadInput> {
    let has_eval_slices =
        path.is_dir() && files_in(path, |n| n.contains(".eval.") && is_jsonl(n), "").is_ok();
    let files = files_in(
        path,
        |n| is_jsonl(n) && (!has_eval_slices || n.contains(".eval.")),
        "HH-RLHF *.jsonl",
    )?;
    let mut d = Dataset::new("hh", Kind::Pairwise);
    for file in files {
        let subset = stem(&file);
        for (line, row) in read_jsonl::<HhPair>(&file)? {
            let (chosen, rejected) =
                parse_pair(&row.chosen, &row.rejected).map_err(|e| at(&file, line, e))?;
            let chosen = d.push(chosen);
            let rejected = d.push(rejected);
            d.pairs.push(Pair {
                chosen,
                rejected,
                subset: subset.clone(),
                source: subset.clone(),
            });
        }
        d.files.push(file);
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_assistant_turn_is_the_response_and_earlier_turns_the_history() {
        let shared = "\n\nHuman: hi\n\nAssistant: hello!\n\nHuman: what is 2+2?\n\nAssistant:";
        let (c, r) = parse_pair(&format!("{shared} 4"), &format!("{shared} 5")).unwrap();
        assert_eq!(
            (c.query.as_str(), c.response.as_str()),
            ("what is 2+2?", "4")
        );
        assert_eq!(r.response, "5");
        assert_eq!(
            c.history,
            vec![
                Message {
                    role: Role::User,
                    content: "hi".into()
                },
                Message {
                    role: Role::Assistant,
                    content: "hello!".into()
                },
            ]
        );
        assert_eq!(c.history, r.history);
        let (_, empty) = parse_pair(&format!("{shared} 4"), shared).unwrap();
        assert_eq!(empty.response, "", "an empty reply is still a reply");
    }

    #[test]
    fn a_made_up_human_turn_inside_a_reply_stays_in_that_reply() {
        let shared = "\n\nHuman: plan a trip\n\nAssistant:";
        let rejected = format!("{shared} Go to Cabo.\n\nHuman:  Thanks, anything else?");
        let (c, r) = parse_pair(&format!("{shared} Go to Cabo."), &rejected).unwrap();
        assert_eq!(c.response, "Go to Cabo.");
        assert_eq!(r.response, "Go to Cabo.\n\nHuman:  Thanks, anything else?");
        assert_eq!(r.query, "plan a trip");
    }

    #[test]
    fn malformed_dialogues_are_refused() {
        assert!(parse_pair("just text", "just text").is_err());
        assert!(parse_pair("\n\nHuman: q", "\n\nHuman: q").is_err());
        assert!(parse_pair("\n\nAssistant: a", "\n\nAssistant: b").is_err());
        assert!(parse_pair(
            "x\n\nHuman: q\n\nAssistant: a",
            "x\n\nHuman: q\n\nAssistant: b"
        )
        .is_err());
    }
}
