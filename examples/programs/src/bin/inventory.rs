//! A Shop orders from a Warehouse whose stock is an External the host reads directly, with
//! a host function for prices and a signal for each shipment.

use std::collections::BTreeMap;

use waldo_examples::inventory::{Shop, Warehouse};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), waldo::Error> {
    let stock = waldo::External::new(BTreeMap::from([("apple".to_owned(), 10.0), ("pear".to_owned(), 2.0)]));
    let listener = Warehouse::listen("127.0.0.1:0").await?;
    let price = |item: String| if item == "apple" { 0.5 } else { 2.0 };
    let report = |item: String, count: f64| println!("  [warehouse] shipped {count} {item}");
    let (shop, _warehouse) = tokio::try_join!(
        Shop::connect(listener.local_addr(), price),
        listener.accept(stock.clone(), report)
    )?;
    println!("order(apple, 4) = {}", shop.order("apple".into(), 4.0).await?);
    println!(
        "order(pear, 5) = {}  (not enough pears: nothing changes)",
        shop.order("pear".into(), 5.0).await?
    );
    println!("order(plum, 1) = {}  (no plums)", shop.order("plum".into(), 1.0).await?);
    println!("takings() = {}", shop.takings().await?);
    println!("the host reads the stock: {:?}", stock.get());
    shop.stop().await;
    Ok(())
}
