//! The chat's display names: which strings may be names ([`normalize`]), when two
//! names are "the same" ([`NameKeys`]), and who holds which name until when
//! ([`NameRegistry`]).
//!
//! A display name is shown to everyone, so it must not be able to pass for another
//! one. The checks follow Unicode's security standard (UTS #39) through the
//! `unicode-security` crate instead of lists of "bad" characters, which always miss
//! some:
//!
//! 1. The name is NFKC-normalised (a Kelvin sign `K` becomes `K`, fullwidth `Ａ`
//!    becomes `A`, a decomposed `é` is composed) and trimmed; what is checked, shown
//!    and signed is the normalised form. A typographic apostrophe (U+2019, which
//!    phone keyboards type) becomes `'`.
//! 2. 1 to [`MAX_NAME_CHARS`] characters.
//! 3. No control characters, bidirectional text controls or invisible characters
//!    (Unicode's Default_Ignorable code points: soft hyphen, U+2060, U+180E, tag
//!    characters, the Hangul fillers, zero-width characters...).
//! 4. Only letters, digits and marks that UTS #39's General Security Profile allows in
//!    identifiers, single spaces between words, and `-` `_` `.` `'`. That profile
//!    also refuses overlay marks (U+0335, U+0338) and symbols such as the blank
//!    Braille pattern U+2800.
//! 5. No generic combining accents (Script=Inherited) left over after NFKC: a letter
//!    that exists with its accent was composed in step 1, so one left over sits on a
//!    letter that does not (`ı` + U+0307 draws `i`). Marks that belong to a script
//!    (Devanagari vowel signs, Hebrew points) are fine, but not the same mark twice
//!    in a row. (This refuses some real spellings, e.g. Yoruba's `ẹ́` or Arabic with
//!    vowel marks; the unmarked spelling works.)
//! 6. At least one letter or digit, and one script (UTS #39 mixed-script detection:
//!    Japanese may mix Han, Hiragana and Katakana; digits and punctuation go with
//!    any script). This is what stops a Cyrillic `а` inside a Latin name.
//! 7. Not one of the [`RESERVED`] names, compared as [`NameKeys`] with the spaces and
//!    punctuation left out ("ADMIN", "Ad-min" and "r00t" all count).
//!
//! Names that pass can still look alike across scripts (Cyrillic "расе" and Latin
//! "pace") or within one ("AIice" with a capital i, "alice"): [`NameKeys`] maps both
//! to the same key, so the registry lets only one of them be held at a time.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use unicode_bidi::BidiClass;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use unicode_script::{Script, UnicodeScript};
use unicode_security::general_security_profile::IdentifierType;
use unicode_security::{GeneralSecurityProfile, MixedScript, skeleton};

/// Longest display name, in characters (Unicode scalar values) after NFKC.
pub const MAX_NAME_CHARS: usize = 32;

/// Punctuation a name may hold besides letters, digits and single spaces: enough for
/// "Mary-Jane", "O'Brien", "j.doe" and "dev_42".
pub const PUNCTUATION: [char; 4] = ['-', '_', '.', '\''];

/// Names nobody may take, in any case or look-alike spelling: they would pass for
/// the service speaking ("server" is also what the page shows for a message without
/// a sender).
pub const RESERVED: &[&str] = &[
    "admin",
    "administrator",
    "moderator",
    "mod",
    "root",
    "system",
    "server",
    "staff",
    "support",
    "owner",
    "wshub",
];

/// How many names a [`NameRegistry`] holds at most, by default: as many as the hub
/// takes connections by default. Each costs a few hundred bytes (two keys of at most
/// 32 characters, their owner and expiry, indexed twice), so the registry stays
/// under a few MB.
pub const DEFAULT_MAX_NAMES: usize = 10_000;

