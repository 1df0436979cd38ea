//! The program prints what the book's tutorial shows it printing (all but the port, which
//! the system chooses).

#[test]
fn prints_what_the_tutorial_shows() {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_bank-example")).output().expect("the program starts");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).expect("UTF-8 output");
    let tutorial =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../book/src/tutorial.md"))
            .expect("the tutorial");
    let start = tutorial.find("$ cargo run -p bank-example\n").expect("the tutorial shows the run");
    let shown = &tutorial[start..];
    let shown = &shown[shown.find('\n').expect("a line") + 1..shown.find("```").expect("the block's end")];
    let mut printed_lines = printed.lines();
    for line in shown.lines() {
        let got = printed_lines.next().unwrap_or_else(|| panic!("the program stopped before {line:?}"));
        if line.starts_with("Vault listening on ") {
            assert!(got.starts_with("Vault listening on 127.0.0.1:"), "{got:?}");
        } else {
            assert_eq!(got, line);
        }
    }
    assert_eq!(printed_lines.next(), None, "the program printed more than the tutorial shows");
}

#[test]
fn over_tls_each_side_knows_the_other() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bank-example"))
        .arg("--tls")
        .output()
        .expect("the program starts");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).expect("UTF-8 output");
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines[..2],
        ["the Branch talks to CN=vault.bank.test", "the Vault talks to CN=branch.bank.test"]
    );
    assert!(lines.contains(&"send(alice -> bob, 30) = true"), "{printed}");
}
