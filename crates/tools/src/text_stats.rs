//! `text_stats`: text → words, sentences, paragraphs, top terms and a reading-time
//! estimate (`stats.json`). Unicode-aware: words are runs of letters and digits
//! (apostrophes inside words kept), terms are lower-cased.

use crate::{Deadline, Output, ToolError};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

pub const MAX_TEXT_BYTES: usize = 2_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    text: String,
    #[serde(default = "default_top")]
    top: usize,
    #[serde(default = "default_wpm")]
    words_per_minute: u32,
    #[serde(default = "yes")]
    skip_stopwords: bool,
}

fn default_top() -> usize {
    10
}
fn default_wpm() -> u32 {
    200
}
fn yes() -> bool {
    true
}

/// Common English function words, left out of the top terms.
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been",
    "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he",
    "her", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "it's", "just", "me",
    "more", "my", "no", "not", "of", "on", "one", "or", "our", "out", "she", "so", "some", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "up", "us",
    "was", "we", "were", "what", "when", "which", "who", "will", "with", "would", "you", "your",
];

/// Splits text into words: letters and digits, with inner apostrophes.
pub fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let inner_apostrophe = (c == '\'' || c == '\u{2019}')
            && start.is_some()
            && chars.get(k + 1).is_some_and(|&(_, n)| n.is_alphanumeric());
        if c.is_alphanumeric() || inner_apostrophe {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            out.push(&text[s..i]);
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// Sentences: runs of text ending in `.`, `!` or `?` (or the end), with a word in them.
pub fn sentence_count(text: &str) -> usize {
    let mut count = 0;
    let mut has_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() {
            has_word = true;
        } else if matches!(c, '.' | '!' | '?') {
            while chars.peek().is_some_and(|n| matches!(n, '.' | '!' | '?')) {
                chars.next();
            }
            let at_boundary = chars
                .peek()
                .is_none_or(|n| n.is_whitespace() || matches!(n, '"' | '\'' | ')'));
            if at_boundary && has_word {
                count += 1;
                has_word = false;
            }
        }
    }
    count + usize::from(has_word)
}

pub fn run(params: &serde_json::Value, deadline: &Deadline) -> Result<Vec<Output>, ToolError> {
    let p: Params = crate::params(params)?;
    if p.text.len() > MAX_TEXT_BYTES {
        return Err(ToolError::TooLarge(format!(
            "text is over {MAX_TEXT_BYTES} bytes"
        )));
    }
    if !(1..=100).contains(&p.top) {
        return Err(ToolError::InvalidInput("top must be 1..=100".into()));
    }
    if !(50..=1000).contains(&p.words_per_minute) {
        return Err(ToolError::InvalidInput(
            "words_per_minute must be 50..=1000".into(),
        ));
    }
    let words = words(&p.text);
    deadline.check()?;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in &words {
        *counts.entry(w.to_lowercase()).or_default() += 1;
    }
    let unique_words = counts.len();
    let mut terms: Vec<(String, usize)> = counts
        .into_iter()
        .filter(|(t, _)| !(p.skip_stopwords && STOPWORDS.contains(&t.as_str())))
        .filter(|(t, _)| !t.chars().all(|c| c.is_ascii_digit()))
        .collect();
    terms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    terms.truncate(p.top);
    let sentences = sentence_count(&p.text);
    let paragraphs = p
        .text
        .split("\n\n")
        .filter(|para| para.chars().any(char::is_alphanumeric))
        .count();
    let letters: usize = words
        .iter()
        .map(|w| w.chars().filter(|c| c.is_alphanumeric()).count())
        .sum();
    let reading_s = (words.len() as f64 * 60.0 / f64::from(p.words_per_minute)).ceil() as u64;
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            0.0
        } else {
            ((a as f64 / b as f64) * 100.0).round() / 100.0
        }
    };
    let stats = json!({
        "characters": p.text.chars().count(),
        "characters_no_spaces": p.text.chars().filter(|c| !c.is_whitespace()).count(),
        "words": words.len(),
        "unique_words": unique_words,
        "sentences": sentences,
        "paragraphs": paragraphs,
        "avg_word_length": ratio(letters, words.len()),
        "avg_words_per_sentence": ratio(words.len(), sentences),
        "reading_time": {
            "words_per_minute": p.words_per_minute,
            "seconds": reading_s,
            "minutes": ((reading_s as f64 / 60.0) * 10.0).round() / 10.0,
        },
        "top_terms": terms.iter().map(|(t, c)| json!({"term": t, "count": c})).collect::<Vec<_>>(),
    });
    let bytes =
        serde_json::to_vec_pretty(&stats).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
    Ok(vec![Output::new("stats.json", bytes)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stats(text: &str) -> serde_json::Value {
        let out = run(
            &json!({"text": text}),
            &Deadline::after(Duration::from_secs(5)),
        )
        .unwrap();
        serde_json::from_slice(&out[0].bytes).unwrap()
    }

    #[test]
    fn counts_words_sentences_and_paragraphs() {
        let s =
            stats("The cat sat. The cat ran! Did the dog see it?\n\nA new paragraph, Mr. Smith's.");
        assert_eq!(s["words"], 16);
        assert_eq!(s["sentences"], 5, "{s}"); // "Mr." ends one: a known, documented simplification
        assert_eq!(s["paragraphs"], 2);
        assert_eq!(s["top_terms"][0], json!({"term": "cat", "count": 2}));
    }

    #[test]
    fn unicode_and_apostrophes() {
        assert_eq!(
            words("naïve café — don't ‘quote’ 東京"),
            ["naïve", "café", "don't", "quote", "東京"]
        );
    }

    #[test]
    fn reading_time_uses_the_rate() {
        let text = "word ".repeat(400);
        let s = stats(&text);
        assert_eq!(s["reading_time"]["seconds"], 120);
        assert_eq!(s["reading_time"]["minutes"], 2.0);
    }

    #[test]
    fn empty_text_is_all_zeroes() {
        let s = stats("");
        assert_eq!(
            (s["words"].as_u64(), s["sentences"].as_u64()),
            (Some(0), Some(0))
        );
        assert_eq!(s["avg_words_per_sentence"], 0.0);
    }

    #[test]
    fn limits_and_bad_params() {
        let d = Deadline::after(Duration::from_secs(5));
        let big = "a".repeat(MAX_TEXT_BYTES + 1);
        assert!(matches!(
            run(&json!({"text": big}), &d),
            Err(ToolError::TooLarge(_))
        ));
        assert!(matches!(
            run(&json!({"text": "x", "top": 0}), &d),
            Err(ToolError::InvalidInput(_))
        ));
        assert!(matches!(
            run(&json!({"txt": "x"}), &d),
            Err(ToolError::InvalidInput(_))
        ));
        assert!(matches!(
            run(&json!({"text": 5}), &d),
            Err(ToolError::InvalidInput(_))
        ));
    }
}
