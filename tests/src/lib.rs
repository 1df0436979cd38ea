//! Shared helpers of the data-driven test suites in `harness/`.
//!
//! A corpus file carries its expectation in its first lines: an invalid program has a
//! `// error: E0001 E0020` line listing the codes of the diagnostics it must produce, in
//! source order; a valid program has no such line and produces no error, and exactly the
//! warnings listed on its `// warning: W0001` line, if it has one.

use waldo_compiler::{Color, Diagnostic, SourceMap};

/// The codes listed on a `// error:` line near the top of `source`, if any.
pub fn expected_codes(source: &str) -> Option<Vec<String>> {
    header(source, "error:")
}

/// The codes listed on a `// warning:` line near the top of `source`, if any: a valid program
/// may expect warnings.
pub fn expected_warnings(source: &str) -> Vec<String> {
    header(source, "warning:").unwrap_or_default()
}

fn header(source: &str, key: &str) -> Option<Vec<String>> {
    source.lines().take(5).find_map(|line| {
        let rest = line.trim().strip_prefix("//")?.trim().strip_prefix(key)?;
        Some(rest.split_whitespace().map(str::to_owned).collect())
    })
}

/// Runs the front end on `source` (named `name` in diagnostics); returns the diagnostics and
/// their plain-text rendering.
pub fn diagnose(name: &str, source: &str) -> (Vec<Diagnostic>, String) {
    let mut map = SourceMap::new();
    let checked = waldo_compiler::check_source(&mut map, name, source);
    let rendered = map.render(&checked.diagnostics, Color::Never);
    (checked.diagnostics, rendered)
}
