//! The corpus: every `.wld` file is one test, its expectation written in the file itself.
//!
//! - `corpus/valid/*.wld` and `examples/protocols/*.wld`: no error, and exactly the warnings
//!   on the `// warning:` line if there is one.
//! - `corpus/invalid/*.wld`: exactly the codes on the `// error:` line, in order, and the
//!   rendered diagnostics match the insta snapshot `harness/snapshots/invalid__<name>.snap`.

use datatest_stable::Utf8Path;
use waldo_tests::{diagnose, expected_codes, expected_warnings};

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
    Ok(())
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
    Ok(())
}

datatest_stable::harness! {
    { test = valid, root = "corpus/valid", pattern = r"\.wld$" },
    { test = valid, root = "../examples/protocols", pattern = r"\.wld$" },
    { test = invalid, root = "corpus/invalid", pattern = r"\.wld$" },
}
