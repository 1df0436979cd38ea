//! Diagnostics: what the compiler tells people about their `.wld` files.
//!
//! Every mistake is first data — a [`Diagnostic`] with a stable code, a primary label on the
//! exact span, optional secondary labels and help lines — and is only turned into text at the
//! edge: [`SourceMap::render`] draws it with codespan-reporting (rustc-style snippets), and
//! [`SourceMap::to_json`] gives one JSON object per diagnostic for tools.
//!
//! The codes are listed in [`crate::codes`]; the mapping from syntax errors to diagnostics is
//! [`from_parse_error`].

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term;
use serde::Serialize;
use waldo_grammar::{FileId, LexError, ParseError, ParseErrorKind, Span};

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The program is rejected.
    Error,
    /// The program is accepted, but something looks wrong.
    Warning,
}

/// A span with a message, shown under the source line.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What to say there (may be empty).
    pub message: String,
}

impl Label {
    /// A label at `span` saying `message`.
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Label { span, message: message.into() }
    }
}

/// One diagnostic about one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The stable code, `E0xxx` or `W0xxx` (see `waldoc explain`).
    pub code: &'static str,
    /// The headline.
    pub message: String,
    /// The file the labels point into.
    pub file: FileId,
    /// The exact place of the mistake.
    pub primary: Label,
    /// Other places that matter (a declaration, the other endpoint...).
    pub secondary: Vec<Label>,
    /// How to fix it.
    pub help: Vec<String>,
}

impl Diagnostic {
    /// An error with a code, a headline and its primary label.
    pub fn error(code: &'static str, message: impl Into<String>, file: FileId, primary: Label) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file,
            primary,
            secondary: Vec::new(),
            help: Vec::new(),
        }
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    /// Adds a secondary label.
    pub fn with_secondary(mut self, label: Label) -> Self {
        self.secondary.push(label);
        self
    }

    /// Adds a secondary label to a diagnostic being built in place.
    pub fn with_secondary_mut(&mut self, label: Label) -> &mut Self {
        self.secondary.push(label);
        self
    }

    fn to_codespan(&self) -> cs::Diagnostic<usize> {
        let file = self.file.0 as usize;
        let base = match self.severity {
            Severity::Error => cs::Diagnostic::error(),
            Severity::Warning => cs::Diagnostic::warning(),
        };
        let mut labels =
            vec![cs::Label::primary(file, self.primary.span.range()).with_message(&self.primary.message)];
        labels.extend(
            self.secondary
                .iter()
                .map(|l| cs::Label::secondary(file, l.span.range()).with_message(&l.message)),
        );
        base.with_code(self.code)
            .with_message(&self.message)
            .with_labels(labels)
            .with_notes(self.help.iter().map(|h| format!("help: {h}")).collect())
    }
}

/// Whether rendered diagnostics use colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// Colour.
    Always,
    /// Plain text.
    Never,
}

/// The sources diagnostics point into, by [`FileId`].
#[derive(Default)]
pub struct SourceMap {
    files: SimpleFiles<String, String>,
}

