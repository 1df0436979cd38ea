//! The logos lexer and the token stream the parser reads.
//!
//! Lexing never stops at a bad character: every failure becomes a [`Token::Error`] carrying
//! a [`LexError`], which the parser treats like any unexpected token (so its error recovery
//! still works), while [`lex`] also returns the failures so each is reported exactly once.
//! Legacy Waldo keywords (`Jump`, `onComplete`) lex as errors that say they are unsupported.

use logos::{FilterResult, Logos};

/// What went wrong while lexing. `offset` fields are relative to the start of the token.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum LexError {
    /// A character that starts no token.
    #[default]
    UnexpectedChar,
    /// A text literal without its closing quote.
    UnterminatedText,
    /// An unknown escape such as `\q` in a text literal.
    BadEscape {
        /// Byte offset of the backslash within the token.
        offset: u32,
        /// The character after the backslash.
        escaped: char,
    },
    /// A `/*` comment without its `*/`.
    UnterminatedComment,
    /// A number literal too large to be a 64-bit float.
    NumberTooLarge,
    /// A keyword of Waldo 2013 that this language no longer has.
    Legacy(Legacy),
}

/// Syntax of Waldo 2013 that is rejected with an explanation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legacy {
    /// `Jump`: sequences now list their blocks in order; control moves by itself.
    Jump,
    /// `onComplete`: effects after commit are now written with `signal` and `print`.
    OnComplete,
    /// `finish()`: a sequence ends after its last block.
    Finish,
    /// `refresh()`: peered writes now replicate by themselves.
    Refresh,
    /// `keys(m)`: iterate a Map directly (`for (k in m)`), in ascending key order.
    Keys,
}

impl Legacy {
    /// The legacy syntax as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Legacy::Jump => "Jump",
            Legacy::OnComplete => "onComplete",
            Legacy::Finish => "finish()",
            Legacy::Refresh => "refresh()",
            Legacy::Keys => "keys(...)",
        }
    }

    /// What to write instead.
    pub fn replacement(self) -> &'static str {
        match self {
            Legacy::Jump => {
                "list the blocks in order in the sequence (and in `Sequences`); control passes to the next block by itself"
            }
            Legacy::OnComplete => {
                "use `signal(f, args...)` or `print(x)`, which run once after the transaction commits"
            }
            Legacy::Finish => "remove it: a sequence ends after its last block",
            Legacy::Refresh => "remove it: peered data replicates within every transaction",
            Legacy::Keys => {
                "iterate the Map itself: `for (Text k in m) { ... }` visits keys in ascending order"
            }
        }
    }
}

/// The tokens (the book's language chapter, "Lexical structure").
#[derive(Logos, Clone, Debug, PartialEq)]
#[logos(error = LexError)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"//[^\n]*", allow_greedy = true))]
pub enum Token<'a> {
    /// Skipped; only reported when unterminated.
    #[token("/*", block_comment)]
    BlockComment,

    // Keywords.
    #[token("Endpoint")]
    Endpoint,
    #[token("Symmetric")]
    Symmetric,
    #[token("Sequences")]
    Sequences,
    #[token("Sequence")]
    Sequence,
    #[token("Peered")]
    Peered,
    #[token("Struct")]
    Struct,
    #[token("Public")]
    Public,
    #[token("Private")]
    Private,
    #[token("Function")]
    Function,
    #[token("onCreate")]
    OnCreate,
    #[token("returns")]
    Returns,
    #[token("controls")]
    Controls,
    #[token("Nothing")]
    Nothing,
    #[token("Number")]
    NumberType,
    #[token("Text")]
    TextType,
    #[token("TrueFalse")]
    TrueFalse,
    #[token("List")]
    List,
    #[token("Map")]
    Map,
    #[token("External")]
    External,
    #[token("element")]
    Element,
    #[token("from")]
    From,
    #[token("to")]
    To,
    #[token("in")]
    In,
    #[token("True")]
    True,
    #[token("False")]
    False,
    #[token("and")]
    And,
    #[token("or")]
    Or,
    #[token("not")]
    Not,
    #[token("if")]
    If,
    #[token("elseIf")]
    ElseIf,
    #[token("else")]
    Else,
    #[token("while")]
    While,
    #[token("for")]
    For,
    #[token("break")]
    Break,
    #[token("continue")]
    Continue,
    #[token("return")]
    Return,
    #[token("try")]
    Try,
    #[token("catch")]
    Catch,
    #[token("finally")]
    Finally,
    #[token("as")]
    As,
    #[token("extAssign")]
    ExtAssign,
    #[token("extCopy")]
    ExtCopy,
    #[token("self")]
    SelfKw,

    // Legacy keywords, lexed only to be rejected with a precise message.
    #[token("Jump", |_| legacy(Legacy::Jump))]
    #[token("onComplete", |_| legacy(Legacy::OnComplete))]
    Legacy,

    /// A name.
    #[regex("[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice())]
    Ident(&'a str),
    /// A number literal.
    #[regex(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?", number)]
    Number(f64),
    /// A text literal, escapes resolved.
    #[token("'", |lex| text(lex, '\''))]
    #[token("\"", |lex| text(lex, '"'))]
    Text(String),

    // Punctuation.
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(";")]
    Semi,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token(".")]
    Dot,
    #[token("->")]
    Arrow,
    #[token("=")]
    Assign,
    #[token("+=")]
    PlusAssign,
    #[token("-=")]
    MinusAssign,
    #[token("*=")]
    StarAssign,
    #[token("/=")]
    SlashAssign,
    #[token("%=")]
    PercentAssign,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("%")]
    Percent,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,

    /// A lexing failure, passed to the parser so that it can recover around it.
    Error(LexError),
}

