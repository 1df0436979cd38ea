//! The `.wld` formatter behind `waldoc fmt`.
//!
//! It works on the token stream and the comments between tokens, not on the syntax tree, so
//! nothing the author wrote can be lost: the formatted file has exactly the tokens and the
//! comments of the original, in the same order ([`format`] checks this before it returns).
//! It keeps the author's line breaks (a one-line block stays on one line) and normalizes
//! everything else:
//!
//! - indentation: two spaces per open `{`, `(` or `[`; one more level for a statement that
//!   goes on over several lines;
//! - spaces: one between tokens, none inside `( )` and `[ ]`, before `, ; . :` or after `.`,
//!   none between a name and its call parentheses or index, none after a unary minus; one
//!   inside a one-line block `{ ... }`, none inside a Map literal `{'a': 1}`;
//! - blank lines: at most one in a row, none at the start or end of a block or the file;
//! - comments: kept verbatim, a trailing comment one space after the code, a comment on its
//!   own line indented like the code it precedes.
//!
//! Formatting is idempotent: formatting formatted source gives the same bytes.

use crate::Span;
use crate::lexer::{self, LexError, Token};

/// Why a source was not formatted.
#[derive(Clone, Debug, PartialEq)]
pub enum FormatError {
    /// The source does not lex; its first bad token is at `span`. Fix it and format again.
    Lex {
        /// What is wrong.
        error: LexError,
        /// Where.
        span: Span,
    },
    /// The formatted text would not have had the original's tokens (a bug in the formatter;
    /// the file is left as it is).
    Internal(String),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Lex { span, .. } => {
                write!(f, "the source has a lexical error at bytes {}..{}", span.start, span.end)
            }
            FormatError::Internal(what) => write!(f, "internal error in the formatter: {what}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// One indentation level.
const INDENT: &str = "  ";

/// Formats a `.wld` source (see the module documentation for the style).
///
/// The source must lex without errors; it need not parse or check (the formatter never
/// changes a token, so it cannot change what a file means or which errors it has).
pub fn format(source: &str) -> Result<String, FormatError> {
    let (tokens, errors) = lexer::lex(source);
    if let Some((error, span)) = errors.into_iter().next() {
        return Err(FormatError::Lex { error, span });
    }
    let items = items(source, &tokens);
    let out = Printer::default().print(&items);
    verify(source, &out)?;
    Ok(out)
}

/// A token or a comment, with the line breaks before it in the source.
#[derive(Clone, Copy, Debug)]
struct Item<'s> {
    kind: Kind,
    text: &'s str,
    /// Newlines in the source between the previous item and this one.
    breaks: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    LineComment,
    BlockComment,
    Open(Bracket),
    Close(Bracket),
    Comma,
    Semi,
    Colon,
    Dot,
    /// `-`: unary or binary, decided from the token before it.
    Minus,
    /// A binary operator, an assignment or `->`.
    Operator,
    /// A name, a literal, `self`, `True`...: something a call or an index may follow.
    Operand,
    /// A type keyword that takes parentheses (`List(element: T)`, `Map(...)`,
    /// `External(...)`) or `onCreate(...)`.
    Callee,
    /// Any other keyword.
    Keyword,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bracket {
    Paren,
    Square,
    Brace,
}

fn kind(token: &Token<'_>) -> Kind {
    match token {
        Token::LParen => Kind::Open(Bracket::Paren),
        Token::RParen => Kind::Close(Bracket::Paren),
        Token::LBracket => Kind::Open(Bracket::Square),
        Token::RBracket => Kind::Close(Bracket::Square),
        Token::LBrace => Kind::Open(Bracket::Brace),
        Token::RBrace => Kind::Close(Bracket::Brace),
        Token::Comma => Kind::Comma,
        Token::Semi => Kind::Semi,
        Token::Colon => Kind::Colon,
        Token::Dot => Kind::Dot,
        Token::Minus => Kind::Minus,
        Token::Arrow
        | Token::Assign
        | Token::PlusAssign
        | Token::MinusAssign
        | Token::StarAssign
        | Token::SlashAssign
        | Token::PercentAssign
        | Token::Plus
        | Token::Star
        | Token::Slash
        | Token::Percent
        | Token::EqEq
        | Token::NotEq
        | Token::Lt
        | Token::Le
        | Token::Gt
        | Token::Ge => Kind::Operator,
        Token::Ident(_)
        | Token::Number(_)
        | Token::Text(_)
        | Token::True
        | Token::False
        | Token::Nothing
        | Token::SelfKw => Kind::Operand,
        Token::List | Token::Map | Token::External | Token::OnCreate => Kind::Callee,
        _ => Kind::Keyword,
    }
}

/// The tokens and comments of `source` in order, each with the newlines before it.
fn items<'s>(source: &'s str, tokens: &[lexer::Spanned<'_>]) -> Vec<Item<'s>> {
    let mut items = Vec::with_capacity(tokens.len());
    let mut at = 0;
    for (start, token, end) in tokens {
        let breaks = comments(&source[at..*start], &mut items);
        items.push(Item { kind: kind(token), text: &source[*start..*end], breaks });
        at = *end;
    }
    comments(&source[at..], &mut items);
    items
}

/// Adds the comments in `gap` (the text between two tokens) to `items`; returns the
/// newlines after the last of them.
fn comments<'s>(gap: &'s str, items: &mut Vec<Item<'s>>) -> usize {
    let mut breaks = 0;
    let mut i = 0;
    let bytes = gap.as_bytes();
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                breaks += 1;
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = gap[i..].find('\n').map_or(gap.len(), |n| i + n);
                items.push(Item { kind: Kind::LineComment, text: gap[i..end].trim_end(), breaks });
                breaks = 0;
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // The lexer accepted the source, so every block comment is closed.
                let end = gap[i + 2..].find("*/").map_or(gap.len(), |n| i + 2 + n + 2);
                items.push(Item { kind: Kind::BlockComment, text: &gap[i..end], breaks });
                breaks = 0;
                i = end;
            }
            _ => i += 1,
        }
    }
    breaks
}

