//! Help for a name that cannot be found: the other endpoint's member of that name, data
//! declared further down, or a visible name with a similar spelling.

use waldo_grammar as ast;

use super::error::{CheckError, NameHelp};
use super::scope::Cx;
use super::{BUILTINS, Checker};

impl Checker<'_> {
    pub(super) fn unknown_name(&mut self, cx: &Cx, name: &ast::Ident) {
        let wanted = name.as_str();
        // A member of the other endpoint is not visible here: say where it is.
        let elsewhere = self.endpoint_ids().filter(|&e| e != cx.endpoint).find_map(|e| {
            let ep = self.ep(e);
            let function = if ep.function_names.contains_key(wanted) {
                true
            } else if ep.global_names.contains_key(wanted) {
                false
            } else {
                return None;
            };
            Some((function, self.endpoints[e].name.clone()))
        });
        let help = match elsewhere {
            Some((function, owner)) => NameHelp::OtherEndpoint {
                function,
                owner,
                here: self.endpoints.get(cx.endpoint.index()).map_or("", |e| e.name.as_str()).to_owned(),
            },
            None if cx.endpoint.index() < self.endpoints.len()
                && self.ep(cx.endpoint).global_names.contains_key(wanted) =>
            {
                NameHelp::DeclaredLater
            }
            None if literal_help(wanted).is_some() => {
                NameHelp::Literal(literal_help(wanted).unwrap_or_default())
            }
            None => match self.similar_name(cx, wanted) {
                Some(similar) => NameHelp::Similar(similar),
                None => NameHelp::Declare,
            },
        };
        self.report(CheckError::UnknownName { name: name.name.to_string(), span: name.span, help });
    }

    /// A visible name within a small edit distance of `wanted`.
    fn similar_name(&self, cx: &Cx, wanted: &str) -> Option<String> {
        let mut names: Vec<&str> = cx.scope.keys().map(String::as_str).collect();
        if let Some(s) = cx.sequence {
            names.extend(self.sequences[s].data_names.keys().map(String::as_str));
        }
        if cx.endpoint.index() < self.endpoints.len() {
            let ep = self.ep(cx.endpoint);
            names.extend(ep.global_names.keys().map(String::as_str));
            names.extend(ep.function_names.keys().map(String::as_str));
        }
        names.extend(self.peered_names.keys().map(String::as_str));
        names.extend(self.sequence_names.keys().map(String::as_str));
        names.extend(BUILTINS.iter().copied());
        let limit = (wanted.chars().count() / 3).max(1);
        names
            .into_iter()
            .map(|n| (edit_distance(wanted, n), n))
            .filter(|&(d, _)| d <= limit)
            .min()
            .map(|(_, n)| n.to_owned())
    }
}

/// Levenshtein distance between two names, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// What to write for another language's spelling of a literal.
fn literal_help(name: &str) -> Option<&'static str> {
    match name {
        "true" | "false" | "TRUE" | "FALSE" => Some("TrueFalse values are written `True` and `False`"),
        "null" | "nil" | "None" | "none" | "NULL" | "undefined" => Some(
            "Waldo has no null: every variable holds a value of its type (`0`, `''`, `False`, an empty List or Map when not given one)",
        ),
        _ => None,
    }
}