/// One label of a JSON diagnostic, with 1-based lines and columns (columns count characters).
#[derive(Serialize)]
struct JsonSpan<'a> {
    file: &'a str,
    byte_start: usize,
    byte_end: usize,
    line_start: usize,
    column_start: usize,
    line_end: usize,
    column_end: usize,
    is_primary: bool,
    label: &'a str,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    severity: Severity,
    code: &'a str,
    message: &'a str,
    spans: Vec<JsonSpan<'a>>,
    help: &'a [String],
    rendered: String,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, source: impl Into<String>) -> FileId {
        let id = self.files.add(name.into(), source.into());
        FileId(u32::try_from(id).expect("fewer than 2^32 source files"))
    }

    /// The source text of a file.
    pub fn source(&self, file: FileId) -> &str {
        self.files.get(file.0 as usize).map(|f| f.source().as_str()).unwrap_or("")
    }

    /// The name (path) of a file.
    pub fn name(&self, file: FileId) -> &str {
        self.files.get(file.0 as usize).map(|f| f.name().as_str()).unwrap_or("")
    }

    /// Renders diagnostics as rustc-style text.
    pub fn render(&self, diagnostics: &[Diagnostic], color: Color) -> String {
        let mut out = String::new();
        for d in diagnostics {
            out.push_str(&self.render_one(d, color));
        }
        out
    }

    fn render_one(&self, d: &Diagnostic, color: Color) -> String {
        let config = term::Config::default();
        let diagnostic = d.to_codespan();
        match color {
            Color::Never => term::emit_into_string(&config, &self.files, &diagnostic)
                .unwrap_or_else(|err| format!("error[{}]: {} ({err})\n", d.code, d.message)),
            Color::Always => {
                let mut buffer = termcolor::Buffer::ansi();
                match term::emit_to_write_style(&mut buffer, &config, &self.files, &diagnostic) {
                    Ok(()) => String::from_utf8_lossy(buffer.as_slice()).into_owned(),
                    Err(err) => format!("error[{}]: {} ({err})\n", d.code, d.message),
                }
            }
        }
    }

    /// One JSON object per diagnostic, one per line.
    pub fn to_json(&self, diagnostics: &[Diagnostic]) -> String {
        let mut out = String::new();
        for d in diagnostics {
            let file = d.file.0 as usize;
            let name = self.name(d.file);
            let span = |label: &'_ Label, is_primary: bool| {
                let start = self.files.location(file, label.span.lo()).ok();
                let end = self.files.location(file, label.span.hi()).ok();
                JsonSpan {
                    file: name,
                    byte_start: label.span.lo(),
                    byte_end: label.span.hi(),
                    line_start: start.as_ref().map_or(0, |l| l.line_number),
                    column_start: start.as_ref().map_or(0, |l| l.column_number),
                    line_end: end.as_ref().map_or(0, |l| l.line_number),
                    column_end: end.as_ref().map_or(0, |l| l.column_number),
                    is_primary,
                    label: "",
                }
            };
            let mut spans = vec![JsonSpan { label: &d.primary.message, ..span(&d.primary, true) }];
            spans.extend(d.secondary.iter().map(|l| JsonSpan { label: &l.message, ..span(l, false) }));
            let json = JsonDiagnostic {
                severity: d.severity,
                code: d.code,
                message: &d.message,
                spans,
                help: &d.help,
                rendered: self.render_one(d, Color::Never),
            };
            out.push_str(&serde_json::to_string(&json).expect("diagnostics serialize to JSON"));
            out.push('\n');
        }
        out
    }
}