#[derive(Default)]
struct Printer {
    out: String,
    /// The open brackets; for braces, whether they open a Map literal.
    open: Vec<(Bracket, bool)>,
    /// The last token on the current line (comments aside), if the line has one.
    last: Option<Kind>,
    /// The last token printed at all, across lines.
    prev: Option<Kind>,
    /// The text of the last token printed.
    prev_text: &'static str,
    /// Whether the last `-` printed was unary.
    unary: bool,
    /// Whether the last token printed was a number literal.
    prev_number: bool,
    /// Whether the current line is empty (nothing printed since the last newline).
    fresh: bool,
    /// Whether the last code line ended where a statement or item may end.
    ended: bool,
    /// Blank lines owed before the next item.
    blank: bool,
    /// Whether the last thing printed (token or comment) was an opening brace.
    after_open: bool,
    /// Whether the last thing printed was a block comment.
    after_comment: bool,
}

impl Printer {
    fn print(mut self, items: &[Item<'_>]) -> String {
        self.fresh = true;
        self.ended = true;
        for item in items {
            if item.breaks > 0 && !self.out.is_empty() {
                self.newline();
                self.blank |= item.breaks > 1;
            }
            match item.kind {
                Kind::LineComment | Kind::BlockComment => self.comment(item),
                _ => self.token(item),
            }
        }
        while self.out.ends_with('\n') {
            self.out.pop();
        }
        self.out.push('\n');
        self.out
    }

    fn newline(&mut self) {
        if !self.fresh {
            self.out.push('\n');
            self.fresh = true;
            if self.last.is_some() {
                self.ended = ends_statement(self.last);
            }
            self.last = None;
        }
    }

    /// Starts a line for an item of `kind`: a blank line if one is owed (never right after an
    /// opening brace or before a closing one), then the indentation.
    fn start_line(&mut self, kind: Kind) {
        let after_open = self.after_open;
        let before_close = matches!(kind, Kind::Close(Bracket::Brace));
        if std::mem::take(&mut self.blank) && !after_open && !before_close && !self.out.is_empty() {
            self.out.push('\n');
        }
        let mut depth = self.open.len();
        if matches!(kind, Kind::Close(_)) {
            depth = depth.saturating_sub(1);
        }
        // A statement that goes on over several lines is indented once more, inside a body
        // (at the top level the only multi-line headers are sequence headers).
        let continues = !self.ended
            && depth > 0
            && !matches!(kind, Kind::Open(Bracket::Brace) | Kind::Close(_))
            && matches!(self.open.last(), Some((Bracket::Brace, false)));
        for _ in 0..depth + usize::from(continues) {
            self.out.push_str(INDENT);
        }
        self.fresh = false;
    }

    fn comment(&mut self, item: &Item<'_>) {
        if self.fresh {
            self.start_line(item.kind);
        } else {
            self.out.push(' ');
        }
        self.out.push_str(item.text);
        self.after_open = false;
        self.after_comment = item.kind == Kind::BlockComment;
        if item.kind == Kind::LineComment {
            // Nothing may follow a line comment on its line.
            self.out.push('\n');
            self.fresh = true;
            if self.last.is_some() {
                self.ended = ends_statement(self.last);
            }
            self.last = None;
        }
    }

    fn token(&mut self, item: &Item<'_>) {
        let kind = item.kind;
        let literal_brace = kind == Kind::Open(Bracket::Brace) && opens_literal(self.prev, self.prev_text);
        if self.fresh {
            self.start_line(kind);
        } else if self.after_comment || self.space_before(kind) {
            self.out.push(' ');
        }
        self.out.push_str(item.text);
        self.after_open = kind == Kind::Open(Bracket::Brace);
        self.after_comment = false;
        self.unary = kind == Kind::Minus && self.minus_is_unary();
        match kind {
            Kind::Open(bracket) => self.open.push((bracket, literal_brace)),
            Kind::Close(_) => {
                self.open.pop();
            }
            _ => {}
        }
        self.last = Some(kind);
        self.prev = Some(kind);
        self.prev_text = keyword_text(item.text);
        self.prev_number = item.text.starts_with(|c: char| c.is_ascii_digit());
    }

    /// Whether a unary minus is being printed: a `-` that cannot be a binary operator.
    fn minus_is_unary(&self) -> bool {
        match self.prev {
            None => true,
            Some(Kind::Operand | Kind::Close(_)) => false,
            Some(Kind::Callee) => false,
            Some(_) => true,
        }
    }

    fn space_before(&self, kind: Kind) -> bool {
        let Some(prev) = self.prev else { return false };
        if self.unary {
            // `-x`, `-(x)`, `-f(x)`; but `- -x` rather than `--x`, and never `-=` or `->`
            // out of a `-` and the token after it.
            return !matches!(kind, Kind::Operand | Kind::Open(_) | Kind::Callee | Kind::Keyword);
        }
        if kind == Kind::Dot && self.prev_number {
            // `1 .x` must not become the number `1.x`... or `1 .5` the number `1.5`.
            return true;
        }
        match (prev, kind) {
            (_, Kind::Comma | Kind::Semi | Kind::Colon | Kind::Dot) => false,
            (Kind::Dot, _) => false,
            (Kind::Open(Bracket::Paren | Bracket::Square), _) => false,
            (_, Kind::Close(Bracket::Paren | Bracket::Square)) => false,
            (Kind::Open(Bracket::Brace), Kind::Close(Bracket::Brace)) => !self.in_literal(),
            (Kind::Open(Bracket::Brace), _) => !self.in_literal(),
            (_, Kind::Close(Bracket::Brace)) => !self.in_literal(),
            // A call or an index: `f(x)`, `xs[0]`, `f(a)(b)`, `List(element: T)`.
            (
                Kind::Operand | Kind::Close(Bracket::Paren | Bracket::Square) | Kind::Callee,
                Kind::Open(Bracket::Paren),
            ) => false,
            (Kind::Operand | Kind::Close(Bracket::Paren | Bracket::Square), Kind::Open(Bracket::Square)) => {
                false
            }
            _ => true,
        }
    }

    /// Whether the innermost open bracket is a Map literal's brace.
    fn in_literal(&self) -> bool {
        matches!(self.open.last(), Some((Bracket::Brace, true)))
    }
}

/// Keywords whose text matters to the brace rule; the others are not kept.
fn keyword_text(text: &str) -> &'static str {
    match text {
        "return" => "return",
        "in" => "in",
        "and" => "and",
        "or" => "or",
        "not" => "not",
        "extCopy" => "extCopy",
        "extAssign" => "extAssign",
        _ => "",
    }
}

