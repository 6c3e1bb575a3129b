//! Snippets for the embedded backend: the passage around the first match,
//! HTML-escaped, each matching token wrapped in `<mark>`.

use std::collections::HashSet;
use std::ops::Range;

use crate::SNIPPET_CHARS;
use crate::analysis::tokens;

/// Characters of context kept before the first match.
const LEAD_CHARS: usize = 40;

/// What the query matches: whole tokens and, for a word still being typed,
/// token prefixes.
#[derive(Default)]
pub(crate) struct Terms {
    pub exact: HashSet<String>,
    pub prefixes: Vec<String>,
}

impl Terms {
    fn matches(&self, token: &str) -> bool {
        self.exact.contains(token) || self.prefixes.iter().any(|p| token.starts_with(p.as_str()))
    }
}

pub(crate) fn snippet(body: &str, terms: &Terms) -> String {
    let mut marks: Vec<Range<usize>> = Vec::new();
    for token in tokens(body) {
        if !terms.matches(&token.text) {
            continue;
        }
        match marks.last_mut() {
            // CJK bigrams overlap: one mark over both.
            Some(last) if token.offset_from <= last.end => last.end = last.end.max(token.offset_to),
            _ => marks.push(token.offset_from..token.offset_to),
        }
    }
    let first = marks.first().map_or(0, |m| m.start);
    let start = body[..first]
        .char_indices()
        .rev()
        .nth(LEAD_CHARS.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    let end = body[start..]
        .char_indices()
        .nth(SNIPPET_CHARS)
        .map_or(body.len(), |(i, _)| start + i);

    let mut out = String::with_capacity(end - start + 32);
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for mark in marks.iter().filter(|m| m.start < end) {
        let (from, to) = (mark.start.max(at), mark.end.min(end));
        escape_into(&mut out, &body[at..from]);
        out.push_str("<mark>");
        escape_into(&mut out, &body[from..to]);
        out.push_str("</mark>");
        at = to;
    }
    escape_into(&mut out, &body[at..end]);
    if end < body.len() {
        out.push('…');
    }
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(exact: &[&str], prefixes: &[&str]) -> Terms {
        Terms {
            exact: exact.iter().map(|s| s.to_string()).collect(),
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn marks_matches_and_escapes_the_rest() {
        assert_eq!(
            snippet("<b>Café</b> & Zürich", &terms(&["cafe"], &["zu"])),
            "&lt;b&gt;<mark>Café</mark>&lt;/b&gt; &amp; <mark>Zürich</mark>"
        );
        assert_eq!(
            snippet("東京タワーに行きました", &terms(&["東京", "京タ"], &[])),
            "<mark>東京タ</mark>ワーに行きました"
        );
    }

    #[test]
    fn long_bodies_are_cut_around_the_first_match() {
        let body = format!("{} needle {}", "hay ".repeat(100), "straw ".repeat(100));
        let s = snippet(&body, &terms(&["needle"], &[]));
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.contains("<mark>needle</mark>"));
        assert!(s.chars().count() < SNIPPET_CHARS + 20);
    }
}
