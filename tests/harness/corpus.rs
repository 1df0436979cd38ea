//! The corpus: every `.wld` file is one test, its expectation written in the file itself.
//!
//! - `corpus/valid/*.wld` and `examples/protocols/*.wld`: no error, and exactly the warnings
//!   on the `// warning:` line if there is one.
//! - `corpus/invalid/*.wld`: exactly the codes on the `// error:` line, in order, and the
//!   rendered diagnostics match the insta snapshot `harness/snapshots/invalid__<name>.snap`.
//! - every file that lexes: `waldoc fmt` gives an idempotent result that is the same protocol
//!   (fingerprint) with the same diagnostics.

use datatest_stable::Utf8Path;
use waldo_compiler::SourceMap;
use waldo_tests::{diagnose, expected_codes, expected_warnings};

/// `waldoc fmt` on a program that checks: idempotent, and the same protocol (fingerprint)
/// with the same diagnostics afterwards.
fn formats_to_the_same_protocol(path: &Utf8Path, source: &str) -> datatest_stable::Result<()> {
    let formatted = waldo_grammar::format::format(source).map_err(|e| format!("{path}: {e}"))?;
    if waldo_grammar::format::format(&formatted).as_deref() != Ok(formatted.as_str()) {
        return Err(format!("{path}: formatting is not idempotent").into());
    }
    let fingerprint = |text: &str| {
        let checked = waldo_compiler::check_source(&mut SourceMap::new(), path.as_str(), text);
        let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code).collect();
        (checked.protocol.map(|p| p.fingerprint()), codes)
    };
    if fingerprint(source) != fingerprint(&formatted) {
        return Err(format!("{path}: the formatted program is another protocol:\n{formatted}").into());
    }
    Ok(())
}

fn valid(path: &Utf8Path, source: String) -> datatest_stable::Result<()> {
    if let Some(codes) = expected_codes(&source) {
        return Err(format!("{path} is in a valid corpus but expects {codes:?}").into());
    }
    let (diagnostics, rendered) = diagnose(path.as_str(), &source);
    let actual: Vec<&str> = diagnostics.iter().map(|d| d.code).collect();
    if actual != expected_warnings(&source) {
        return Err(
            format!("{path} should have no diagnostics but its expected warnings, got:\n{rendered}").into()
        );
    }
    formats_to_the_same_protocol(path, &source)
}

fn invalid(path: &Utf8Path, source: String) -> datatest_stable::Result<()> {
    let expected = expected_codes(&source)
        .ok_or_else(|| format!("{path} has no `// error: CODE...` line near its top"))?;
    let (diagnostics, rendered) = diagnose(path.as_str(), &source);
    let actual: Vec<&str> = diagnostics.iter().map(|d| d.code).collect();
    if actual != expected {
        return Err(format!("{path}: expected {expected:?}, got {actual:?}:\n{rendered}").into());
    }
    let name = format!("invalid__{}", path.file_stem().unwrap_or("unnamed"));
    insta::with_settings!({
        snapshot_path => "snapshots",
        prepend_module_to_snapshot => false,
        description => source.as_str(),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, rendered);
    });
    // A program with mistakes formats too (if it lexes), keeping its mistakes.
    if waldo_grammar::lexer::lex(&source).1.is_empty() {
        formats_to_the_same_protocol(path, &source)?;
    }
    Ok(())
}

datatest_stable::harness! {
    { test = valid, root = "corpus/valid", pattern = r"\.wld$" },
    { test = valid, root = "../examples/protocols", pattern = r"\.wld$" },
    { test = invalid, root = "corpus/invalid", pattern = r"\.wld$" },
}