/// Whether a `{` after this token opens a Map literal (an expression) rather than a block.
fn opens_literal(prev: Option<Kind>, prev_text: &str) -> bool {
    match prev {
        Some(Kind::Operator | Kind::Minus | Kind::Comma | Kind::Colon) => true,
        Some(Kind::Open(Bracket::Paren | Bracket::Square)) => true,
        Some(Kind::Keyword) => !prev_text.is_empty(),
        _ => false,
    }
}

/// Whether a line that ends with this token may end a statement or an item.
fn ends_statement(last: Option<Kind>) -> bool {
    matches!(
        last,
        None | Some(Kind::Semi | Kind::Open(Bracket::Brace) | Kind::Close(Bracket::Brace) | Kind::Comma)
    )
}

/// Checks that `formatted` has the tokens and comments of `source`, in order.
fn verify(source: &str, formatted: &str) -> Result<(), FormatError> {
    let words = |s: &str| -> Vec<String> {
        let (tokens, _) = lexer::lex(s);
        items(s, &tokens).into_iter().map(|item| item.text.to_owned()).collect::<Vec<_>>()
    };
    let (before, after) = (words(source), words(formatted));
    if before == after {
        return Ok(());
    }
    let at = before.iter().zip(&after).position(|(a, b)| a != b).unwrap_or(before.len().min(after.len()));
    Err(FormatError::Internal(format!(
        "the formatted text differs from the source at token {at}: {:?} became {:?}",
        before.get(at),
        after.get(at)
    )))
}

