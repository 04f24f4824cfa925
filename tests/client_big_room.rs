//! `wshub::client` in a room that grows big and shrinks back (`PROTOCOL.md` section 6):
//! the subscription hears the count (`RoomEvent::PresenceCount`, `is_big`, `count`),
//! a join into the big room gets the count and the first page, `page` walks the member
//! list with everyone exactly once, and the return to a small room replaces the
//! presence with the whole room (`RoomEvent::PresenceReset`).

mod common;

use std::time::Duration;

use common::client::{TestTokens, next_event};
use common::hub::{ChatMessage, serve};
use wshub::client::{Client, RoomEvent, Subscription};
use wshub::{Hub, Namespace, PresenceCount};

const ROOM: &str = "chat:big";

fn names(sub: &Subscription<ChatMessage>) -> Vec<String> {
    sub.presence().iter().map(|(u, _)| u.to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_a_room_growing_big_and_shrinking_back() {
    let tokens = TestTokens::default();
    for user in ["u1", "u2", "u3", "u4"] {
        tokens.allow(user, user);
    }
    // Big above 2 users, pages of 2, counts and the return to small quick for the test.
    let hub = Hub::builder()
        .authenticator(tokens.clone())
        .namespace(Namespace::<ChatMessage>::new("chat").big_room(2))
        .configure(|c| {
            c.presence_page_size = 2;
            c.presence_count_interval = Duration::from_millis(100);
            c.presence_min_big = Duration::from_millis(200);
        })
        .build();
    let url = serve(&hub).await;
    let client = |token: &str| Client::builder(&url).token(token).build().unwrap();
    let (c1, c2, c3, c4) = (client("u1"), client("u2"), client("u3"), client("u4"));

    let mut room = c1.join::<ChatMessage>(ROOM).await.unwrap();
    assert!(!room.is_big());
    assert_eq!(room.count(), PresenceCount::new(1, 1));
    let r2 = c2.join::<ChatMessage>(ROOM).await.unwrap();
    let r3 = c3.join::<ChatMessage>(ROOM).await.unwrap();
    // The third user made it big: u1 hears the count.
    let count = loop {
        match next_event(&mut room).await {
            RoomEvent::PresenceCount(count) => break count,
            RoomEvent::PresenceDiff(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(count, PresenceCount::new(3, 3));
    assert!(room.is_big());
    assert_eq!(room.count(), PresenceCount::new(3, 3));

    // A join into the big room: the count and the first page (2 users of 4).
    let r4 = c4.join::<ChatMessage>(ROOM).await.unwrap();
    assert!(r4.is_big());
    assert_eq!(r4.count(), PresenceCount::new(4, 4));
    assert_eq!(names(&r4), ["u1", "u2"]);

    // Paging: everyone, once, in order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = room.page(after.as_deref(), None).await.unwrap();
        assert!(page.presence.len() <= 2);
        assert_eq!(page.count, PresenceCount::new(4, 4));
        seen.extend(page.presence.iter().map(|(u, _)| u.to_owned()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["u1", "u2", "u3", "u4"]);

    // Two leave: small again (2 users), with the whole presence.
    r3.leave().await.unwrap();
    r4.leave().await.unwrap();
    let presence = loop {
        match next_event(&mut room).await {
            RoomEvent::PresenceReset(p) => break p,
            RoomEvent::PresenceCount(_) | RoomEvent::PresenceDiff(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        presence.iter().map(|(u, _)| u).collect::<Vec<_>>(),
        ["u1", "u2"]
    );
    assert!(!room.is_big());
    assert_eq!(room.count(), PresenceCount::new(2, 2));
    assert_eq!(names(&room), ["u1", "u2"]);
    drop(r2);
}
