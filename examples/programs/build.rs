//! Generates the Rust code of the example protocols into `OUT_DIR`.

fn main() {
    waldo_compiler::compile_or_exit(&[
        "../protocols/ping_pong.wld",
        "../protocols/chat.wld",
        "../protocols/inventory.wld",
        "../protocols/gossip.wld",
        "../protocols/relay.wld",
    ]);
}