#[cfg(test)]
mod tests {
    use super::format;

    #[track_caller]
    fn check(source: &str, expected: &str) {
        let out = format(source).expect("formats");
        assert_eq!(out, expected, "formatting\n{source}");
        assert_eq!(format(&out).expect("formats again"), out, "not idempotent");
    }

    #[test]
    fn spaces_between_tokens() {
        check(
            "P\nEndpoint  A ;\nA{Public Function f( Number x,Number y )returns Number{return -x*( y+1 )-f(x , -y)[ 0 ];}}\n",
            "P\nEndpoint A;\nA { Public Function f(Number x, Number y) returns Number { return -x * (y + 1) - f(x, -y)[0]; } }\n",
        );
    }

    #[test]
    fn indentation_follows_brackets_and_continued_statements() {
        check(
            "P\nEndpoint A;\nA {\n        Public Function f() {\n  Number x = 1 +\n2;\nif (x > 1)\nx = 2;\n    else {\nx = f(1,\n2);\n}\n}\n}\n",
            "P\nEndpoint A;\nA {\n  Public Function f() {\n    Number x = 1 +\n      2;\n    if (x > 1)\n      x = 2;\n    else {\n      x = f(1,\n        2);\n    }\n  }\n}\n",
        );
    }

    #[test]
    fn map_literals_and_blocks() {
        check(
            "P\nEndpoint A;\nA {\n  Map(from: Text, to: Number) m = { 'a' : 1, 'b': -2 };\n  Public Function g() {}\n}\n",
            "P\nEndpoint A;\nA {\n  Map(from: Text, to: Number) m = {'a': 1, 'b': -2};\n  Public Function g() { }\n}\n",
        );
    }

    #[test]
    fn comments_are_kept_where_they_are() {
        check(
            "// head\nP   // the protocol\nEndpoint A; /* block */\n\n\n\nA {\n\n      // inside\n  Number n;   // trailing\n\n  /** doc */\n  Number m;\n\n}\n\n\n",
            "// head\nP // the protocol\nEndpoint A; /* block */\n\nA {\n  // inside\n  Number n; // trailing\n\n  /** doc */\n  Number m;\n}\n",
        );
    }

    #[test]
    fn sequences_section_and_types() {
        check(
            "P\nEndpoint A;\nEndpoint B;\nSequences {\n  S:  A.a  ->  B.b;\n}\nA { Function (in: Text, Text; returns: Nothing) cb; List(element: Number) xs = [1, 2]; }\n",
            "P\nEndpoint A;\nEndpoint B;\nSequences {\n  S: A.a -> B.b;\n}\nA { Function (in: Text, Text; returns: Nothing) cb; List(element: Number) xs = [1, 2]; }\n",
        );
    }

    #[test]
    fn ext_statements_take_an_expression() {
        check(
            "P\nEndpoint A;\nA { Public Function f() { extCopy [1, 2] to xs; extCopy (3 + 4) to n; extCopy -1 to n; extCopy {'a': 1} to m; extAssign (e) to x; } }\n",
            "P\nEndpoint A;\nA { Public Function f() { extCopy [1, 2] to xs; extCopy (3 + 4) to n; extCopy -1 to n; extCopy {'a': 1} to m; extAssign (e) to x; } }\n",
        );
        check(
            "P Endpoint A; A { Public Function f() { extCopy[1] to xs; } }",
            "P Endpoint A; A { Public Function f() { extCopy [1] to xs; } }\n",
        );
    }

    #[test]
    fn tokens_never_merge() {
        // Sources that lex but do not parse: the formatter keeps their tokens apart anyway.
        for source in ["x = 1 .5;", "x = - = 2;", "a - > b", "a = - - b;", "x = a-=b;"] {
            let out = format(source).expect("formats");
            assert_eq!(format(&out).expect("formats again"), out);
        }
        assert_eq!(format("x = 1 .5;").unwrap(), "x = 1 .5;\n");
    }

    #[test]
    fn a_source_that_does_not_lex_is_refused() {
        assert!(matches!(
            format("P Endpoint A; A { Number n = 1 & 2; }"),
            Err(super::FormatError::Lex { .. })
        ));
    }
}
