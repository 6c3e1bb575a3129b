//! Text analysis shared by indexing, querying and highlighting: words of
//! alphabetic scripts become one token each; runs of CJK characters (which
//! are written without spaces) become overlapping bigrams, so any two
//! adjacent characters of a query match; everything is lowercased and
//! accents are folded (`Zürich` = `zurich`).

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The analyzer the `body` field is indexed and queried with.
pub fn chat_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(ChatTokenizer)
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// Han, Hiragana, Katakana and Hangul: scripts written without spaces.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF     // Hiragana, Katakana
        | 0x31F0..=0x31FF   // Katakana phonetic extensions
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0x1100..=0x11FF   // Hangul jamo
        | 0x3130..=0x318F   // Hangul compatibility jamo
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF66..=0xFF9F   // half-width Katakana
        | 0x20000..=0x2FA1F // CJK extensions B–F, compatibility supplement
    )
}

#[derive(Clone, Default)]
pub struct ChatTokenizer;

impl Tokenizer for ChatTokenizer {
    type TokenStream<'a> = ChatTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> ChatTokenStream<'a> {
        ChatTokenStream {
            text,
            chars: text.char_indices().peekable(),
            token: Token::default(),
            position: None,
        }
    }
}

pub struct ChatTokenStream<'a> {
    text: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    token: Token,
    position: Option<usize>,
}

impl ChatTokenStream<'_> {
    fn emit(&mut self, from: usize, to: usize) {
        let position = self.position.map_or(0, |p| p + 1);
        self.position = Some(position);
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.position = position;
        self.token.position_length = 1;
        self.token.text.clear();
        self.token.text.push_str(&self.text[from..to]);
    }
}

impl TokenStream for ChatTokenStream<'_> {
    fn advance(&mut self) -> bool {
        while let Some((start, c)) = self.chars.next() {
            if is_cjk(c) {
                // A bigram with the next CJK character, or the character
                // alone when it stands by itself.
                let end = start + c.len_utf8();
                match self.chars.peek() {
                    Some(&(next, n)) if is_cjk(n) => self.emit(start, next + n.len_utf8()),
                    _ => {
                        let alone = !self.text[..start].chars().next_back().is_some_and(is_cjk);
                        if !alone {
                            continue;
                        }
                        self.emit(start, end);
                    }
                }
                return true;
            }
            if c.is_alphanumeric() {
                let mut end = start + c.len_utf8();
                while let Some(&(i, n)) = self.chars.peek() {
                    if !n.is_alphanumeric() || is_cjk(n) {
                        break;
                    }
                    end = i + n.len_utf8();
                    self.chars.next();
                }
                self.emit(start, end);
                return true;
            }
        }
        false
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// The analysed tokens of `text`, in order.
pub(crate) fn tokens(text: &str) -> Vec<Token> {
    let mut analyzer = chat_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<String> {
        tokens(text).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn words_fold_case_and_accents() {
        assert_eq!(
            texts("Café au LAIT, Zürich!"),
            ["cafe", "au", "lait", "zurich"]
        );
        assert_eq!(texts("e-mail 42"), ["e", "mail", "42"]);
    }

    #[test]
    fn cjk_runs_become_bigrams_next_to_latin_words() {
        assert_eq!(texts("東京タワー"), ["東京", "京タ", "タワ", "ワー"]);
        assert_eq!(texts("我 爱 Rust编程"), ["我", "爱", "rust", "编程"]);
        assert_eq!(texts("한국어"), ["한국", "국어"]);
        let t = tokens("東京 tower");
        assert_eq!((t[1].offset_from, t[1].position), (7, 1));
    }
}
