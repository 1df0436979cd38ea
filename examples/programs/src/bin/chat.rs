//! A member joins a room and says things; the room's host hears each line once, after it
//! commits, through the callback it gave the room's `onCreate`.

use std::sync::{Arc, Mutex};

use waldo_examples::chat::{Member, Room};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), waldo::Error> {
    let listener = Room::listen("127.0.0.1:0").await?;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let heard = lines.clone();
    let on_line = move |who: String, body: String| {
        println!("  [room] {who}: {body}");
        heard.lock().expect("lines").push((who, body));
    };
    let (member, room) = tokio::try_join!(Member::connect(listener.local_addr()), listener.accept(on_line))?;
    member.join("zoe".into()).await?;
    println!("say(hi) = {}", member.say("hi".into()).await?);
    println!("say(yo) = {}", member.say("yo".into()).await?);
    println!("room size() = {}", room.size().await?);
    println!("the room's host saw {} lines", lines.lock().expect("lines").len());
    member.stop().await;
    Ok(())
}
