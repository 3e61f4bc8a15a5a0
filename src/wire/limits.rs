//! Length limits of the Track API, enforced by construction.
//!
//! Every string field of the wire model is a [`Bounded`] with its limit in the type, so a value
//! that is too long is cut when it is put in, at a character boundary, and no caller can forget.
//! Limits count Unicode scalar values (characters), as the service does.

use std::borrow::Cow;

use serde::{Serialize, Serializer};

/// Longest property key the service accepts (INGESTION.md §2).
pub(crate) const PROPERTY_KEY: usize = 150;
/// Longest property value the service accepts.
pub(crate) const PROPERTY_VALUE: usize = 8192;
/// Longest value of the generative-AI content properties (MAPPING.md §3.5).
pub(crate) const GEN_AI_PROPERTY_VALUE: usize = 262_144;
/// Longest measurement key.
pub(crate) const MEASUREMENT_KEY: usize = 150;
/// The service rejects an item whose JSON is larger than this (INGESTION.md §2).
pub(crate) const MAX_ITEM_BYTES: usize = 64 * 1024;
/// The service accepts at most this many items in one request.
pub(crate) const MAX_ITEMS_PER_REQUEST: usize = 64_000;

/// Cuts `s` to at most `max` characters, never inside a character.
pub(crate) fn truncate_str(s: &str, max: usize) -> &str {
    // A string of at most `max` bytes has at most `max` characters.
    if s.len() <= max {
        return s;
    }
    match s.char_indices().nth(max) {
        Some((byte, _)) => &s[..byte],
        None => s,
    }
}

/// Cuts an owned or borrowed string to at most `max` characters.
pub(crate) fn truncate_cow(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(truncate_str(b, max)),
        Cow::Owned(mut o) => {
            let keep = truncate_str(&o, max).len();
            o.truncate(keep);
            Cow::Owned(o)
        }
    }
}

/// A string of at most `MAX` characters. Longer input is truncated on construction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bounded<'a, const MAX: usize>(Cow<'a, str>);

impl<'a, const MAX: usize> Bounded<'a, MAX> {
    /// Takes `s`, cut to `MAX` characters.
    pub(crate) fn new(s: impl Into<Cow<'a, str>>) -> Self {
        Bounded(truncate_cow(s.into(), MAX))
    }

    /// The text, to cut further (it only gets shorter, so it stays within `MAX`).
    pub(crate) fn text_mut(&mut self) -> &mut Cow<'a, str> {
        &mut self.0
    }

    /// The (possibly truncated) text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'a, const MAX: usize> From<&'a str> for Bounded<'a, MAX> {
    fn from(s: &'a str) -> Self {
        Bounded::new(s)
    }
}

impl<const MAX: usize> From<String> for Bounded<'_, MAX> {
    fn from(s: String) -> Self {
        Bounded::new(s)
    }
}

impl<'a, const MAX: usize> From<Cow<'a, str>> for Bounded<'a, MAX> {
    fn from(s: Cow<'a, str>) -> Self {
        Bounded::new(s)
    }
}

impl<const MAX: usize> Serialize for Bounded<'_, MAX> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_strings_are_kept() {
        assert_eq!(truncate_str("abc", 3), "abc");
        assert_eq!(truncate_str("", 0), "");
    }

    #[test]
    fn counts_characters_not_bytes() {
        // "é" is two bytes; five of them are ten bytes but five characters.
        assert_eq!(truncate_str("ééééé", 5), "ééééé");
        assert_eq!(truncate_str("ééééé", 2), "éé");
        assert_eq!(truncate_str("a😀b", 2), "a😀");
        assert_eq!(Bounded::<3>::new(String::from("abcdef")).as_str(), "abc");
    }

    proptest! {
        #[test]
        fn truncation_never_panics_and_keeps_a_prefix(s in any::<String>(), max in 0usize..64) {
            let t = truncate_str(&s, max);
            prop_assert!(s.starts_with(t));
            prop_assert!(t.chars().count() <= max);
            if s.chars().count() <= max {
                prop_assert_eq!(t, s.as_str());
            } else {
                prop_assert_eq!(t.chars().count(), max);
            }
            let owned = truncate_cow(Cow::Owned(s.clone()), max);
            prop_assert_eq!(owned.as_ref(), t);
        }
    }
}