/// Turns a syntax error into a diagnostic, with its code, label and help.
pub fn from_parse_error(err: &ParseError, source: &str) -> Diagnostic {
    use crate::codes::*;
    let span = err.span;
    let message = err.kind.to_string();
    let d = |code, label: &str| Diagnostic::error(code, message.clone(), err.file, Label::new(span, label));
    match &err.kind {
        ParseErrorKind::UnexpectedToken { found, expected } => {
            let diag = d(E_UNEXPECTED_TOKEN, "unexpected here");
            match unexpected_token_help(source, span.start as usize, found, expected) {
                Some(help) => diag.with_help(help),
                None => diag,
            }
        }
        ParseErrorKind::MissingSemicolon { .. } => d(E_MISSING_SEMICOLON, "expected `;` here")
            .with_help("end declarations, assignments, `return` and expression statements with `;`"),
        ParseErrorKind::UnexpectedEof { expected } => {
            let diag = d(E_UNEXPECTED_EOF, "the file ends here");
            if expected.iter().any(|e| e == "`}`") {
                diag.with_help("a `{` is not closed: add the missing `}`")
            } else {
                diag.with_help("the file ends in the middle of a construct: complete it")
            }
        }
        ParseErrorKind::Lex(lex) => match lex {
            LexError::UnexpectedChar => {
                let c = source.get(span.range()).and_then(|s| s.chars().next()).map(String::from).unwrap_or_default();
                let help = match c.as_str() {
                    "!" => "write `not x` for negation and `!=` for inequality",
                    "&" => "write `and` for logical and",
                    "|" => "write `or` for logical or",
                    "#" => "comments start with `//` or are enclosed in `/* */`",
                    _ => "remove it: Waldo names are letters, digits and `_`, and its operators are listed in the language reference",
                };
                d(E_UNEXPECTED_CHAR, "not part of any Waldo token").with_help(help)
            }
            LexError::UnterminatedText => {
                let opening = Span::new(span.lo(), span.lo() + 1);
                Diagnostic::error(E_UNTERMINATED_TEXT, message.clone(), err.file, Label::new(opening, "this quote is never closed"))
                    .with_help("add the closing quote; text literals may span lines, so it may be missing well before the end of the file")
            }
            LexError::BadEscape { .. } => d(E_BAD_ESCAPE, "unknown escape")
                .with_help(r#"the escapes are `\\`, `\'`, `\"`, `\n` and `\t`; write `\\` for a backslash"#),
            LexError::UnterminatedComment => {
                let opening = Span::new(span.lo(), (span.lo() + 2).min(span.hi()));
                Diagnostic::error(E_UNTERMINATED_COMMENT, message.clone(), err.file, Label::new(opening, "this comment never ends"))
                    .with_help("close it with `*/` (comments do not nest)")
            }
            LexError::NumberTooLarge => d(E_NUMBER_TOO_LARGE, "too large for a Number")
                .with_help("Numbers are 64-bit floats: the largest is about 1.8e308"),
            LexError::Legacy(legacy) => d(E_LEGACY, "legacy syntax").with_help(legacy.replacement()),
        },
        ParseErrorKind::Legacy(legacy) => d(E_LEGACY, "legacy syntax").with_help(legacy.replacement()),
        ParseErrorKind::MissingProtocolName => d(E_MISSING_PROTOCOL_NAME, "the protocol's name should come before this")
            .with_help("start the file with the protocol's name, e.g. `Bank` on the line before `Endpoint ...`"),
        ParseErrorKind::TooManyEndpoints { .. } => d(E_TOO_MANY_ENDPOINTS, "extra endpoint")
            .with_help("a protocol joins one or two endpoints; describe other pairs in their own protocols and link them with endpoint calls"),
        ParseErrorKind::MissingVisibility => d(E_MISSING_VISIBILITY, "needs `Public` or `Private`")
            .with_help("write `Public Function` for a function the host and other endpoints may call, `Private Function` otherwise"),
        ParseErrorKind::InvalidAssignTarget => d(E_INVALID_ASSIGN_TARGET, "not a variable, field or element")
            .with_help("assign to a variable (`x`), a field (`s.f`) or an element (`l[i]`); to compare, use `==` in a condition"),
        ParseErrorKind::CompoundMultiAssign => d(E_COMPOUND_MULTI_ASSIGN, "compound operator with several targets")
            .with_help("write `a, b = f();` and then update each target on its own"),
        ParseErrorKind::ChainedComparison => d(E_CHAINED_COMPARISON, "second comparison")
            .with_help("compare twice and join with `and`: `a < b and b < c`"),
        ParseErrorKind::UnknownExceptionKind { .. } => d(E_UNKNOWN_EXCEPTION_KIND, "not an exception kind")
            .with_help("catch `ApplicationException`, `NetworkException`, or `Exception` for both"),
        ParseErrorKind::TryWithoutHandler => d(E_TRY_WITHOUT_HANDLER, "nothing handles this `try`")
            .with_help("add `catch (Exception as e) { ... }` or `finally { ... }`, or remove the `try`"),
        ParseErrorKind::EmptyStruct => d(E_EMPTY_STRUCT, "declared without fields")
            .with_help("declare at least one field, e.g. `Struct Point { Number x; Number y; }`"),
        ParseErrorKind::TooDeep { .. } => d(E_TOO_DEEP, "this is nested too deeply")
            .with_help("split the expression or block: give parts names with local variables or functions"),
        ParseErrorKind::FileTooLarge { .. } => d(E_FILE_TOO_LARGE, "this file is larger than the compiler accepts")
            .with_help("split the protocol, or check that this is the right file"),
    }
}

/// The code of `source` before byte `at`, without the comments and spaces that end it.
fn code_before(source: &str, at: usize) -> &str {
    let mut before = source.get(..at).unwrap_or("").trim_end();
    loop {
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        if let Some(comment) = before[line_start..].find("//") {
            before = before[..line_start + comment].trim_end();
        } else if before.ends_with("*/")
            && let Some(open) = before.rfind("/*")
        {
            before = before[..open].trim_end();
        } else {
            return before;
        }
    }
}

/// The help for `found` where the parser expected one of `expected`, at byte `at` of
/// `source`: what the likely mistake is when the tokens around say so, else what may come
/// here.
fn unexpected_token_help(source: &str, at: usize, found: &str, expected: &[String]) -> Option<String> {
    let expects = |token: &str| expected.iter().any(|e| e == token);
    let before = code_before(source, at);
    // The word just before, when the code before ends with one.
    let word = {
        let start = before
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        &before[start..]
    };
    let after_word = before[..before.len() - word.len()].trim_end();
    let statement_start = after_word.is_empty() || after_word.ends_with([';', '{', '}']);
    if found.starts_with("keyword") && expects("an identifier") {
        return Some(format!("{found} is reserved and cannot be used as a name; choose another name"));
    }
    if expects("`(`") && matches!(word, "if" | "elseIf" | "while" | "for") {
        let example = if word == "for" {
            "for (Number i in range(0, 3)) { ... }".to_owned()
        } else {
            format!("{word} (x > 1) {{ ... }}")
        };
        return Some(format!("`{word}` takes its condition in parentheses: `{example}`"));
    }
    for op in ["+", "-"] {
        let doubled = format!("{op}{op}");
        if (found == format!("`{op}`") && before.ends_with(op)) || before.ends_with(&doubled) {
            return Some(format!("Waldo has no `{doubled}`: write `x {op}= 1;`"));
        }
    }
    if matches!(found, "keyword `else`" | "keyword `elseIf`") {
        return Some("`else` and `elseIf` come right after the `}` of an `if` or `elseIf`".into());
    }
    if found == "`(`" && expects("`=`") && expects("`;`") {
        return Some(
            "a function is declared with `Public Function name(...)` or `Private Function name(...)`; data with `Type name;` or `Type name = value;`".into(),
        );
    }
    if found.starts_with("identifier") && statement_start && !word.is_empty() {
        if word == "print" || word == "signal" {
            return Some(format!("`{word}` is called with parentheses: `{word}(x);`"));
        }
        if word.chars().next().is_some_and(char::is_lowercase) {
            return Some(format!(
                "a declaration starts with a type, not `{word}`: `Number`, `Text`, `TrueFalse`, `List(element: T)`, `Map(from: K, to: V)`, `Struct S`, as in `Number y = 1;`"
            ));
        }
    }
    if found == "`:`" && before.ends_with(|c: char| c == '\'' || c == '"' || c.is_ascii_digit()) {
        return Some(
            "`:` only separates a Map literal's keys from their values (`m = {'a': 1};`), and a Map literal is only a value, never a statement; assignment is `=`".into(),
        );
    }
    let value = ["identifier", "number", "a text literal", "keyword `True`", "keyword `False`"];
    if expects("`,`") && value.iter().any(|v| found.starts_with(v)) {
        return Some(format!("separate arguments and elements with `,`, or remove {found}"));
    }
    for (open, close) in [("(", "`)`"), ("[", "`]`")] {
        if expects(close) && matches!(found, "`;`" | "`{`" | "`}`") {
            return Some(format!("a `{open}` is not closed: add the missing {close} before {found}"));
        }
    }
    match expected {
        [] => None,
        [one] => Some(format!("write {one} here, or remove {found}")),
        [a, b] => Some(format!("write {a} or {b} here, or remove {found}")),
        _ => Some(format!("write what the message lists here, or remove {found}")),
    }
}
