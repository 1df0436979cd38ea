//! The Waldo protocol compiler.
//!
//! [`check_source`] parses a `.wld` source, checks it ([`check`]) and reports every mistake as
//! a [`Diagnostic`]; [`SourceMap`] renders them (rustc-style text or JSON). The result is a
//! checked [`ir::Protocol`] with its fingerprint, which the code generator consumes. The
//! `waldoc` command is a thin layer over this.

#![warn(missing_docs)]

pub mod build;
pub mod check;
pub mod codegen;
pub mod codes;
pub mod diagnostics;
pub mod explain;
pub mod graph;
pub mod ir;
#[doc(hidden)]
pub mod sample;

pub use build::{Config, compile, compile_or_exit};
pub use diagnostics::{Color, Diagnostic, Label, Severity, SourceMap};
pub use waldo_grammar::{File, FileId};

/// What the compiler made of one file.
pub struct Checked {
    /// The file, as the source map knows it.
    pub file: FileId,
    /// The syntax tree (complete only when `diagnostics` has no error).
    pub tree: File,
    /// The checked protocol, when the file parsed without error (meaningful for code
    /// generation only when `diagnostics` has no error).
    pub protocol: Option<ir::Protocol>,
    /// Every diagnostic, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }
}

/// Adds `source` to `map` under `name`, parses and checks it.
///
/// The checker runs only on a file without syntax errors: on a partly recovered tree most of
/// what it would say would be consequences of the syntax error.
pub fn check_source(map: &mut SourceMap, name: &str, source: &str) -> Checked {
    let parsed = parse_source(map, name, source);
    if parsed.has_errors() {
        return parsed;
    }
    let (protocol, diagnostics) = check::check(&parsed.tree);
    let protocol = protocol.with_source(source);
    Checked { protocol: Some(protocol), diagnostics, ..parsed }
}

/// Adds `source` to `map` under `name` and parses it, without checking (`waldoc ast`): the
/// diagnostics are the syntax errors only, and `protocol` is `None`.
pub fn parse_source(map: &mut SourceMap, name: &str, source: &str) -> Checked {
    let file = map.add(name, source);
    let (tree, errors) = waldo_grammar::parse(source, file);
    let diagnostics = errors.iter().map(|e| diagnostics::from_parse_error(e, source)).collect();
    Checked { file, tree, protocol: None, diagnostics }
}

/// Why [`format_source`] did not format a file.
#[derive(Debug)]
pub enum FormatFailure {
    /// The file does not parse: its syntax errors. Only a file that parses is formatted.
    Syntax(Vec<Diagnostic>),
    /// A bug in the formatter, caught before anything was written.
    Internal(String),
}

/// Formats `source` (`waldoc fmt`): the formatted text, or why not.
///
/// The checker does not run: a file with type errors but no syntax errors is formatted.
pub fn format_source(map: &mut SourceMap, name: &str, source: &str) -> Result<String, FormatFailure> {
    let file = map.add(name, source);
    let (_, errors) = waldo_grammar::parse(source, file);
    if !errors.is_empty() {
        return Err(FormatFailure::Syntax(
            errors.iter().map(|e| diagnostics::from_parse_error(e, source)).collect(),
        ));
    }
    waldo_grammar::format::format(source).map_err(|e| FormatFailure::Internal(e.to_string()))
}

/// Reads the file at `path` into `map` and checks it. A file that is not UTF-8 gives a
/// diagnostic (`E0019`) pointing at the first bad byte; a file that cannot be read is an
/// `io::Error` for the caller to report.
pub fn check_path(map: &mut SourceMap, path: &std::path::Path) -> std::io::Result<Checked> {
    read_path(map, path, check_source)
}

/// Reads the file at `path` into `map` and parses it, without checking (see
/// [`parse_source`]); a file that is not UTF-8 is reported as by [`check_path`].
pub fn parse_path(map: &mut SourceMap, path: &std::path::Path) -> std::io::Result<Checked> {
    read_path(map, path, parse_source)
}

fn read_path(
    map: &mut SourceMap,
    path: &std::path::Path,
    then: fn(&mut SourceMap, &str, &str) -> Checked,
) -> std::io::Result<Checked> {
    let bytes = std::fs::read(path)?;
    let name = path.display().to_string();
    match String::from_utf8(bytes) {
        Ok(source) => Ok(then(map, &name, &source)),
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let source = String::from_utf8_lossy(err.as_bytes()).into_owned();
            // Offsets in the lossy copy match the original up to the first bad byte.
            let file = map.add(name, source);
            let (tree, _) = waldo_grammar::parse("", file);
            let diagnostic = Diagnostic::error(
                codes::E_NOT_UTF8,
                "this file is not valid UTF-8",
                file,
                Label::new(
                    waldo_grammar::Span::new(valid, valid + char::REPLACEMENT_CHARACTER.len_utf8()),
                    "invalid byte",
                ),
            )
            .with_help("save the file as UTF-8");
            Ok(Checked { file, tree, protocol: None, diagnostics: vec![diagnostic] })
        }
    }
}
