//! The diagnostics about a file as a whole, which no corpus program can carry: a source that
//! is not UTF-8 (E0019) and one over the size limit (E0018). Rendered output is snapshotted.

use waldo_compiler::{Color, SourceMap};

#[test]
fn a_latin1_file_is_reported_at_its_first_bad_byte() {
    let path = std::path::Path::new("tests/data/latin1.wld");
    let mut map = SourceMap::new();
    let checked = waldo_compiler::check_path(&mut map, path).expect("the file is readable");
    let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0019"]);
    insta::assert_snapshot!(map.render(&checked.diagnostics, Color::Never));
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let mut source = String::from("Big Endpoint A; A { }\n");
    source.push_str(&" ".repeat(waldo_grammar::MAX_SOURCE_LEN));
    let mut map = SourceMap::new();
    let checked = waldo_compiler::check_source(&mut map, "big.wld", &source);
    let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0018"]);
    insta::assert_snapshot!(map.render(&checked.diagnostics, Color::Never));
}
