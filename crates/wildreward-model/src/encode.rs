//! The one input encoding of the reward model, shared by training (`wildreward train`), scoring
//! (`serve`'s `/score`, `wildreward score` with `messages`, `eval`) and the DPO client's structured
//! path, so a reward is always read from the token ids the model was trained on.
//!
//! A turn (history, query, response) is rendered with the RM template
//! ([`wildreward_types::template`]) and tokenised. One that is over the budget loses its
//! **history** first (oldest message first, the fewest that fit), then the middle of the **query**,
//! and only when the template and the response alone are over the budget, the middle of the
//! response: BOS, the template's header, the response's end and the footer survive. (Only a budget
//! smaller than the template itself, about 130 tokens, falls back to [`cut_text_ids`] on the whole
//! text, which keeps BOS and the end.) The reference instead right-truncates, cutting off the
//! response it is judging.
//!
//! A ready-made text (`/get_reward` raw, `wildreward score` with `text`) has no structure to cut,
//! so [`cut_text_ids`] keeps its leading special tokens (BOS) and the template header when the text
//! starts with it, and drops tokens from the middle, right after them: the end, where the reward is
//! read, stays.

use crate::error::{ModelError, Result};
use tokenizers::Tokenizer;
use wildreward_types::chat::Message;
use wildreward_types::template::{build_text, EmptyHistory, HEADER};

/// What is put between the two halves of a text whose middle was cut.
pub const ELISION: &str = " … ";

/// Token ids of `text` with the tokenizer's special tokens (BOS) added.
pub fn ids_of(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    tokenizer
        .encode(text, true)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| ModelError::Input(format!("cannot tokenise: {e}")))
}

/// Renders turns with the RM template and tokenises them within a token budget.
#[derive(Clone, Copy)]
pub struct TurnEncoder<'a> {
    tokenizer: &'a Tokenizer,
    max_length: usize,
    empty: EmptyHistory,
}

impl<'a> TurnEncoder<'a> {
    /// An encoder with a budget of `max_length` tokens and `empty` for a turn without history.
    pub fn new(tokenizer: &'a Tokenizer, max_length: usize, empty: EmptyHistory) -> Self {
        Self {
            tokenizer,
            max_length,
            empty,
        }
    }

    /// The budget in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    fn render(&self, history: &[Message], query: &str, response: &str) -> Result<Vec<u32>> {
        ids_of(
            self.tokenizer,
            &build_text(history, query, response, self.empty),
        )
    }

    /// The ids of the whole turn, however long (for `--truncation error`, which refuses rather
    /// than cuts).
    pub fn encode_whole(
        &self,
        history: &[Message],
        query: &str,
        response: &str,
    ) -> Result<Vec<u32>> {
        self.render(history, query, response)
    }

    /// The ids of the turn within the budget, and whether anything was cut (see the module doc
    /// for what goes first).
    pub fn encode(
        &self,
        history: &[Message],
        query: &str,
        response: &str,
    ) -> Result<(Vec<u32>, bool)> {
        let full = self.render(history, query, response)?;
        if full.len() <= self.max_length {
            return Ok((full, false));
        }
        // 1. Drop the oldest history messages: the fewest drops that fit (binary search; fewer
        //    messages never means more tokens).
        let n = history.len();
        let fits = |k: usize| -> Result<Option<Vec<u32>>> {
            let ids = self.render(&history[k..], query, response)?;
            Ok((ids.len() <= self.max_length).then_some(ids))
        };
        if n > 0 {
            if let Some(ids) = fits(n)? {
                let (mut lo, mut hi, mut best) = (0, n, ids);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    match fits(mid)? {
                        Some(ids) => {
                            best = ids;
                            hi = mid;
                        }
                        None => lo = mid + 1,
                    }
                }
                return Ok((best, true));
            }
        }
        // 2. No history left: cut the middle of the query, then (last resort) of the response.
        let (q, ids) = self.cut_middle(query, |q| self.render(&[], q, response))?;
        if let Some(ids) = ids {
            return Ok((ids, true));
        }
        let (_, ids) = self.cut_middle(response, |r| self.render(&[], &q, r))?;
        match ids {
            Some(ids) => Ok((ids, true)),
            // 3. The template alone is over the budget (a tiny --max-length): the whole text cut
            //    as a ready-made one is, keeping BOS and the end (response end and footer).
            None => cut_text_ids(
                self.tokenizer,
                &build_text(history, query, response, self.empty),
                self.max_length,
            ),
        }
    }

    /// Keeps the longest head + tail of `text` (equal halves, by characters, joined by
    /// [`ELISION`]) whose rendering fits; returns the shortened text (empty when nothing fits) and
    /// its ids when something did.
    fn cut_middle(
        &self,
        text: &str,
        render: impl Fn(&str) -> Result<Vec<u32>>,
    ) -> Result<(String, Option<Vec<u32>>)> {
        let chars: Vec<char> = text.chars().collect();
        let keep = |k: usize| -> String {
            let head = k.div_ceil(2);
            let tail = k / 2;
            let mut s: String = chars[..head].iter().collect();
            s.push_str(ELISION);
            s.extend(&chars[chars.len() - tail..]);
            s
        };
        let (mut lo, mut hi) = (0usize, chars.len());
        let mut best: Option<(String, Vec<u32>)> = None;
        while lo <= hi {
            let mid = (lo + hi) / 2;
            let candidate = keep(mid);
            let ids = render(&candidate)?;
            if ids.len() <= self.max_length {
                best = Some((candidate, ids));
                lo = mid + 1;
            } else if mid == 0 {
                break;
            } else {
                hi = mid - 1;
            }
        }
        Ok(match best {
            Some((s, ids)) => (s, Some(ids)),
            None => (String::new(), None),
        })
    }
}

/// The ids of a ready-made text within `max_length` tokens, and whether it was cut: the leading
/// special tokens (BOS) and, when the text starts with the RM template's header, every token of
/// the header are kept, then the last tokens that fit; the middle goes. When the header alone does
/// not fit, only the leading special tokens and the end are kept.
pub fn cut_text_ids(
    tokenizer: &Tokenizer,
    text: &str,
    max_length: usize,
) -> Result<(Vec<u32>, bool)> {
    let enc = tokenizer
        .encode(text, true)
        .map_err(|e| ModelError::Input(format!("cannot tokenise: {e}")))?;
    let ids = enc.get_ids();
    if ids.len() <= max_length {
        return Ok((ids.to_vec(), false));
    }
    let special = enc.get_special_tokens_mask();
    let offsets = enc.get_offsets();
    let leading_specials = special.iter().take_while(|&&s| s == 1).count();
    // Byte offsets (the tokenizer's default): a token belongs to the header when it ends inside it.
    let header_end = if text.starts_with(HEADER) {
        HEADER.len()
    } else {
        0
    };
    let with_header = (0..ids.len())
        .take_while(|&i| special[i] == 1 || (header_end > 0 && offsets[i].1 <= header_end))
        .count();
    let head = if with_header < max_length {
        with_header
    } else {
        leading_specials.min(max_length.saturating_sub(1))
    };
    let tail = max_length - head;
    let mut out = Vec::with_capacity(max_length);
    out.extend_from_slice(&ids[..head]);
    out.extend_from_slice(&ids[ids.len() - tail..]);
    Ok((out, true))
}
