//! The long explanations behind `waldoc explain CODE`: one Markdown page per diagnostic code
//! in `compiler/explain/`, each with a wrong and a fixed example (tested in
//! `tests/explain.rs`: the wrong one produces the code, the fixed one checks clean).

macro_rules! pages {
    ($($code:ident),* $(,)?) => {
        /// Every page, by code.
        pub const PAGES: &[(&str, &str)] = &[
            $((stringify!($code), include_str!(concat!("../explain/", stringify!($code), ".md")))),*
        ];
    };
}

pages!(
    E0001, E0002, E0003, E0004, E0005, E0006, E0007, E0008, E0009, E0010, E0011, E0012, E0013, E0014, E0015,
    E0016, E0017, E0018, E0019, E0020, E0021, E0101, E0102, E0103, E0104, E0105, E0106, E0107, E0108, E0109,
    E0110, E0111, E0112, E0113, E0114, E0115, E0116, E0117, E0118, E0119, E0120, E0121, E0122, E0130, E0131,
    E0132, E0140, E0141, E0142, E0143, E0144, E0145, E0146, E0147, E0148, E0149, E0150, E0151, E0152, E0153,
    E0154, W0001, W0002, W0003,
);

/// The page for `code` (case-insensitive, `e107` and `E0107` both work).
pub fn page(code: &str) -> Option<&'static str> {
    let code = code.trim().to_ascii_uppercase();
    let normalized = match code.split_at_checked(1) {
        Some((letter @ ("E" | "W"), digits))
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) =>
        {
            format!("{letter}{digits:0>4}")
        }
        _ => code,
    };
    PAGES.iter().find(|(c, _)| *c == normalized).map(|(_, text)| *text)
}
