//! A generated protocol of any length that uses most of the language, for the benchmarks of
//! the compiler (`benches/front_end.rs` and the `waldo-bench` program).

/// A protocol of about `lines` lines that uses most of the language.
pub fn protocol(lines: usize) -> String {
    let mut src = String::from(
        "Big\nEndpoint Client;\nEndpoint Server;\n\nStruct Row { Number id; Text name; List(element: Number) values; }\n\nPeered { Number total = 0; Client controls Text owner = ''; }\n\n",
    );
    let mut functions = String::new();
    let mut i = 0;
    // The endpoint bodies at the end add 6 lines.
    let mut count = src.lines().count() + 6;
    while count < lines {
        let before = src.len();
        src.push_str(&format!(
            "Sequence S{i}(Number n, Text t) returns Number r\n{{\n  Number acc = 0;\n  Client.a{i} {{ acc = n * 2 + 1; total += acc; owner = t; }}\n  Server.b{i} {{ if (acc > 10 and not (t in 'xyz')) {{ r = acc % 7; }} else {{ r = -acc; }} }}\n}}\n\n"
        ));
        count += src[before..].matches('\n').count();
        let before = functions.len();
        functions.push_str(&format!(
            "  Public Function f{i}(Number x, List(element: Number) xs) returns Number, Text {{\n    Number sum = 0;\n    for (Number v in xs) {{ sum += v * x - 1; }}\n    Struct Row row;\n    row.values.append(sum);\n    try {{ sum = S{i}(sum, 'k{i}'); }} catch (Exception as e) {{ print(e); }}\n    while (sum > 100) sum /= 2;\n    return sum, toText(sum) + \"\\n\";\n  }}\n"
        ));
        count += functions[before..].matches('\n').count();
        i += 1;
    }
    src.push_str("Client {\n");
    src.push_str(&functions);
    src.push_str("}\n\nServer {\n  Map(from: Text, to: Number) seen = {'a': 1};\n}\n");
    src
}
