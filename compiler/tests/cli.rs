//! The `waldoc` command as users run it: exit codes, output streams, formats.

use std::process::Command;

fn waldoc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_waldoc")).args(args).output().expect("waldoc runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("waldoc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("temp file");
    path
}

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/protocols/bank.wld");

#[test]
fn check_of_a_valid_file_succeeds_quietly() {
    let (code, stdout, stderr) = waldoc(&["check", EXAMPLE]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("no problems found"), "{stderr}");
}

#[test]
fn check_reports_every_error_and_fails() {
    let bad = temp_file(
        "bad.wld",
        b"P\nEndpoint A;\nStruct S { }\nA {\n  Number n = 1\n  Public Function f() { }\n}\n",
    );
    let (code, _, stderr) = waldoc(&["check", bad.to_str().unwrap(), EXAMPLE]);
    assert_eq!(code, 1);
    assert!(stderr.contains("error[E0016]"), "{stderr}");
    assert!(stderr.contains("error[E0020]"), "{stderr}");
    assert!(stderr.contains("2 errors and 0 warnings in 2 files"), "{stderr}");
    assert!(!stderr.contains("\u{1b}["), "no colour when not on a terminal");
}

#[test]
fn json_diagnostics_are_one_object_per_line() {
    let bad = temp_file("json.wld", b"P\nEndpoint A;\nA { Number n = 1e999; }\n");
    let (code, stdout, _) = waldoc(&["check", "--message-format", "json", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1);
    let value: serde_json::Value = serde_json::from_str(lines[0]).expect("valid JSON");
    assert_eq!(value["code"], "E0017");
    assert_eq!(value["severity"], "error");
    assert_eq!(value["spans"][0]["line_start"], 3);
    assert_eq!(value["spans"][0]["column_start"], 16);
    assert_eq!(value["spans"][0]["byte_start"], 29);
    assert_eq!(value["spans"][0]["is_primary"], true);
    assert!(value["help"][0].as_str().unwrap().contains("64-bit"));
}

#[test]
fn colour_can_be_forced() {
    let bad = temp_file("colour.wld", b"P Endpoint A; A { $ }");
    let (_, _, stderr) = waldoc(&["check", "--color", "always", bad.to_str().unwrap()]);
    assert!(stderr.contains("\u{1b}["), "{stderr}");
}

#[test]
fn unreadable_and_non_utf8_files_are_reported() {
    let (code, _, stderr) = waldoc(&["check", "/definitely/not/here.wld"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read `/definitely/not/here.wld`"), "{stderr}");
    assert!(stderr.contains("1 error and 0 warnings in 1 file"), "the summary counts it: {stderr}");

    let latin1 = temp_file("latin1.wld", b"P\nEndpoint A;\nA { Text t = 'caf\xe9'; }\n");
    let (code, _, stderr) = waldoc(&["check", latin1.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("error[E0019]: this file is not valid UTF-8"), "{stderr}");
    assert!(stderr.contains("3:18"), "points at the bad byte: {stderr}");
}

#[test]
fn ast_prints_the_tree() {
    let (code, stdout, _) = waldoc(&["ast", EXAMPLE]);
    assert_eq!(code, 0);
    assert!(stdout.contains("protocol: \"Bank\"@"), "{stdout}");
    assert!(stdout.contains("Transfer"), "{stdout}");
}

#[test]
fn ast_of_a_file_with_type_errors_prints_its_tree() {
    let typed =
        temp_file("typed.wld", b"P\nEndpoint A;\nA { Public Function f() returns Number { return 'x'; } }\n");
    let (code, stdout, stderr) = waldoc(&["ast", typed.to_str().unwrap()]);
    assert_eq!(code, 0, "type errors are `waldoc check`'s business: {stderr}");
    assert!(stdout.contains("protocol: \"P\"@"), "{stdout}");
    assert!(stdout.contains("Return"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
    // `check` still reports them.
    let (code, _, stderr) = waldoc(&["check", typed.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("error[E0107]"), "{stderr}");
}

#[test]
fn ast_of_a_file_that_does_not_parse_prints_the_syntax_errors_and_fails() {
    let broken =
        temp_file("broken.wld", b"P\nEndpoint A;\nA {\n  Number n = 1\n  Public Function f() { }\n}\n");
    let (code, stdout, stderr) = waldoc(&["ast", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "no tree for a file that does not parse: {stdout}");
    assert!(stderr.contains("error[E0020]") && stderr.contains("4:15"), "{stderr}");
}

#[test]
fn usage_errors_exit_with_2() {
    let (code, _, stderr) = waldoc(&["check"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("FILE") || stderr.contains("<FILES>"), "{stderr}");
}

#[test]
fn explain_prints_a_page_or_lists_the_codes() {
    let (code, stdout, _) = waldoc(&["explain", "E0107"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("# E0107: "), "{stdout}");
    assert!(stdout.contains("Wrong:") && stdout.contains("Fixed:"), "{stdout}");

    let (code, _, stderr) = waldoc(&["explain", "E9999"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("`E9999` is not a Waldo diagnostic code"), "{stderr}");
    assert!(stderr.contains("E0101"), "lists the known codes: {stderr}");
}

#[test]
fn json_diagnostics_carry_secondary_labels() {
    let bad = temp_file(
        "starter.wld",
        b"P\nEndpoint Client;\nEndpoint Server;\nSequence Ask() returns Number n\n{\n  Client.ask { }\n  Server.answer { n = 1; }\n}\nClient { }\nServer { Public Function poke() returns Number { return Ask(); } }\n",
    );
    let (code, stdout, _) = waldoc(&["check", "--message-format", "json", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    let value: serde_json::Value =
        serde_json::from_str(stdout.lines().next().expect("one line")).expect("valid JSON");
    assert_eq!(value["code"], "E0143");
    assert_eq!(value["spans"][0]["is_primary"], true);
    assert_eq!(value["spans"][0]["label"], "started on `Server`");
    assert_eq!(value["spans"][1]["is_primary"], false);
    assert_eq!(value["spans"][1]["label"], "its first block runs on `Client`");
    assert_eq!(value["spans"][1]["line_start"], 6);
    assert!(value["rendered"].as_str().expect("text").contains("error[E0143]"));
}

#[test]
fn graph_draws_the_sequences() {
    let ping_pong = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/protocols/ping_pong.wld");
    let (code, stdout, stderr) = waldoc(&["graph", ping_pong]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!(stdout);

    let (code, svg, _) = waldoc(&["graph", "--format", "svg", EXAMPLE]);
    assert_eq!(code, 0);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    for label in
        ["Bank", "Branch", "Vault", "Transfer(from_acct, to_acct, amount)", "debit", "credit", "returns ok"]
    {
        assert!(svg.contains(label), "the picture shows {label}");
    }

    let bad = temp_file("graph_bad.wld", b"P Endpoint A; A { Number x = 'no'; }");
    let (code, _, stderr) = waldoc(&["graph", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("has errors"), "{stderr}");
}

#[test]
fn build_writes_one_file_per_protocol_and_can_choose_endpoints() {
    let out_dir = std::env::temp_dir().join(format!("waldoc-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let bank = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/protocols/bank.wld");
    let dir = out_dir.to_str().expect("a UTF-8 path");
    let (code, stdout, stderr) = waldoc(&["build", bank, "--out-dir", dir, "--endpoint", "Vault"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("bank.rs"), "{stdout}");
    let generated = std::fs::read_to_string(out_dir.join("bank.rs")).expect("the generated file");
    assert!(generated.contains("pub mod vault") && !generated.contains("pub mod branch"));

    let (code, _, stderr) = waldoc(&["build", bank, "--out-dir", dir, "--endpoint", "Teller"]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("error: cannot generate the code of `"), "{stderr}");
    assert!(
        stderr.contains("the protocol has no endpoint `Teller` (its endpoints: Branch, Vault)"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// A failure in any file writes nothing: a missing file does not hide the others'
/// diagnostics, an endpoint that one protocol lacks leaves no file of the others, and two
/// protocols that would write the same file are refused.
#[test]
fn build_reports_every_file_and_writes_nothing_on_any_failure() {
    let out_dir = std::env::temp_dir().join(format!("waldoc-build-all-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let dir = out_dir.to_str().expect("a UTF-8 path");
    let broken = temp_file("two_errors.wld", b"P\nEndpoint A;\nA { Number x = 'a'; Text t = 1; }\n");
    let (code, _, stderr) =
        waldoc(&["build", broken.to_str().unwrap(), "/no/such/file.wld", "--out-dir", dir]);
    assert_eq!(code, 1);
    assert_eq!(stderr.matches("error[E0107]").count(), 2, "{stderr}");
    assert!(stderr.contains("error: cannot read `/no/such/file.wld`"), "{stderr}");
    assert!(stderr.contains("3 errors"), "{stderr}");
    // As `check` does, `build` gives its diagnostics as JSON when asked.
    let (code, stdout, _) =
        waldoc(&["build", broken.to_str().unwrap(), "--out-dir", dir, "--message-format", "json"]);
    assert_eq!(code, 1);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    for line in stdout.lines() {
        let d: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        assert_eq!(d["code"], "E0107", "{line}");
    }

    let solo = temp_file("solo.wld", b"Solo\nEndpoint Vault;\nVault { }\n");
    let (code, _, stderr) =
        waldoc(&["build", EXAMPLE, solo.to_str().unwrap(), "--out-dir", dir, "--endpoint", "Branch"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("solo.wld") && stderr.contains("no endpoint `Branch`"), "{stderr}");
    assert!(!out_dir.join("bank.rs").exists(), "nothing is written when one file fails");

    // The same file twice is one protocol.
    let (code, _, stderr) = waldoc(&["build", EXAMPLE, EXAMPLE, "--out-dir", dir]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::remove_dir_all(&out_dir).expect("clean");
    let again = temp_file("bank_again.wld", &std::fs::read(EXAMPLE).expect("bank.wld"));
    let (code, _, stderr) = waldoc(&["build", EXAMPLE, again.to_str().unwrap(), "--out-dir", dir]);
    assert_eq!(code, 1);
    assert!(stderr.contains("both define the protocol module `bank`"), "{stderr}");
    assert!(!out_dir.join("bank.rs").exists());
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn build_of_a_file_with_errors_prints_them_and_writes_nothing() {
    let file = temp_file(
        "broken_build.wld",
        b"Broken\nEndpoint A;\nA { Public Function f() returns Number { return 'x'; } }\n",
    );
    let out_dir = std::env::temp_dir().join(format!("waldoc-broken-{}", std::process::id()));
    let (code, _, stderr) =
        waldoc(&["build", file.to_str().expect("utf-8"), "--out-dir", out_dir.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("error[E"), "{stderr}");
    assert!(!out_dir.join("broken.rs").exists());
}

#[test]
fn fmt_rewrites_a_file_in_place_and_leaves_a_formatted_one_alone() {
    let messy = temp_file("messy.wld", b"P\nEndpoint  A ;\nA {\n      Number n=1;   // one\n\n\n  Public Function f( )returns Number{return -n*2;}\n}");
    let (code, stdout, stderr) = waldoc(&["fmt", messy.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("formatted ") && stderr.contains("1 file: 1 reformatted"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&messy).unwrap(),
        "P\nEndpoint A;\nA {\n  Number n = 1; // one\n\n  Public Function f() returns Number { return -n * 2; }\n}\n"
    );
    let (code, _, stderr) = waldoc(&["fmt", "--check", messy.to_str().unwrap(), EXAMPLE]);
    assert_eq!(code, 0, "formatted files pass the check: {stderr}");
}

#[test]
fn fmt_check_prints_the_diff_changes_nothing_and_fails() {
    let dir = temp_file("unused", b"").parent().unwrap().to_owned();
    std::fs::write(dir.join("check.wld"), "P\nEndpoint A;\nA {\n  Number n=1;\n}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_waldoc"))
        .args(["fmt", "--check", "check.wld"])
        .current_dir(&dir)
        .output()
        .expect("waldoc runs");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "--- check.wld (as it is)\n+++ check.wld (formatted)\n@@ -2,4 +2,4 @@\n Endpoint A;\n A {\n-  Number n=1;\n+  Number n = 1;\n }\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 file not formatted; run `waldoc fmt` on them"));
    assert_eq!(
        std::fs::read_to_string(dir.join("check.wld")).unwrap(),
        "P\nEndpoint A;\nA {\n  Number n=1;\n}\n"
    );
    // With JSON diagnostics, standard output holds only JSON: the diff goes to stderr.
    std::fs::write(dir.join("broken.wld"), "P\nEndpoint A;\nA { Number n = ; }\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_waldoc"))
        .args(["fmt", "--check", "--message-format", "json", "check.wld", "broken.wld"])
        .current_dir(&dir)
        .output()
        .expect("waldoc runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.is_empty(), "the syntax error is reported");
    for line in stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("+  Number n = 1;"));
}

#[test]
fn fmt_refuses_a_file_with_syntax_errors_and_leaves_it_alone() {
    let source = b"P\nEndpoint A;\nA {\n  Number n = ;\n}\n";
    let bad = temp_file("syntax.wld", source);
    let (code, _, stderr) = waldoc(&["fmt", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("error[E0001]"), "{stderr}");
    assert!(stderr.contains("has syntax errors; fix them to format it"), "{stderr}");
    assert_eq!(std::fs::read(&bad).unwrap(), source);
    let (code, _, stderr) = waldoc(&["fmt", "/nonexistent/x.wld"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read `/nonexistent/x.wld`"), "{stderr}");
}

#[test]
fn build_list_prints_the_public_items_as_the_book_shows_them() {
    let (code, stdout, stderr) = waldoc(&["build", EXAMPLE, "--list"]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!(stdout);
    // The tooling chapter shows this very output.
    let book = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../book/src/tooling.md"))
        .expect("the tooling chapter");
    assert!(
        book.contains(&stdout),
        "book/src/tooling.md does not show the output of `waldoc build --list`:\n{stdout}"
    );
    // Nothing was written, and a file with errors lists nothing.
    let bad = temp_file("list_bad.wld", b"Bad\nEndpoint A;\nA { Number x = 'text'; }\n");
    let (code, stdout, stderr) = waldoc(&["build", bad.to_str().expect("utf-8"), "--list"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("error["), "{stderr}");
}

#[test]
fn build_needs_an_out_dir_unless_it_lists() {
    let (code, _, stderr) = waldoc(&["build", EXAMPLE]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--out-dir"), "{stderr}");
}