/// Why a string cannot be a display name. Its `Display` is the message the page
/// shows; characters are quoted by code point (an invisible one cannot be shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Empty after trimming, or longer than [`MAX_NAME_CHARS`].
    Length,
    /// A control character (tab, newline, escape...).
    Control(char),
    /// A bidirectional text control (U+202A..U+202E, U+2066..U+2069): it reorders
    /// what follows, so "alice\u{202E}nimda" reads differently from what it is.
    Bidi(char),
    /// A Default_Ignorable code point: drawn as nothing, so "al\u{AD}ice" looks
    /// like "alice".
    Invisible(char),
    /// A space other than U+0020 (after NFKC), or two spaces in a row.
    Spacing,
    /// A character outside letters, digits, spaces and [`PUNCTUATION`].
    NotAllowed(char),
    /// A generic combining accent that NFKC did not compose into its letter.
    CombiningMark(char),
    /// The same combining mark twice in a row.
    RepeatedMark(char),
    /// Only spaces and punctuation.
    NoLetter,
    /// Letters of more than one script; the scripts met, in order.
    MixedScripts(Vec<&'static str>),
    /// One of [`RESERVED`] (or looks like it); the name as normalised.
    Reserved(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cp = |c: &char| format!("U+{:04X}", u32::from(*c));
        match self {
            NameError::Length => write!(f, "names must be 1 to {MAX_NAME_CHARS} characters long"),
            NameError::Control(c) => {
                write!(f, "names may not contain control characters ({})", cp(c))
            }
            NameError::Bidi(c) => write!(
                f,
                "names may not contain bidirectional text controls ({})",
                cp(c)
            ),
            NameError::Invisible(c) => {
                write!(f, "names may not contain invisible characters ({})", cp(c))
            }
            NameError::Spacing => write!(f, "names may only have single spaces between words"),
            NameError::NotAllowed(c) => write!(
                f,
                "names may only contain letters, digits, spaces and - _ . ' ({} is not allowed)",
                cp(c)
            ),
            NameError::CombiningMark(c) => write!(
                f,
                "names may not contain combining accents ({}): type the accented letter itself",
                cp(c)
            ),
            NameError::RepeatedMark(c) => {
                write!(f, "names may not repeat a combining mark ({})", cp(c))
            }
            NameError::NoLetter => write!(f, "names must contain a letter or a digit"),
            NameError::MixedScripts(scripts) => write!(
                f,
                "names must use one script (this one mixes {})",
                scripts.join(" and ")
            ),
            NameError::Reserved(name) => write!(f, "the name \"{name}\" is reserved"),
        }
    }
}

impl std::error::Error for NameError {}

/// `raw` as a display name: NFKC-normalised and trimmed, or why it cannot be one
/// (see the module docs for the rules, in the order they are checked).
pub fn normalize(raw: &str) -> Result<String, NameError> {
    // NFKC never makes a name more than a few times longer; refusing long input
    // first bounds the work (the login body is 1 KiB anyway).
    let raw = raw.trim();
    if raw.chars().nth(4 * MAX_NAME_CHARS).is_some() {
        return Err(NameError::Length);
    }
    // Hidden characters are looked for in what was typed too, so that the message
    // quotes that (NFKC turns U+3164, the Hangul filler, into U+1160).
    raw.chars().try_for_each(check_hidden)?;
    let name: String = raw
        .chars()
        .map(|c| if c == '\u{2019}' { '\'' } else { c })
        .nfkc()
        .collect();
    let name = name.trim();
    if !(1..=MAX_NAME_CHARS).contains(&name.chars().count()) {
        return Err(NameError::Length);
    }
    let mut previous = ' ';
    for c in name.chars() {
        check_char(c, previous)?;
        previous = c;
    }
    if !name.chars().any(char::is_alphanumeric) {
        return Err(NameError::NoLetter);
    }
    if !name.is_single_script() {
        return Err(NameError::MixedScripts(scripts_of(name)));
    }
    if NameKeys::of(name).is_reserved() {
        return Err(NameError::Reserved(name.to_owned()));
    }
    Ok(name.to_owned())
}

/// One character of a normalised, trimmed name, after `previous` (a space at the
/// start).
fn check_char(c: char, previous: char) -> Result<(), NameError> {
    check_hidden(c)?;
    if c.is_whitespace() {
        // Trimmed already, so a space here is between words.
        return if c == ' ' && previous != ' ' {
            Ok(())
        } else {
            Err(NameError::Spacing)
        };
    }
    if PUNCTUATION.contains(&c) {
        return Ok(());
    }
    let mark = is_combining_mark(c);
    if !(c.is_alphanumeric() || mark) || !c.identifier_allowed() {
        return Err(NameError::NotAllowed(c));
    }
    if mark && c.script() == Script::Inherited {
        return Err(NameError::CombiningMark(c));
    }
    if mark && c == previous {
        return Err(NameError::RepeatedMark(c));
    }
    Ok(())
}

/// Whether `c` is drawn as nothing, or changes how the rest is drawn: a control, a
/// bidirectional text control or a Default_Ignorable code point.
fn check_hidden(c: char) -> Result<(), NameError> {
    if c.is_control() {
        return Err(NameError::Control(c));
    }
    let explicit_bidi = matches!(
        unicode_bidi::bidi_class(c),
        BidiClass::LRE
            | BidiClass::RLE
            | BidiClass::LRO
            | BidiClass::RLO
            | BidiClass::PDF
            | BidiClass::LRI
            | BidiClass::RLI
            | BidiClass::FSI
            | BidiClass::PDI
    );
    if explicit_bidi {
        return Err(NameError::Bidi(c));
    }
    if c.identifier_type() == Some(IdentifierType::Default_Ignorable) {
        return Err(NameError::Invisible(c));
    }
    Ok(())
}

