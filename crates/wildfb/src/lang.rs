//! Language names for conversations whose source did not record one (ShareGPT), in WildChat's naming
//! (the full English names lingua gives, e.g. `English`, `Chinese`), so the pipeline's language filter
//! treats adapted rows like real ones.

use whatlang::Lang;

/// The name WildChat would give the language of `text` (the detector's best guess, as lingua always
/// gives one), or `None` when there is nothing to judge (no letters).
pub fn detect_language(text: &str) -> Option<String> {
    whatlang::detect(text).map(|info| wildchat_name(info.lang()).to_string())
}

/// The language of a conversation from its user messages: that of the first message the detector is
/// confident about, else the best guess over all of them together (code and short replies are often
/// unreliable on their own).
pub fn conversation_language<'a>(
    user_messages: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut all = String::new();
    for text in user_messages {
        if let Some(info) = whatlang::detect(text).filter(|i| i.is_reliable()) {
            return Some(wildchat_name(info.lang()).to_string());
        }
        if all.len() < 8000 {
            all.push_str(text);
            all.push('\n');
        }
    }
    detect_language(&all)
}

/// whatlang's language as WildChat names it (its names follow lingua-py; whatlang's `Mandarin` is
/// WildChat's `Chinese`).
fn wildchat_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Cmn => "Chinese",
        other => other.eng_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_and_chinese_get_wildchat_names() {
        assert_eq!(
            detect_language("Could you please explain how photosynthesis works in plants?")
                .as_deref(),
            Some("English")
        );
        assert_eq!(
            detect_language("请帮我解释一下光合作用在植物中是如何进行的。").as_deref(),
            Some("Chinese")
        );
        assert_eq!(detect_language("12345 !!!"), None);
        assert_eq!(
            conversation_language(["ok", "Wie spät ist es jetzt in Berlin, bitte?", "danke"])
                .as_deref(),
            Some("German")
        );
    }
}
