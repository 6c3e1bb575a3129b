//! The query language users type: words, "quoted phrases", and a last word
//! still being typed, which matches as a prefix (search-as-you-type).

/// One part of a query; every clause must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clause {
    /// A whitespace-free word. It may still analyse into several tokens
    /// (CJK text, `e-mail`), which then must appear in that order.
    Word(String),
    /// Quoted text: its tokens must appear in that order.
    Phrase(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedQuery {
    pub clauses: Vec<Clause>,
    /// The last clause is a word the user has not finished typing.
    pub prefix_last: bool,
}

/// The most clauses a query may have; the rest are ignored.
pub const MAX_CLAUSES: usize = 16;

impl ParsedQuery {
    pub fn parse(text: &str) -> ParsedQuery {
        let mut clauses = Vec::new();
        let mut rest = text;
        let mut ends_in_word = false;
        while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
            rest = &rest[start..];
            if let Some(quoted) = rest.strip_prefix('"') {
                let (phrase, after) = quoted.split_once('"').unwrap_or((quoted, ""));
                clauses.push(Clause::Phrase(phrase.to_owned()));
                rest = after;
                ends_in_word = false;
            } else {
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"')
                    .unwrap_or(rest.len());
                clauses.push(Clause::Word(rest[..end].to_owned()));
                rest = &rest[end..];
                ends_in_word = rest.is_empty();
            }
        }
        clauses.truncate(MAX_CLAUSES);
        ParsedQuery {
            prefix_last: ends_in_word && clauses.len() <= MAX_CLAUSES,
            clauses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_phrases_and_a_trailing_prefix() {
        let q = ParsedQuery::parse(r#"  lunch "at noon" tomo"#);
        assert_eq!(
            q.clauses,
            vec![
                Clause::Word("lunch".into()),
                Clause::Phrase("at noon".into()),
                Clause::Word("tomo".into()),
            ]
        );
        assert!(q.prefix_last);
        assert!(!ParsedQuery::parse("lunch ").prefix_last);
        assert!(!ParsedQuery::parse(r#"lunch "noon""#).prefix_last);
        // An unterminated quote runs to the end.
        assert_eq!(
            ParsedQuery::parse(r#""big bad"#).clauses,
            vec![Clause::Phrase("big bad".into())]
        );
        assert!(ParsedQuery::parse("   ").clauses.is_empty());
    }
}
