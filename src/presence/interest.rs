//! Who is interesting to whom in a big room: the application's hook
//! ([`PresenceInterest`]) and the room's index of it ([`InterestIndex`]).
//!
//! In a big room a member is not told of every join and leave, only of the users the
//! application marks as interesting to it. The hook is asked once per join (what this
//! connection watches, and whether its user is featured, interesting to everyone), and
//! the answers are kept as an inverted index, user -> watching connections. So routing
//! one change costs the watchers of that user, not a pass over the room's members.

use std::collections::{HashMap, HashSet};

use crate::auth::Identity;

/// The application's say on which joins and leaves a member of a big room is told of
/// (`PROTOCOL.md`, section 6). Set with
/// [`HubBuilder::presence_interest`](crate::HubBuilder::presence_interest).
///
/// Both methods are called once per join of a connection to a room with presence, on
/// the joining task, before the room's lock is taken: keep them quick (a lookup in
/// memory, not a database round trip). Small rooms ignore the answers (every member is
/// told of every change there); they are kept so a room that grows big routes at once.
///
/// With a backplane (feature `redis`) the hook is asked only on the node that has the
/// connection, with its whole [`Identity`] (claims included); a remote user is never
/// presented to it as a partial identity. Whether a user is featured travels with
/// their presence entry, so every node features them; the users a member watches
/// are matched by user id against the entries of every node, so a member hears of a
/// watched user wherever that user is connected. Give every node the same hook.
///
/// ```
/// use wshub::{Identity, PresenceInterest};
///
/// /// Everyone is told when a host comes or goes; each user of the people they follow.
/// struct Follows;
/// impl PresenceInterest for Follows {
///     fn watches(&self, _room: &str, member: &Identity) -> Vec<String> {
///         member.claims.get("follows").and_then(|f| f.as_array()).map(|a| {
///             a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect()
///         }).unwrap_or_default()
///     }
///     fn featured(&self, _room: &str, user: &Identity) -> bool {
///         user.claims.get("role").and_then(|r| r.as_str()) == Some("host")
///     }
/// }
/// let hub = wshub::Hub::builder().presence_interest(Follows);
/// # let _ = hub;
/// ```
pub trait PresenceInterest: Send + Sync + 'static {
    /// The user ids whose joins and leaves connection `member` is told of while
    /// `room` is big. Asked once when the connection joins the room; the answer holds
    /// until it leaves. Default: nobody.
    fn watches(&self, room: &str, member: &Identity) -> Vec<String> {
        let _ = (room, member);
        Vec::new()
    }

    /// Whether every member of big room `room` is told when `user` comes and goes (a
    /// room's hosts, a speaker). Asked when each connection of the user joins; once
    /// one answer is `true` the user stays featured until their last connection
    /// leaves the room. Featured changes go to every member, so keep them few.
    /// Default: `false`.
    fn featured(&self, room: &str, user: &Identity) -> bool {
        let _ = (room, user);
        false
    }
}

/// What the hook said about one joining connection.
#[derive(Debug, Default, Clone)]
pub(crate) struct JoinInterest {
    /// The users this connection watches.
    pub(crate) watches: Vec<String>,
    /// Whether its user is featured.
    pub(crate) featured: bool,
}

/// A room's index of the hook's answers. Memory follows the answers: nothing when the
/// application has no hook.
#[derive(Debug, Default)]
pub(crate) struct InterestIndex {
    /// User -> the connections watching them. A `Vec`: a user is watched by a few
    /// connections typically, and removal is a scan of those few.
    watchers: HashMap<String, Vec<u64>>,
    /// Connection -> the users it watches, to undo its entries when it leaves.
    watching: HashMap<u64, Vec<String>>,
    /// Featured users present now.
    featured: HashSet<String>,
}

impl InterestIndex {
    /// Records what connection `conn` of `user` watches, and whether `user` is featured.
    pub(crate) fn add(&mut self, user: &str, conn: u64, interest: JoinInterest) {
        if interest.featured && !self.featured.contains(user) {
            self.featured.insert(user.to_owned());
        }
        if interest.watches.is_empty() {
            return;
        }
        for watched in &interest.watches {
            let conns = self.watchers.entry(watched.clone()).or_default();
            if !conns.contains(&conn) {
                conns.push(conn);
            }
        }
        self.watching.insert(conn, interest.watches);
    }

    /// Forgets what connection `conn` watches (it left the room).
    pub(crate) fn forget_conn(&mut self, conn: u64) {
        let Some(watched) = self.watching.remove(&conn) else {
            return;
        };
        for user in watched {
            if let Some(conns) = self.watchers.get_mut(&user) {
                conns.retain(|&c| c != conn);
                if conns.is_empty() {
                    self.watchers.remove(&user);
                }
            }
        }
    }

    /// Forgets that `user` is featured (their last connection left); returns whether
    /// they were.
    pub(crate) fn forget_user(&mut self, user: &str) -> bool {
        self.featured.remove(user)
    }

    /// Whether `user` is featured now.
    pub(crate) fn is_featured(&self, user: &str) -> bool {
        self.featured.contains(user)
    }

    /// The connections watching `user`.
    pub(crate) fn watchers(&self, user: &str) -> &[u64] {
        self.watchers.get(user).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watching(users: &[&str]) -> JoinInterest {
        JoinInterest {
            watches: users.iter().map(|u| (*u).to_owned()).collect(),
            featured: false,
        }
    }

    #[test]
    fn the_index_follows_joins_and_leaves() {
        let mut index = InterestIndex::default();
        index.add("ann", 1, watching(&["bob", "cyd"]));
        index.add("dan", 2, watching(&["bob"]));
        index.add(
            "host",
            3,
            JoinInterest {
                watches: Vec::new(),
                featured: true,
            },
        );
        assert_eq!(index.watchers("bob"), [1, 2]);
        assert_eq!(index.watchers("cyd"), [1]);
        assert!(index.is_featured("host"));
        index.forget_conn(1);
        assert_eq!(index.watchers("bob"), [2]);
        assert_eq!(index.watchers("cyd"), [] as [u64; 0]);
        index.forget_conn(2);
        assert!(index.watchers.is_empty() && index.watching.is_empty());
        assert!(index.forget_user("host"));
        assert!(!index.is_featured("host"));
    }
}
