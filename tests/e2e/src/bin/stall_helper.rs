//! The Helper side of `protocols/stall.wld` in a process of its own, for the test that kills
//! a peer in the middle of a sequence: connects to the Starter at the address it is given
//! (with a resumable session when the second argument is `resume`), prints `connected`, and
//! prints `paused` when its block's host function runs, which then never returns.

use std::io::Write as _;

use waldo_e2e::corpus_stall::stall::Helper;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: stall_helper ADDR [resume]");
        std::process::exit(2);
    };
    let options = match std::env::args().nth(2).as_deref() {
        None => waldo::TcpOptions::default(),
        Some("resume") => waldo::TcpOptions::default().with_reconnect(waldo::ReconnectPolicy::default()),
        Some(other) => {
            eprintln!("stall_helper: unknown option `{other}` (expected `resume`)");
            std::process::exit(2);
        }
    };
    let pause = || {
        println!("paused");
        let _ = std::io::stdout().flush();
        std::thread::sleep(std::time::Duration::from_secs(3600));
    };
    match Helper::connect(addr.as_str(), pause).with_options(options).await {
        Ok(helper) => {
            println!("connected as {}", helper.id());
            let _ = std::io::stdout().flush();
            std::future::pending::<()>().await;
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
