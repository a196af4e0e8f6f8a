//! Readers for the loose scalar forms RancherOS accepted: YAML 1.1 booleans
//! (`yes`, `on`, …) that YAML 1.2 reads as strings, maps whose values may be
//! numbers or strings (`sysctl`, `environment`), and fields that take a
//! string or a list of strings.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Words YAML 1.1 (and so RancherOS) read as booleans.
pub fn parse_bool_word(word: &str) -> Option<bool> {
    match word.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" => Some(true),
        "false" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

struct BoolVisitor;

impl Visitor<'_> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean (true/false, yes/no, on/off)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        parse_bool_word(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

/// `#[serde(deserialize_with)]` for `bool` fields.
pub fn bool_word<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    deserializer.deserialize_any(BoolVisitor)
}

/// `#[serde(deserialize_with)]` for `Option<bool>` fields (with `default`).
pub fn opt_bool_word<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    bool_word(deserializer).map(Some)
}

/// A scalar of any type, as the text it was written as.
#[derive(Debug)]
pub struct ScalarText(pub String);

impl<'de> de::Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = ScalarText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// `#[serde(deserialize_with)]` for string maps whose values may be written
/// as numbers or booleans (`net.ipv4.ip_forward: 1`). An empty value
/// (`EMPTY:`) is the empty string, as RancherOS's `map[string]string` read it.
pub fn scalar_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, Option<ScalarText>>> =
        de::Deserialize::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.map(|ScalarText(text)| text).unwrap_or_default()))
        .collect())
}

/// A field that takes a string or a list of strings, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringOrList {
    /// One string (a shell command line, for commands).
    String(String),
    /// A list (an argv, for commands).
    List(Vec<String>),
}

impl StringOrList {
    /// The list form: a string becomes a one-element list.
    pub fn to_list(&self) -> Vec<String> {
        match self {
            Self::String(text) => vec![text.clone()],
            Self::List(list) => list.clone(),
        }
    }
}

impl<'de> de::Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringOrListVisitor;
        impl<'de> Visitor<'de> for StringOrListVisitor {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringOrList, E> {
                Ok(StringOrList::String(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StringOrList, E> {
                Ok(StringOrList::String(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StringOrList, E> {
                Ok(StringOrList::String(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrList, A::Error> {
                let mut list = Vec::new();
                while let Some(ScalarText(item)) = seq.next_element()? {
                    list.push(item);
                }
                Ok(StringOrList::List(list))
            }
        }
        deserializer.deserialize_any(StringOrListVisitor)
    }
}

/// `KEY: value` maps that compose also lets people write as `- KEY=value`
/// lists (service `environment` and `labels`). Order is kept; a list entry
/// without `=` has no value (compose takes it from the environment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValues(pub Vec<(String, Option<String>)>);

impl KeyValues {
    /// The value of `key`, if it is set with a value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .and_then(|(_, value)| value.as_deref())
    }
}

impl<'de> de::Deserialize<'de> for KeyValues {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyValuesVisitor;
        impl<'de> Visitor<'de> for KeyValuesVisitor {
            type Value = KeyValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of KEY: value or a list of KEY=value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyValues, E> {
                Ok(KeyValues::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyValues, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Option<ScalarText>>()? {
                    entries.push((key, value.map(|ScalarText(text)| text)));
                }
                Ok(KeyValues(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyValues, A::Error> {
                let mut entries = Vec::new();
                while let Some(ScalarText(item)) = seq.next_element()? {
                    entries.push(match item.split_once('=') {
                        Some((key, value)) => (key.to_owned(), Some(value.to_owned())),
                        None => (item, None),
                    });
                }
                Ok(KeyValues(entries))
            }
        }
        deserializer.deserialize_any(KeyValuesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Flags {
        #[serde(deserialize_with = "bool_word")]
        flag: bool,
    }

    #[test]
    fn accepts_every_rancheros_boolean_spelling() {
        for (word, expected) in [
            ("true", true),
            ("yes", true),
            ("Yes", true),
            ("on", true),
            ("ON", true),
            ("y", true),
            ("false", false),
            ("no", false),
            ("off", false),
            ("Off", false),
            ("n", false),
        ] {
            let flags: Flags = serde_norway::from_str(&format!("flag: {word}")).unwrap();
            assert_eq!(flags.flag, expected, "{word}");
        }
    }

    #[test]
    fn refuses_other_words_naming_the_accepted_forms() {
        for text in ["flag: maybe", "flag: 1", "flag: [true]"] {
            let error = serde_norway::from_str::<Flags>(text).unwrap_err();
            assert!(
                error.to_string().contains("true/false, yes/no, on/off"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn key_values_take_maps_and_lists() {
        let from_map: KeyValues = serde_norway::from_str("A: 1\nB: x\nC:").unwrap();
        let from_list: KeyValues = serde_norway::from_str("[A=1, B=x, C]").unwrap();
        let expected = KeyValues(vec![
            ("A".into(), Some("1".into())),
            ("B".into(), Some("x".into())),
            ("C".into(), None),
        ]);
        assert_eq!(from_map, expected);
        assert_eq!(from_list, expected);
        assert_eq!(expected.get("B"), Some("x"));
        assert_eq!(expected.get("C"), None);
    }
}
