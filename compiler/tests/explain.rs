//! Every diagnostic code has an explanation page whose examples do what they say.

use waldo_compiler::{SourceMap, codes, explain};

/// The fenced ```wld blocks after "Wrong:" and after "Fixed:".
fn examples(page: &str) -> Option<(String, String)> {
    let block_after = |marker: &str| {
        let rest = &page[page.find(marker)? + marker.len()..];
        let start = rest.find("```wld\n")? + 7;
        let end = rest[start..].find("```")?;
        Some(rest[start..start + end].to_owned())
    };
    Some((block_after("Wrong:")?, block_after("Fixed:")?))
}

fn codes_of(source: &str) -> Vec<&'static str> {
    let mut map = SourceMap::new();
    waldo_compiler::check_source(&mut map, "example.wld", source).diagnostics.iter().map(|d| d.code).collect()
}

#[test]
fn every_code_has_a_page_and_every_page_a_code() {
    for (code, _) in codes::ALL {
        let page = explain::page(code).unwrap_or_else(|| panic!("no explanation page for {code}"));
        assert!(page.starts_with(&format!("# {code}: ")), "the page of {code} must start with `# {code}: `");
    }
    assert_eq!(
        explain::PAGES.len(),
        codes::ALL.len(),
        "a page exists for a code that codes.rs does not list"
    );
}

#[test]
fn wrong_examples_give_their_code_and_fixed_ones_check_clean() {
    // A 64 MiB file or a non-UTF-8 file cannot be shown as an example.
    let shown_as_text = ["E0018", "E0019"];
    for (code, page) in explain::PAGES {
        if shown_as_text.contains(code) {
            continue;
        }
        let (wrong, fixed) =
            examples(page).unwrap_or_else(|| panic!("{code}: no ```wld blocks after Wrong: and Fixed:"));
        let found = codes_of(&wrong);
        assert_eq!(found.first(), Some(code), "{code}: the wrong example gives {found:?}");
        let found = codes_of(&fixed);
        assert!(found.is_empty(), "{code}: the fixed example gives {found:?}");
    }
}

#[test]
fn codes_are_found_however_they_are_typed() {
    assert_eq!(explain::page("e107"), explain::page("E0107"));
    assert!(explain::page("W2").is_some());
    assert!(explain::page("E9999").is_none());
    assert!(explain::page("nonsense").is_none());
}
