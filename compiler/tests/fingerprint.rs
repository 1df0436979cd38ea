//! The protocol fingerprint: what the runtime's handshake compares.

use waldo_compiler::SourceMap;

fn fingerprint(source: &str) -> u64 {
    let mut map = SourceMap::new();
    let checked = waldo_compiler::check_source(&mut map, "fp.wld", source);
    assert!(!checked.has_errors(), "{}", map.render(&checked.diagnostics, waldo_compiler::Color::Never));
    checked.protocol.expect("a checked protocol").fingerprint()
}

const ORIGINAL: &str = "Shop
Endpoint Buyer;
Endpoint Seller;

Sequences { Order: Buyer.pick -> Seller.pack -> Buyer.pay; }

Struct Item { Text name; Number price; }

Peered { Seller controls Number sold = 0; }

Sequence Order(Text what) returns Number total
{
  Buyer.pick { total = 0; }
  Seller.pack { sold += 1; total = 10; }
  Buyer.pay { total += 1; }
}

Buyer {
  Public Function buy(Text what) returns Number { return Order(what); }
}

Seller {
  List(element: Struct Item) stock;
  Public Function count() returns Number { return sold; }
}
";

/// The same protocol, laid out differently and commented.
const REFORMATTED: &str = "/* The shop protocol. */
Shop Endpoint Buyer; Endpoint Seller;
// Sequences first.
Sequences {
    Order: Buyer.pick
        -> Seller.pack
        -> Buyer.pay;
}
Struct Item {
    Text name;      // what it is
    Number price;   /** what it costs */
}
Peered {
    Seller controls Number sold = 0;
}
Sequence Order(Text what) returns Number total {
    Buyer.pick  { total = 0; }
    Seller.pack { sold += 1;
                  total = 10; }
    Buyer.pay   { total += 1; }
}
Buyer { Public Function buy(Text what) returns Number {
    return Order(what);
} }
Seller {
    List(element: Struct Item) stock;
    Public Function count() returns Number { return sold; }
}";

#[test]
fn layout_and_comments_do_not_change_it() {
    assert_eq!(fingerprint(ORIGINAL), fingerprint(REFORMATTED));
}

#[test]
fn it_is_deterministic() {
    assert_eq!(fingerprint(ORIGINAL), fingerprint(ORIGINAL));
}

fn changed(from: &str, to: &str) -> u64 {
    assert!(ORIGINAL.contains(from), "{from:?} is not in the program");
    fingerprint(&ORIGINAL.replacen(from, to, 1))
}

#[test]
fn a_type_change_changes_it() {
    let base = fingerprint(ORIGINAL);
    assert_ne!(base, changed("Number price;", "Text price;"));
    assert_ne!(base, changed("Seller controls Number sold = 0;", "Seller controls Number sold = 1;"));
}

#[test]
fn a_block_order_change_changes_it() {
    let base = fingerprint(ORIGINAL);
    let reordered = ORIGINAL
        .replace(
            "Order: Buyer.pick -> Seller.pack -> Buyer.pay;",
            "Order: Buyer.pay -> Seller.pack -> Buyer.pick;",
        )
        .replace("  Buyer.pick { total = 0; }\n", "  Buyer.pay { total += 1; }\n  ")
        .replace("  Buyer.pay { total += 1; }\n}", "Buyer.pick { total = 0; }\n}");
    assert_ne!(base, fingerprint(&reordered));
}

#[test]
fn a_signature_change_changes_it() {
    let base = fingerprint(ORIGINAL);
    assert_ne!(
        base,
        changed(
            "Public Function count() returns Number { return sold; }",
            "Public Function count(Number extra) returns Number { return sold + extra; }"
        )
    );
    assert_ne!(base, changed("Public Function count()", "Private Function count()"));
    assert_ne!(base, changed("Sequence Order(Text what)", "Sequence Order(Text item)"));
}

/// The fingerprint is part of the wire contract: it must not change between builds, machines
/// or compiler versions unless the protocol does. If this value changes because the checked
/// representation changed, the change is a wire-format change: say so in the release notes.
#[test]
fn it_is_stable() {
    assert_eq!(format!("{:016x}", fingerprint(ORIGINAL)), "fb4e33e2f50520b8");
}