/// The scripts of `name`'s letters, each once, in order of appearance.
fn scripts_of(name: &str) -> Vec<&'static str> {
    let mut scripts = Vec::new();
    for script in name.chars().map(|c| c.script()) {
        if !matches!(script, Script::Common | Script::Inherited | Script::Unknown)
            && !scripts.contains(&script.full_name())
        {
            scripts.push(script.full_name());
        }
    }
    scripts
}

/// What makes two names "the same": one or two keys, and names that share a key are
/// the same name. Both are UTS #39 confusable skeletons of the name: one of its lower
/// case ("ADMIN" = "admin"), one of its look as written, lower-cased after ("AIice"
/// with a capital i = "alice", though in lower case they differ). Both map
/// look-alikes from other scripts (Cyrillic "расе" = Latin "pace") and drop invisible
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameKeys(Vec<String>);

impl NameKeys {
    /// The keys of `name` (a normalised name, from [`normalize`]).
    pub fn of(name: &str) -> NameKeys {
        let skel = |s: &str| skeleton(s).collect::<String>();
        let by_case = skel(&name.to_lowercase());
        // A skeleton may hold capitals (`I` and `l` both map to `l`, `0` to `O`):
        // lower-case it, and take the skeleton again of that.
        let by_look = skel(&skel(name).to_lowercase());
        let mut keys = vec![by_case];
        if by_look != keys[0] {
            keys.push(by_look);
        }
        NameKeys(keys)
    }

    /// The keys, one or two.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The first key: the skeleton of the name's lower case.
    fn first(&self) -> &str {
        &self.0[0]
    }

    /// Whether the name is one of [`RESERVED`], ignoring spaces and punctuation.
    pub fn is_reserved(&self) -> bool {
        let bare = |key: &str| -> String {
            key.chars()
                .filter(|c| !c.is_whitespace() && !PUNCTUATION.contains(c))
                .collect()
        };
        RESERVED.iter().any(|reserved| {
            NameKeys::of(reserved)
                .iter()
                .any(|r| self.iter().any(|k| bare(k) == r))
        })
    }
}

/// Why [`NameRegistry::claim`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// Someone else holds this name or one that looks like it.
    Taken,
    /// The registry is full of names that have not expired yet.
    Full,
}

/// Who holds which names, and until when: a name is held by its owner (an id that
/// the chat's tokens carry) until the last token issued for it expires. Expired holds
/// are dropped whenever a name is claimed, and at most `max_names` names are held.
///
/// A std `Mutex`: every use is a few map operations, never held across an `.await`.
#[derive(Debug)]
pub struct NameRegistry {
    /// How many names may be held (each under one or two keys).
    max_names: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// Key -> its hold.
    by_key: HashMap<String, Hold>,
    /// The same holds by expiry, so that dropping the expired ones costs only them.
    by_expiry: BTreeSet<(u64, String)>,
    /// How many holds are some name's first key: the number of names held.
    names: usize,
}

#[derive(Debug)]
struct Hold {
    /// Who holds it: the owner id in their tokens.
    owner: String,
    /// Until when, in seconds since the Unix epoch.
    expires_at: u64,
    /// Whether this is the first key of a name claimed (its lower-case skeleton),
    /// which counts it; the other is its look's.
    first: bool,
}

impl NameRegistry {
    /// An empty registry that holds at most `max_names` names.
    pub fn new(max_names: usize) -> Self {
        NameRegistry {
            max_names,
            held: Mutex::default(),
        }
    }

    /// Gives the name with `keys` to `owner` until `expires_at` (seconds since the
    /// Unix epoch), or extends their hold to then: refused if another owner holds one
    /// of the keys at `now`, or if the registry is full.
    pub fn claim(
        &self,
        keys: &NameKeys,
        owner: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), ClaimError> {
        // A poisoned lock only means a panic elsewhere mid-update; the maps are
        // still consistent enough for names.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.drop_expired(now);
        if keys
            .iter()
            .any(|k| held.by_key.get(k).is_some_and(|h| h.owner != owner))
        {
            return Err(ClaimError::Taken);
        }
        let first = keys.first();
        let counted = held.by_key.get(first).is_some_and(|h| h.first);
        if !counted && held.names >= self.max_names {
            return Err(ClaimError::Full);
        }
        for key in keys.iter() {
            held.hold(key, key == first, owner, expires_at);
        }
        Ok(())
    }

