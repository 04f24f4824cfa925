//! A subscriber that stops reading while a burst is published gets every message,
//! whole and in order, once it reads again.
//!
//! On plain TCP the hub writes a message straight to an idle subscriber's socket from
//! the publishing task; once the socket is full, a write takes only part of a frame and
//! the connection's own task must finish it before anything else. This burst (about
//! 3 MiB to one reader that is not reading) goes through all three states: written
//! inline, cut in the middle of a frame, and queued behind it.

mod common;

use common::hub::{Article, Client, serve, test_hub_builder};

const MESSAGES: usize = 100;
/// Big enough that the loopback socket buffers fill within the burst.
const TITLE_LEN: usize = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_gets_every_message_whole_and_in_order() {
    let hub = test_hub_builder()
        .configure(|c| {
            // Room for the whole burst in the queue: this is about order, not about
            // slow consumers.
            c.ws = c.ws.clone().with_max_queued_bytes(8 * 1024 * 1024);
        })
        .build();
    let url = serve(&hub).await;
    let mut reader = Client::connect(&url).await;
    reader.join_ok("news:big").await;

    // The reader reads nothing while all of it is published.
    let room = hub.room::<Article>("news:big").unwrap();
    for i in 0..MESSAGES {
        let title = format!("{i:05}-{}", "x".repeat(TITLE_LEN));
        let published = room.publish(Article { title }).await.unwrap();
        assert_eq!(published.delivered, 1);
    }

    for i in 0..MESSAGES {
        let m = reader.recv().await;
        assert_eq!(m["op"], "message");
        let title = m["data"]["title"].as_str().unwrap();
        assert_eq!(&title[..5], format!("{i:05}"), "message {i} out of order");
        assert_eq!(title.len(), 6 + TITLE_LEN, "message {i} cut");
    }
}