fn legacy(which: Legacy) -> FilterResult<(), LexError> {
    FilterResult::Error(LexError::Legacy(which))
}

fn block_comment<'a>(lex: &mut logos::Lexer<'a, Token<'a>>) -> FilterResult<(), LexError> {
    match lex.remainder().find("*/") {
        Some(end) => {
            lex.bump(end + 2);
            FilterResult::Skip
        }
        None => {
            lex.bump(lex.remainder().len());
            FilterResult::Error(LexError::UnterminatedComment)
        }
    }
}

fn number<'a>(lex: &mut logos::Lexer<'a, Token<'a>>) -> Result<f64, LexError> {
    // The regex only admits valid float syntax, so parsing fails only by overflow.
    match lex.slice().parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(LexError::NumberTooLarge),
    }
}

/// Scans a text literal after its opening `quote`, resolving escapes.
fn text<'a>(lex: &mut logos::Lexer<'a, Token<'a>>, quote: char) -> Result<String, LexError> {
    let rest = lex.remainder();
    let mut value = String::new();
    let mut chars = rest.char_indices();
    let mut bad_escape = None;
    while let Some((at, c)) = chars.next() {
        if c == quote {
            lex.bump(at + c.len_utf8());
            return match bad_escape {
                Some(err) => Err(err),
                None => Ok(value),
            };
        }
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next() {
            Some((_, 'n')) => value.push('\n'),
            Some((_, 't')) => value.push('\t'),
            Some((_, e @ ('\\' | '\'' | '"'))) => value.push(e),
            Some((_, other)) => {
                bad_escape.get_or_insert(LexError::BadEscape {
                    offset: u32::try_from(at + 1).unwrap_or(u32::MAX),
                    escaped: other,
                });
            }
            None => break,
        }
    }
    lex.bump(rest.len());
    Err(LexError::UnterminatedText)
}

/// A token with its byte span, as the parser consumes it.
pub type Spanned<'a> = (usize, Token<'a>, usize);

/// Lexes a whole source. Returns every token (failures included as [`Token::Error`]) and,
/// separately, each failure with its span.
pub fn lex(source: &str) -> (Vec<Spanned<'_>>, Vec<(LexError, crate::Span)>) {
    let mut tokens = Vec::with_capacity(source.len() / 4);
    let mut errors: Vec<(LexError, crate::Span)> = Vec::new();
    let mut lexer = Token::lexer(source);
    while let Some(result) = lexer.next() {
        let span = lexer.span();
        let token = match result {
            Ok(token) => token,
            Err(err) => {
                let mut at = crate::Span::new(span.start, span.end);
                if let LexError::BadEscape { offset, escaped } = &err {
                    let start = span.start + *offset as usize;
                    at = crate::Span::new(start, start + 1 + escaped.len_utf8());
                }
                // A run of bad characters (`&&`, `!!`) is one mistake.
                match errors.last_mut() {
                    Some((LexError::UnexpectedChar, last))
                        if err == LexError::UnexpectedChar && last.end == at.start =>
                    {
                        last.end = at.end;
                    }
                    _ => errors.push((err.clone(), at)),
                }
                Token::Error(err)
            }
        };
        tokens.push((span.start, token, span.end));
    }
    (tokens, errors)
}

