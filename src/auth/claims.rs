//! [`Claims`]: what an authenticator knows about a user besides the id and the name.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The claims of an [`Identity`](super::Identity): a small read-mostly map from names
/// to JSON values (JWT claims, roles, tenant).
///
/// Read it like a map: [`get`](Claims::get), [`contains_key`](Claims::contains_key),
/// [`iter`](Claims::iter) (in key order), [`len`](Claims::len); convert from and to a
/// `serde_json::Map` with `From`/`Into`; it serializes as a JSON object.
///
/// Why not a `serde_json::Map`: every connection keeps its identity for as long as it
/// is open, and a `Map` (a `BTreeMap`) allocates a node with room for eleven entries
/// even for one claim: about 640 bytes for a guest's `{"guest": true}`, an eighth of
/// what an idle connection costs. Claims are written once, by the authenticator, and
/// then only read, so they are kept as one boxed slice sorted by key, exactly as long
/// as the entries: 48 bytes for that guest, nothing at all for no claims. A look-up is
/// a binary search; an insert moves the entries after it (fine for the handful of
/// claims a token carries, and done only while the identity is built).
#[derive(Clone, Default, PartialEq)]
pub struct Claims {
    /// Sorted by key, keys unique.
    entries: Box<[(Box<str>, Value)]>,
}

impl Claims {
    /// No claims (allocates nothing).
    pub fn new() -> Self {
        Claims::default()
    }

    /// The value of claim `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// Whether claim `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// How many claims there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no claims.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The claims, in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> + '_ {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }

    /// The claims' names, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|(k, _)| &**k)
    }

    /// Adds or replaces claim `key`, returning the value it replaced. Reallocates the
    /// entries: meant for building an identity, not for a hot path.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        let value = value.into();
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                let mut entries = std::mem::take(&mut self.entries).into_vec();
                entries.insert(i, (key.into_boxed_str(), value));
                self.entries = entries.into_boxed_slice();
                None
            }
        }
    }

    /// Removes claim `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.find(key).ok()?;
        let mut entries = std::mem::take(&mut self.entries).into_vec();
        let (_, value) = entries.remove(i);
        self.entries = entries.into_boxed_slice();
        Some(value)
    }

    /// The claims as a `serde_json::Map` (a copy).
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| (**k).cmp(key))
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Claims {
    /// Collects claims; a key given twice keeps its last value (as a map would).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(Box<str>, Value)> = iter
            .into_iter()
            .map(|(k, v)| (k.into().into_boxed_str(), v.into()))
            .collect();
        // Stable, so of equal keys the last one given is last; keep that one.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut deduped: Vec<(Box<str>, Value)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match deduped.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => deduped.push(entry),
            }
        }
        Claims {
            entries: deduped.into_boxed_slice(),
        }
    }
}

impl From<Map<String, Value>> for Claims {
    fn from(map: Map<String, Value>) -> Self {
        // A `Map` iterates in key order (or insertion order with serde_json's
        // `preserve_order`): `from_iter` sorts either way.
        map.into_iter().collect()
    }
}

impl From<Claims> for Map<String, Value> {
    fn from(claims: Claims) -> Self {
        claims
            .entries
            .into_vec()
            .into_iter()
            .map(|(k, v)| (k.into_string(), v))
            .collect()
    }
}

impl From<Claims> for Value {
    fn from(claims: Claims) -> Self {
        Value::Object(claims.into())
    }
}

impl<'a> IntoIterator for &'a Claims {
    type Item = (&'a str, &'a Value);
    type IntoIter = Box<dyn ExactSizeIterator<Item = (&'a str, &'a Value)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl Serialize for Claims {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::<String, Value>::deserialize(deserializer).map(Claims::from)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::Claims;

    #[test]
    fn reads_like_a_map() {
        let mut c = Claims::new();
        assert!(c.is_empty());
        assert_eq!(c.insert("role", "admin"), None);
        assert_eq!(c.insert("guest", true), None);
        assert_eq!(c.insert("tenant", 7), None);
        assert_eq!(c.insert("role", "host"), Some(json!("admin")));
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("role"), Some(&json!("host")));
        assert_eq!(c.get("nope"), None);
        assert!(c.contains_key("guest"));
        assert_eq!(c.keys().collect::<Vec<_>>(), ["guest", "role", "tenant"]);
        assert_eq!(c.remove("guest"), Some(json!(true)));
        assert_eq!(c.remove("guest"), None);
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({ "role": "host", "tenant": 7 })
        );
        assert_eq!(
            format!("{c:?}"),
            r#"{"role": String("host"), "tenant": Number(7)}"#
        );
    }

    #[test]
    fn converts_from_and_to_a_json_map() {
        let Value::Object(map) = json!({ "sub": "u1", "exp": 10, "aud": ["a", "b"] }) else {
            unreachable!()
        };
        let c = Claims::from(map.clone());
        assert_eq!(c.keys().collect::<Vec<_>>(), ["aud", "exp", "sub"]);
        assert_eq!(Map::from(c.clone()), map);
        assert_eq!(c.to_map(), map);
        let back: Claims = serde_json::from_value(Value::Object(map)).unwrap();
        assert_eq!(back, c);
        // The last of a repeated key wins, as when inserting into a map.
        let c: Claims = [("a", 1), ("b", 2), ("a", 3)].into_iter().collect();
        assert_eq!(c.get("a"), Some(&json!(3)));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn one_claim_is_one_small_allocation() {
        // The reason for this type: a `serde_json::Map` with one entry allocates a
        // B-tree leaf of about 600 bytes; these claims hold exactly one entry.
        let c: Claims = [("guest", true)].into_iter().collect();
        assert_eq!(std::mem::size_of::<Claims>(), 16);
        assert_eq!(std::mem::size_of_val(&*c.entries), 48);
    }
}
