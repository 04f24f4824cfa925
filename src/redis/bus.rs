//! The bus: one Redis channel every node subscribes to, its message format, and the
//! subscription task (connect, subscribe, forward, reconnect with backoff).
//!
//! A bus message is one header line, then the room name, then the frame:
//! `NODE PUBLISH_ID SEQ EPOCH ROOM_LEN\nROOMFRAME`, with `NODE` in hex, `SEQ` 0 and
//! `EPOCH` `-` for a message that is not stored. The room's length rather than a
//! separator: a room name may contain anything its namespace allows.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::RedisBackplane;
use crate::protocol::StreamPosition;

/// What the subscription task tells the hub.
#[derive(Debug)]
pub(crate) enum BusEvent {
    /// Subscribed. `after_loss`: not the first time, so messages may have been missed
    /// meanwhile: every room must check its continuity.
    Subscribed { after_loss: bool },
    /// The subscription dropped; publishes fail until `Subscribed` again.
    Lost,
    /// A message from the bus.
    Message(BusMessage),
    /// A presence change on another node (or this one: the hub skips its own).
    Presence(super::PresenceEvent),
}

/// A message from the bus.
#[derive(Debug)]
pub(crate) struct BusMessage {
    /// The node that published it.
    pub(crate) node: u64,
    /// That node's id for the publish (its echo is matched by it).
    pub(crate) publish_id: u64,
    /// Its position, if stored.
    pub(crate) position: Option<StreamPosition>,
    pub(crate) room: String,
    /// The `message` frame, position included.
    pub(crate) frame: String,
}

/// The start of a stored message's header, for the append script (which adds the
/// rest).
pub(crate) fn header_prefix(node: u64, publish_id: u64) -> String {
    format!("{node:x} {publish_id}")
}

/// A bus message for a frame that is not stored.
pub(crate) fn encode(
    node: u64,
    publish_id: u64,
    room: &str,
    position: Option<(u64, &str)>,
    frame: &str,
) -> Vec<u8> {
    let (seq, epoch) = position.unwrap_or((0, "-"));
    format!(
        "{} {seq} {epoch} {}\n{room}{frame}",
        header_prefix(node, publish_id),
        room.len()
    )
    .into_bytes()
}

/// Parses a bus message; `None` if it is not one (ignored: another writer on the
/// channel, or a newer format).
pub(crate) fn decode(payload: &[u8]) -> Option<BusMessage> {
    let text = std::str::from_utf8(payload).ok()?;
    let (header, rest) = text.split_once('\n')?;
    let mut fields = header.split(' ');
    let node = u64::from_str_radix(fields.next()?, 16).ok()?;
    let publish_id = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let epoch = fields.next()?;
    let room_len: usize = fields.next()?.parse().ok()?;
    if fields.next().is_some() || !rest.is_char_boundary(room_len.min(rest.len())) {
        return None;
    }
    let (room, frame) = rest.split_at_checked(room_len)?;
    let position = (epoch != "-").then(|| StreamPosition::new(seq, Arc::<str>::from(epoch)));
    Some(BusMessage {
        node,
        publish_id,
        position,
        room: room.to_owned(),
        frame: frame.to_owned(),
    })
}

/// Spawns the subscription task; it ends when the receiver is dropped.
pub(crate) fn spawn(backplane: RedisBackplane) -> mpsc::Receiver<BusEvent> {
    let (tx, rx) = mpsc::channel(backplane.options().bus_capacity.max(1));
    tokio::spawn(run(backplane, tx));
    rx
}

async fn run(backplane: RedisBackplane, tx: mpsc::Sender<BusEvent>) {
    let options = backplane.options().clone();
    let channel = backplane.channel();
    let mut delay = options.reconnect_min;
    let mut subscribed_before = false;
    loop {
        let attempt = async {
            let mut pubsub = backplane.0.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = match tokio::time::timeout(options.command_timeout, attempt).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis bus: subscribe failed");
                if !backoff(&tx, &mut delay, options.reconnect_max).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                tracing::debug!("redis bus: subscribe timed out");
                if !backoff(&tx, &mut delay, options.reconnect_max).await {
                    return;
                }
                continue;
            }
        };
        delay = options.reconnect_min;
        if subscribed_before {
            tracing::info!("redis bus: subscribed again");
        }
        if tx
            .send(BusEvent::Subscribed {
                after_loss: subscribed_before,
            })
            .await
            .is_err()
        {
            return;
        }
        subscribed_before = true;
        let mut stream = pubsub.into_on_message();
        loop {
            let next = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut stream), cx)
            });
            let msg = tokio::select! {
                msg = next => msg,
                // The hub is gone: stop.
                () = tx.closed() => return,
            };
            let Some(msg) = msg else { break };
            let payload = msg.get_payload_bytes();
            let event = if payload.starts_with(b"P") {
                std::str::from_utf8(payload)
                    .ok()
                    .and_then(super::presence::decode)
                    .map(BusEvent::Presence)
            } else {
                decode(payload).map(BusEvent::Message)
            };
            if let Some(event) = event
                && tx.send(event).await.is_err()
            {
                return;
            }
        }
        tracing::warn!("redis bus: subscription lost; reconnecting");
        if tx.send(BusEvent::Lost).await.is_err() {
            return;
        }
    }
}

/// Waits `delay` (doubling it up to `max` for next time); `false` if the hub is gone.
async fn backoff(tx: &mpsc::Sender<BusEvent>, delay: &mut Duration, max: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(*delay) => {}
        () = tx.closed() => return false,
    }
    *delay = (*delay * 2).min(max);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_ignored() {
        let payload = encode(0xabc, 7, "chat:a b\nc", None, r#"{"op":"message"}"#);
        let m = decode(&payload).unwrap();
        assert_eq!((m.node, m.publish_id), (0xabc, 7));
        assert_eq!(m.room, "chat:a b\nc");
        assert_eq!(m.frame, r#"{"op":"message"}"#);
        assert!(m.position.is_none());
        let stored = format!("{} 42 e1f 6\nchat:xFRAME", header_prefix(0xff, 3));
        let m = decode(stored.as_bytes()).unwrap();
        assert_eq!(m.position, Some(StreamPosition::new(42, "e1f")));
        assert_eq!((m.room.as_str(), m.frame.as_str()), ("chat:x", "FRAME"));
        assert!(decode(b"hello").is_none());
        assert!(decode(b"zz 1 0 - 3\nabc").is_none());
        assert!(decode(b"1 1 0 - 30\nabc").is_none());
    }
}
