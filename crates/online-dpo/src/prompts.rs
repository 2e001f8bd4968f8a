//! Prompts (JSONL with `prompt`, or MT-Bench's `turns`), the policy's chat template, and the clean
//! answer text the reward model sees.

use crate::error::{DpoError, Result};
use serde_json::Value;
use std::path::Path;

/// One prompt with a stable id.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// `id` / `question_id` from the file, or the line number.
    pub id: String,
    /// The user's message, as written (the reward model sees this, not the chat markup).
    pub text: String,
}

/// Reads prompts: each line has `prompt` (a string) or `turns` (a list; the first turn is used).
pub fn read_prompts(path: &Path, limit: usize) -> Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).map_err(|e| DpoError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| DpoError::input(format!("{at}: not valid JSON: {e}")))?;
        let text = match (v.get("prompt"), v.get("turns")) {
            (Some(Value::String(p)), _) => p.clone(),
            (_, Some(Value::Array(turns))) => turns
                .first()
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    DpoError::input(format!("{at}: `turns` must start with a string"))
                })?,
            _ => {
                return Err(DpoError::input(format!(
                    "{at}: needs a string `prompt` or a list `turns`"
                )))
            }
        };
        if text.trim().is_empty() {
            return Err(DpoError::input(format!("{at}: the prompt is empty")));
        }
        let id = match v.get("id").or_else(|| v.get("question_id")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("line{}", i + 1),
        };
        out.push(Prompt { id, text });
        if limit > 0 && out.len() == limit {
            break;
        }
    }
    if out.is_empty() {
        return Err(DpoError::input(format!("{}: no prompts", path.display())));
    }
    Ok(out)
}

/// The chat markup a policy was tuned with, read from its tokenizer's chat template.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatFormat {
    /// `<|im_start|>role\n…<|im_end|>` (SmolLM2, Qwen), with the template's default system prompt.
    ChatMl {
        /// System prompt put first when the caller gives none.
        default_system: Option<String>,
    },
    /// `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>` (Llama 3).
    Llama3,
    /// No known template: the prompt as plain text followed by a newline.
    Plain,
}

impl ChatFormat {
    /// Recognises the format from a Jinja chat template.
    pub fn detect(template: Option<&str>) -> Self {
        let Some(t) = template else {
            return ChatFormat::Plain;
        };
        if t.contains("<|start_header_id|>") {
            ChatFormat::Llama3
        } else if t.contains("<|im_start|>") {
            // The default system prompt is the literal the template inserts when none is given.
            let default_system = [
                "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
            ]
            .into_iter()
            .find(|s| t.contains(s))
            .map(str::to_string);
            ChatFormat::ChatMl { default_system }
        } else {
            ChatFormat::Plain
        }
    }

    /// The text that makes the policy answer `user` (with the generation prompt).
    pub fn render(&self, system: Option<&str>, user: &str) -> String {
        match self {
            ChatFormat::ChatMl { default_system } => {
                let mut s = String::new();
                if let Some(sys) = system.or(default_system.as_deref()) {
                    s.push_str(&format!("<|im_start|>system\n{sys}<|im_end|>\n"));
                }
                s.push_str(&format!(
                    "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
                ));
                s
            }
            ChatFormat::Llama3 => {
                let mut s = String::from("<|begin_of_text|>");
                if let Some(sys) = system {
                    s.push_str(&format!(
                        "<|start_header_id|>system<|end_header_id|>\n\n{sys}<|eot_id|>"
                    ));
                }
                s.push_str(&format!(
                    "<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>\
                     <|start_header_id|>assistant<|end_header_id|>\n\n"
                ));
                s
            }
            ChatFormat::Plain => format!("{user}\n"),
        }
    }

    /// Tokens (besides the config's EOS ids) that end an assistant turn.
    pub fn end_of_turn(&self) -> &'static [&'static str] {
        match self {
            ChatFormat::ChatMl { .. } => &["<|im_end|>"],
            ChatFormat::Llama3 => &["<|eot_id|>"],
            ChatFormat::Plain => &[],
        }
    }
}

/// The answer the reward model judges: what follows a reasoning block's `</think>`, trimmed.
pub fn clean_answer(decoded: &str) -> String {
    let tail = decoded.rsplit_once("</think>").map_or(decoded, |(_, t)| t);
    tail.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_lose_reasoning_and_whitespace() {
        assert_eq!(clean_answer("<think>hmm</think>\n\nParis."), "Paris.");
        assert_eq!(clean_answer("  Paris. "), "Paris.");
    }

    #[test]
    fn formats_render_their_markup() {
        let chatml = ChatFormat::detect(Some("{{'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>'}}"));
        assert_eq!(
            chatml.render(None, "Hi"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let llama = ChatFormat::detect(Some("<|start_header_id|>"));
        assert!(llama
            .render(None, "Hi")
            .ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
        assert_eq!(ChatFormat::detect(None), ChatFormat::Plain);
    }

    #[test]
    fn prompts_read_both_shapes_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.jsonl");
        std::fs::write(
            &p,
            "{\"prompt\":\"a\",\"id\":\"x\"}\n{\"question_id\":81,\"turns\":[\"b\",\"c\"]}\n",
        )
        .unwrap();
        let got = read_prompts(&p, 0).unwrap();
        assert_eq!(
            got[0],
            Prompt {
                id: "x".into(),
                text: "a".into()
            }
        );
        assert_eq!(
            got[1],
            Prompt {
                id: "81".into(),
                text: "b".into()
            }
        );
        std::fs::write(&p, "{\"prompt\":\"a\"}\n{\"text\":1}\n").unwrap();
        let err = read_prompts(&p, 0).unwrap_err().to_string();
        assert!(err.contains("p.jsonl:2"), "{err}");
    }
}