    /// How many names are held, expired ones included until the next claim drops
    /// them.
    pub fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .names
    }

    /// Whether no name is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Held {
    fn drop_expired(&mut self, now: u64) {
        while let Some(first) = self.by_expiry.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                if self.by_key.remove(&key).is_some_and(|h| h.first) {
                    self.names -= 1;
                }
            }
        }
    }

    /// Holds `key` for `owner` (who holds it already, or nobody does) until
    /// `expires_at`, or later if it was held until later. `first`: it is the first
    /// key of the name claimed.
    fn hold(&mut self, key: &str, first: bool, owner: &str, expires_at: u64) {
        let (expires_at, was_first) = match self.by_key.get(key) {
            Some(hold) => {
                self.by_expiry.remove(&(hold.expires_at, key.to_owned()));
                (hold.expires_at.max(expires_at), hold.first)
            }
            None => (expires_at, false),
        };
        if first && !was_first {
            self.names += 1;
        }
        self.by_expiry.insert((expires_at, key.to_owned()));
        self.by_key.insert(
            key.to_owned(),
            Hold {
                owner: owner.to_owned(),
                expires_at,
                first: first || was_first,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> NameError {
        normalize(raw).expect_err(raw)
    }

    #[test]
    fn names_in_many_scripts_are_accepted_as_normalised() {
        for name in [
            "alice",
            "José",
            "Zoë",
            "Дмитрий",
            "山田太郎",
            "やまだ タロウ",
            "O'Brien",
            "Mary-Jane",
            "j.doe",
            "dev_42",
            "Ελένη",
            "नमस्ते",
            "محمد",
            "김민준",
            "R2D2",
        ] {
            assert_eq!(normalize(name).as_deref(), Ok(name), "{name}");
        }
        // Normalised: NFKC, trimmed, typographic apostrophe.
        assert_eq!(normalize("\u{212A}elvin").as_deref(), Ok("Kelvin"));
        assert_eq!(normalize("  Ａｌｉｃｅ ").as_deref(), Ok("Alice"));
        assert_eq!(normalize("Jose\u{301}").as_deref(), Ok("José"));
        assert_eq!(normalize("O\u{2019}Brien").as_deref(), Ok("O'Brien"));
        assert_eq!(normalize("Mary\u{A0}Jane").as_deref(), Ok("Mary Jane"));
    }

    #[test]
    fn invisible_and_control_characters_are_refused() {
        for c in [
            '\u{AD}',
            '\u{2060}',
            '\u{180E}',
            '\u{E0061}',
            '\u{3164}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{200F}',
        ] {
            assert_eq!(
                refused(&format!("al{c}ice")),
                NameError::Invisible(c),
                "U+{:04X}",
                c as u32
            );
        }
        // The halfwidth Hangul filler becomes U+1160 under NFKC; the message quotes
        // what was typed.
        assert_eq!(refused("al\u{FFA0}ice"), NameError::Invisible('\u{FFA0}'));
        assert_eq!(refused("\u{3164}"), NameError::Invisible('\u{3164}'));
        for c in ['\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}'] {
            assert_eq!(refused(&format!("al{c}ice")), NameError::Bidi(c));
        }
        for c in ['\u{7}', '\u{1B}', '\n', '\u{85}'] {
            assert_eq!(refused(&format!("al{c}ice")), NameError::Control(c));
        }
        assert_eq!(refused("\u{2800}"), NameError::NotAllowed('\u{2800}'));
        assert_eq!(refused("al\u{2800}ice"), NameError::NotAllowed('\u{2800}'));
        assert_eq!(
            refused("al\u{2800}ice").to_string(),
            "names may only contain letters, digits, spaces and - _ . ' (U+2800 is not allowed)"
        );
    }

    #[test]
    fn look_alikes_are_refused() {
        // A Cyrillic а in a Latin name.
        assert_eq!(
            refused("\u{430}lice"),
            NameError::MixedScripts(vec!["Cyrillic", "Latin"])
        );
        assert_eq!(
            refused("\u{430}lice").to_string(),
            "names must use one script (this one mixes Cyrillic and Latin)"
        );
        // A dotless i with a dot above draws an i; overlays are not identifier marks.
        assert_eq!(
            refused("al\u{131}\u{307}ce"),
            NameError::CombiningMark('\u{307}')
        );
        assert_eq!(refused("alic\u{338}e"), NameError::NotAllowed('\u{338}'));
        // Thai's own marks are fine, but not stacked.
        assert_eq!(
            refused("ก\u{E34}\u{E34}"),
            NameError::RepeatedMark('\u{E34}')
        );
    }

    #[test]
    fn shape_and_length_are_checked() {
        assert_eq!(refused(""), NameError::Length);
        assert_eq!(refused("   "), NameError::Length);
        assert_eq!(refused(&"a".repeat(MAX_NAME_CHARS + 1)), NameError::Length);
        assert!(normalize(&"я".repeat(MAX_NAME_CHARS)).is_ok());
        assert_eq!(refused(&"\u{AD}".repeat(1000)), NameError::Length);
        assert_eq!(refused("mary  jane"), NameError::Spacing);
        assert_eq!(
            refused("mary\u{2028}jane").to_string(),
            "names may only have single spaces between words"
        );
        // NFKC makes an em space a space: one is fine, but not next to another.
        assert_eq!(normalize("mary\u{2003}jane").as_deref(), Ok("mary jane"));
        assert_eq!(refused("mary\u{2003} jane"), NameError::Spacing);
        assert_eq!(refused("--"), NameError::NoLetter);
        assert_eq!(refused("<b>eve</b>"), NameError::NotAllowed('<'));
        assert_eq!(refused("alice@example"), NameError::NotAllowed('@'));
    }

    #[test]
    fn reserved_names_are_refused_in_any_spelling() {
        for name in [
            "admin",
            "ADMIN",
            "Admin",
            "ad-min",
            "Sys Tem",
            "r00t",
            "\u{430}dmin",
            "ＡＤＭＩＮ",
        ] {
            match normalize(name) {
                Err(NameError::Reserved(_)) | Err(NameError::MixedScripts(_)) => {}
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(
            refused("ADMIN").to_string(),
            "the name \"ADMIN\" is reserved"
        );
        assert_eq!(refused("r00t"), NameError::Reserved("r00t".into()));
        assert!(normalize("rootbeer").is_ok());
        assert!(normalize("Modesty").is_ok());
    }

    #[test]
    fn look_alike_names_share_a_key() {
        let shares = |a: &str, b: &str| {
            let (a, b) = (NameKeys::of(a), NameKeys::of(b));
            a.iter().any(|k| b.iter().any(|l| l == k))
        };
        assert!(shares("alice", "Alice"));
        assert!(shares("alice", "ALICE"));
        assert!(shares("alice", "AIice")); // capital i
        assert!(shares("pace", "расе")); // Cyrillic
        assert!(shares("bob", "b\u{AD}ob"));
        assert!(!shares("alice", "alicia"));
        assert!(!shares("Mary Jane", "Mary-Jane"));
    }

    #[test]
    fn a_name_is_held_by_one_owner_until_it_expires() {
        let names = NameRegistry::new(10);
        let alice = NameKeys::of("alice");
        assert_eq!(names.claim(&alice, "o1", 100, 0), Ok(()));
        assert_eq!(
            names.claim(&NameKeys::of("Alice"), "o2", 100, 10),
            Err(ClaimError::Taken)
        );
        assert_eq!(
            names.claim(&NameKeys::of("AIice"), "o2", 100, 10),
            Err(ClaimError::Taken)
        );
        // The owner may claim it again, and the hold lasts to the later expiry.
        assert_eq!(names.claim(&NameKeys::of("ALICE"), "o1", 200, 50), Ok(()));
        assert_eq!(names.claim(&alice, "o2", 300, 150), Err(ClaimError::Taken));
        // Once expired, it is free (and dropped).
        assert_eq!(names.claim(&alice, "o2", 300, 200), Ok(()));
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn the_registry_is_bounded_and_drops_expired_names() {
        let names = NameRegistry::new(3);
        assert_eq!(names.claim(&NameKeys::of("ann"), "o1", 100, 0), Ok(()));
        assert_eq!(names.claim(&NameKeys::of("AIma"), "o2", 100, 0), Ok(())); // two keys
        assert_eq!(names.len(), 2);
        // Its holder's other spelling is another name.
        assert_eq!(names.claim(&NameKeys::of("alma"), "o2", 100, 0), Ok(()));
        assert_eq!(names.len(), 3);
        assert_eq!(
            names.claim(&NameKeys::of("cy"), "o4", 100, 0),
            Err(ClaimError::Full)
        );
        // The holder of a name may still renew it when full.
        assert_eq!(names.claim(&NameKeys::of("ann"), "o1", 150, 0), Ok(()));
        // Expired holds make room.
        assert_eq!(names.claim(&NameKeys::of("cy"), "o4", 300, 100), Ok(()));
        assert_eq!(names.len(), 2, "ann and cy are left");
        assert_eq!(names.held.lock().unwrap().by_key.len(), 2);
    }
}
