//! Key paths as `ros config get/set` takes them: `rancher.network.dns`,
//! list indices `write_files[2].path`, and quoted segments for keys that
//! contain dots (`rancher.network.interfaces."eth0.100".dhcp`), which
//! RancherOS split in the wrong place.

use std::fmt;

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{escaped_transform, is_not, tag, take_while1},
    character::complete::{char, digit1},
    combinator::{all_consuming, map, map_res, value},
    multi::many0,
    sequence::{delimited, preceded},
};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// A parsed key path; displays in the syntax it parses from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KeyPath(Vec<Segment>);

/// A key path that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key path `{input}`: {reason}")]
pub struct KeyPathError {
    /// What was given.
    pub input: String,
    /// Why it is not a key path.
    pub reason: &'static str,
}

impl KeyPath {
    /// The empty path: the document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Builds a path from segments.
    pub fn from_segments(segments: Vec<Segment>) -> Self {
        Self(segments)
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// This path with a mapping key appended.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.into()));
        Self(segments)
    }

    /// This path with a list index appended.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// True for the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `a.b[2]."c.d"`. The first segment must be a key.
    pub fn parse(input: &str) -> Result<Self, KeyPathError> {
        let error = |reason| KeyPathError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(error("it is empty"));
        }
        match all_consuming(key_path).parse(input) {
            Ok((_, path)) => Ok(path),
            Err(_) => Err(error(
                "expected keys separated by `.`, indices like `[2]`, and \"quoted\" keys that contain dots",
            )),
        }
    }
}

impl std::str::FromStr for KeyPath {
    type Err = KeyPathError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

/// Characters that end a bare segment.
fn is_bare_char(c: char) -> bool {
    !matches!(c, '.' | '[' | ']' | '"' | '\\') && !c.is_whitespace() && !c.is_control()
}

fn bare_key(input: &str) -> IResult<&str, String> {
    map(take_while1(is_bare_char), str::to_owned).parse(input)
}

fn quoted_key(input: &str) -> IResult<&str, String> {
    delimited(
        char('"'),
        map(
            nom::combinator::opt(escaped_transform(
                is_not("\"\\"),
                '\\',
                alt((value("\"", tag("\"")), value("\\", tag("\\")))),
            )),
            Option::unwrap_or_default,
        ),
        char('"'),
    )
    .parse(input)
}

fn key(input: &str) -> IResult<&str, Segment> {
    map(alt((quoted_key, bare_key)), Segment::Key).parse(input)
}

fn index(input: &str) -> IResult<&str, Segment> {
    map(
        delimited(char('['), map_res(digit1, str::parse::<usize>), char(']')),
        Segment::Index,
    )
    .parse(input)
}

fn key_path(input: &str) -> IResult<&str, KeyPath> {
    let (rest, first) = key(input)?;
    let (rest, more) = many0(alt((preceded(char('.'), key), index))).parse(rest)?;
    let mut segments = vec![first];
    segments.extend(more);
    Ok((rest, KeyPath(segments)))
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    if !key.is_empty() && key.chars().all(is_bare_char) {
                        f.write_str(key)?;
                    } else {
                        f.write_str("\"")?;
                        for c in key.chars() {
                            if matches!(c, '"' | '\\') {
                                f.write_str("\\")?;
                            }
                            write!(f, "{c}")?;
                        }
                        f.write_str("\"")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(path: &KeyPath) -> Vec<String> {
        path.segments()
            .iter()
            .map(|segment| match segment {
                Segment::Key(key) => key.clone(),
                Segment::Index(index) => format!("#{index}"),
            })
            .collect()
    }

    #[test]
    fn parses_the_documented_forms() {
        let cases: &[(&str, &[&str])] = &[
            ("hostname", &["hostname"]),
            ("rancher.network.dns", &["rancher", "network", "dns"]),
            ("write_files[2].path", &["write_files", "#2", "path"]),
            ("a.b[2]", &["a", "b", "#2"]),
            ("runcmd[0][1]", &["runcmd", "#0", "#1"]),
            (
                r#"rancher.network.interfaces."eth0.100".dhcp"#,
                &["rancher", "network", "interfaces", "eth0.100", "dhcp"],
            ),
            (
                r#"rancher.network.interfaces."mac=52:54:00:12:34:56""#,
                &["rancher", "network", "interfaces", "mac=52:54:00:12:34:56"],
            ),
            (r#""with \"quote\"".x"#, &[r#"with "quote""#, "x"]),
            (r#""""#, &[""]),
            (
                "rancher.sysctl.net/ipv4",
                &["rancher", "sysctl", "net/ipv4"],
            ),
        ];
        for (input, expected) in cases {
            let path = KeyPath::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(keys(&path), *expected, "{input}");
        }
    }

    #[test]
    fn rejects_malformed_paths() {
        for input in [
            "", ".a", "a.", "a..b", "[0]", "a[", "a[x]", "a[-1]", "\"a", "a b", "a]", "a.\"b",
        ] {
            let error = KeyPath::parse(input).expect_err(input);
            assert_eq!(error.input, input);
        }
    }

    #[test]
    fn displays_in_the_syntax_it_parses_from() {
        let path = KeyPath::root()
            .key("rancher")
            .key("interfaces")
            .key("eth0.100")
            .index(3)
            .key("a\"b");
        assert_eq!(
            path.to_string(),
            r#"rancher.interfaces."eth0.100"[3]."a\"b""#
        );
    }

    fn segment_strategy() -> impl Strategy<Value = Segment> {
        prop_oneof![
            "\\PC{0,12}".prop_map(Segment::Key),
            (0usize..1000).prop_map(Segment::Index),
        ]
    }

    proptest! {
        #[test]
        fn never_panics(input in "\\PC{0,64}") {
            let _ = KeyPath::parse(&input);
        }

        #[test]
        fn display_round_trips(
            first in "\\PC{0,12}",
            rest in proptest::collection::vec(segment_strategy(), 0..6),
        ) {
            let mut segments = vec![Segment::Key(first)];
            segments.extend(rest);
            let path = KeyPath::from_segments(segments);
            let shown = path.to_string();
            prop_assert_eq!(KeyPath::parse(&shown), Ok(path), "{}", shown);
        }
    }
}