impl Token<'_> {
    /// How the token is named in a diagnostic, e.g. "`;`", "keyword `if`", "identifier `x`".
    pub fn describe(&self, text: &str) -> String {
        match self {
            Token::Ident(name) => format!("identifier `{name}`"),
            Token::Number(_) => format!("number `{text}`"),
            Token::Text(_) => "a text literal".to_owned(),
            Token::Error(_) => format!("`{text}`"),
            t if t.is_keyword() => format!("keyword `{text}`"),
            _ => format!("`{text}`"),
        }
    }

    fn is_keyword(&self) -> bool {
        matches!(
            self,
            Token::Endpoint
                | Token::Symmetric
                | Token::Sequences
                | Token::Sequence
                | Token::Peered
                | Token::Struct
                | Token::Public
                | Token::Private
                | Token::Function
                | Token::OnCreate
                | Token::Returns
                | Token::Controls
                | Token::Nothing
                | Token::NumberType
                | Token::TextType
                | Token::TrueFalse
                | Token::List
                | Token::Map
                | Token::External
                | Token::Element
                | Token::From
                | Token::To
                | Token::In
                | Token::True
                | Token::False
                | Token::And
                | Token::Or
                | Token::Not
                | Token::If
                | Token::ElseIf
                | Token::Else
                | Token::While
                | Token::For
                | Token::Break
                | Token::Continue
                | Token::Return
                | Token::Try
                | Token::Catch
                | Token::Finally
                | Token::As
                | Token::ExtAssign
                | Token::ExtCopy
                | Token::SelfKw
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Token<'_>> {
        lex(src).0.into_iter().map(|(_, t, _)| t).collect()
    }

    #[test]
    fn keywords_beat_identifiers_but_longer_names_win() {
        assert_eq!(
            kinds("Number Numbers in inx _x"),
            vec![
                Token::NumberType,
                Token::Ident("Numbers"),
                Token::In,
                Token::Ident("inx"),
                Token::Ident("_x")
            ]
        );
    }

    #[test]
    fn numbers_and_escapes() {
        assert_eq!(
            kinds("12 3.5 0.25 1e9 2.5E-3"),
            vec![
                Token::Number(12.0),
                Token::Number(3.5),
                Token::Number(0.25),
                Token::Number(1e9),
                Token::Number(2.5e-3)
            ]
        );
        assert_eq!(
            kinds(r#"'a\'b' "c\"d\n\t\\""#),
            vec![Token::Text("a'b".into()), Token::Text("c\"d\n\t\\".into())]
        );
        assert_eq!(kinds("'multi\nline'"), vec![Token::Text("multi\nline".into())]);
    }

    #[test]
    fn comments_are_skipped() {
        assert_eq!(
            kinds("a // one\n /* two\n */ b /** three */ c"),
            vec![Token::Ident("a"), Token::Ident("b"), Token::Ident("c")]
        );
    }

    #[test]
    fn failures_are_tokens_and_reported_with_spans() {
        let (tokens, errors) = lex("a $ 'x\\q' /* open");
        assert_eq!(tokens.len(), 4);
        assert_eq!(
            errors,
            vec![
                (LexError::UnexpectedChar, crate::Span::new(2, 3)),
                (LexError::BadEscape { offset: 2, escaped: 'q' }, crate::Span::new(6, 8)),
                (LexError::UnterminatedComment, crate::Span::new(10, 17)),
            ]
        );
    }

    #[test]
    fn unterminated_text_and_legacy_keywords() {
        let (_, errors) = lex("Jump onComplete 'abc");
        let kinds: Vec<_> = errors.into_iter().map(|(e, _)| e).collect();
        assert_eq!(
            kinds,
            vec![
                LexError::Legacy(Legacy::Jump),
                LexError::Legacy(Legacy::OnComplete),
                LexError::UnterminatedText
            ]
        );
    }

    #[test]
    fn huge_numbers_are_errors() {
        let (_, errors) = lex("1e999");
        assert_eq!(errors[0].0, LexError::NumberTooLarge);
    }
}
