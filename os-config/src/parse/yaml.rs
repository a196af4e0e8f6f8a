//! Untrusted YAML, measured before it is read: user-data, metadata and
//! every configuration layer come through [`scan`] first.
//!
//! serde_norway expands aliases as it reads (each `*name` replays the
//! anchored events), and its only guard counts alias *uses* against 100 ×
//! the number of events: one anchored 500 KB string and 100,000 one-word
//! aliases of it pass that guard and expand to 50 GB. So the text is first
//! walked once through libyaml's event parser, which does not expand
//! anything: each anchor's expanded size (nodes and scalar bytes) is
//! computed as it closes, each alias adds that size, and the walk stops as
//! soon as the total passes [`MAX_NODES`] or [`MAX_TEXT`]. The cost is one
//! parse of the text whatever the aliases would have expanded to.
//!
//! The same walk finds the line of many key paths at once
//! ([`lines_of`]): a document with a thousand problems is parsed once to
//! locate them all, not once per problem.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::mem::MaybeUninit;

use unsafe_libyaml_norway as unsafe_yaml;

use super::keypath::{KeyPath, Segment};

/// The largest YAML document read, in bytes: user-data is capped at this
/// size by every datasource already ([`crate::userdata::MAX_USER_DATA`]);
/// a configuration layer on disk gets the same bound.
pub const MAX_DOCUMENT: usize = crate::userdata::MAX_USER_DATA;

/// The most nodes (scalars, lists, mappings) a document may expand to,
/// aliases included. A `serde_norway::Value` node takes about 100–200
/// bytes once read and the checker copies the tree a few times, so this
/// bounds a document's cost to some tens of MiB; a real cloud-config has
/// hundreds of nodes, a generous one thousands. 10^5 keys (200,001 nodes)
/// still read, so that a document with that many unknown keys is reported
/// and its good keys apply.
pub const MAX_NODES: usize = 250_000;

/// The most scalar bytes a document may expand to, aliases included: four
/// times the largest document, so that aliases used as intended (a block
/// repeated a few times) pass and a bomb does not.
pub const MAX_TEXT: usize = 4 * MAX_DOCUMENT;

/// A document over a bound: refused whole, before it is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlLimit {
    /// The text is too long.
    #[error("the document is {size} bytes, more than the {limit} bytes allowed")]
    TooLong {
        /// Its length.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// Too many nodes once aliases are expanded.
    #[error(
        "the document expands to more than {limit} nodes{}; refused (an alias bomb, or far too large)",
        through_aliases(*.aliases)
    )]
    TooManyNodes {
        /// The bound.
        limit: usize,
        /// Aliases seen before the bound was passed.
        aliases: usize,
    },
    /// Too much scalar text once aliases are expanded.
    #[error(
        "the document expands to more than {limit} bytes of text{}; refused (an alias bomb, or far too large)",
        through_aliases(*.aliases)
    )]
    TooMuchText {
        /// The bound.
        limit: usize,
        /// Aliases seen before the bound was passed.
        aliases: usize,
    },
}

fn through_aliases(aliases: usize) -> String {
    match aliases {
        0 => String::new(),
        n => format!(" through {n} aliases"),
    }
}

/// What [`scan`] measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    /// Nodes, aliases expanded.
    pub nodes: usize,
    /// Scalar bytes, aliases expanded.
    pub text: usize,
    /// Aliases in the text.
    pub aliases: usize,
}

/// Measures `text` against [`MAX_DOCUMENT`], [`MAX_NODES`] and
/// [`MAX_TEXT`] without expanding an alias. Text that is not YAML is not
/// refused here: the YAML reader that comes next says what is wrong with
/// it, with its line; what was measured up to the fault is returned.
pub fn scan(text: &str) -> Result<Size, YamlLimit> {
    if text.len() > MAX_DOCUMENT {
        return Err(YamlLimit::TooLong {
            size: text.len(),
            limit: MAX_DOCUMENT,
        });
    }
    let mut walk = Walk::new(Bounds {
        nodes: MAX_NODES,
        text: MAX_TEXT,
    });
    events(text, |event| walk.event(event))?;
    Ok(walk.size)
}

/// Reads a YAML file of at most [`MAX_DOCUMENT`] bytes: a larger one is
/// an `InvalidData` error that says so, and nothing past the bound is
/// read.
pub fn read_document(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_DOCUMENT as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > MAX_DOCUMENT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_DOCUMENT} bytes, the most a configuration file may be"),
        ));
    }
    Ok(text)
}

/// The 1-based line of each of `paths` that `text` has: for a key, the
/// line of the key; for a list entry, the line where it starts. One parse
/// of `text` whatever the number of paths; a path inside an alias's
/// expansion, or in text that does not parse, is not found.
pub fn lines_of<'a>(
    text: &str,
    paths: impl IntoIterator<Item = &'a KeyPath>,
) -> HashMap<KeyPath, usize> {
    let wanted: HashSet<Vec<Segment>> = paths
        .into_iter()
        .filter(|path| !path.is_root())
        .map(|path| path.segments().to_vec())
        .collect();
    if wanted.is_empty() {
        return HashMap::new();
    }
    let mut walk = Walk::new(Bounds {
        nodes: usize::MAX,
        text: usize::MAX,
    });
    walk.wanted = wanted;
    // Bounds of usize::MAX are never passed.
    let _ = events(text, |event| walk.event(event));
    walk.found
        .into_iter()
        .map(|(segments, line)| (KeyPath::from_segments(segments), line))
        .collect()
}

/// One libyaml event, in the terms the walk needs.
enum Event<'e> {
    Scalar {
        anchor: Option<&'e [u8]>,
        value: &'e [u8],
        plain: bool,
        line: usize,
    },
    Alias {
        anchor: &'e [u8],
        line: usize,
    },
    Start {
        anchor: Option<&'e [u8]>,
        mapping: bool,
        line: usize,
    },
    End,
    Other,
}

/// Runs libyaml's parser over `text`, handing each event to `each` until
/// the stream ends, the text stops parsing or `each` fails.
fn events<E>(text: &str, mut each: impl FnMut(Event<'_>) -> Result<(), E>) -> Result<(), E> {
    let mut parser: Box<MaybeUninit<unsafe_yaml::yaml_parser_t>> = Box::new(MaybeUninit::uninit());
    let parser = parser.as_mut_ptr();
    // SAFETY: `parser` points to memory owned by the box above, which
    // lives (and does not move) until the end of this function;
    // yaml_parser_initialize fills it in. On failure (no memory) nothing
    // was allocated and the parser is not used.
    if unsafe { unsafe_yaml::yaml_parser_initialize(parser) }.fail {
        return Ok(());
    }
    // SAFETY: the parser was initialised; `text` outlives it (the parser
    // is deleted before this function returns) and is not changed.
    unsafe {
        unsafe_yaml::yaml_parser_set_encoding(parser, unsafe_yaml::YAML_UTF8_ENCODING);
        unsafe_yaml::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
    }
    let result = loop {
        let mut raw = MaybeUninit::<unsafe_yaml::yaml_event_t>::uninit();
        let raw = raw.as_mut_ptr();
        // SAFETY: the parser is initialised and has its input; `raw`
        // points to writable memory for one event, which a successful
        // call fills in.
        if unsafe { unsafe_yaml::yaml_parser_parse(parser, raw) }.fail {
            break Ok(());
        }
        // SAFETY: the call succeeded, so `*raw` is an event whose union
        // member matches its type, and its pointers are valid until
        // yaml_event_delete below.
        let (event, end) = unsafe { convert(&*raw) };
        let outcome = each(event);
        // SAFETY: `raw` holds an event from yaml_parser_parse, deleted once.
        unsafe { unsafe_yaml::yaml_event_delete(raw) };
        if outcome.is_err() || end {
            break outcome;
        }
    };
    // SAFETY: initialised above and deleted exactly once.
    unsafe { unsafe_yaml::yaml_parser_delete(parser) };
    result
}

/// Reads an event's fields; true with it when the stream ends.
///
/// # Safety
/// `raw` must be an event filled in by `yaml_parser_parse` and not yet
/// deleted; what is returned borrows from it.
unsafe fn convert(raw: &unsafe_yaml::yaml_event_t) -> (Event<'_>, bool) {
    // libyaml counts lines in a u64; past usize the input could not be
    // in memory, so saturating loses nothing real.
    let line = usize::try_from(raw.start_mark.line).map_or(usize::MAX, |l| l.saturating_add(1));
    // `type_` says which union member libyaml filled in; anchors are
    // NUL-terminated strings or null, and a scalar's value has `length`
    // bytes, all owned by the event.
    let anchor = |pointer: *const u8| {
        if pointer.is_null() {
            return None;
        }
        // SAFETY: a non-null anchor is a NUL-terminated string owned by
        // the event, which outlives what is returned.
        Some(unsafe { CStr::from_ptr(pointer.cast()) }.to_bytes())
    };
    let event = match raw.type_ {
        unsafe_yaml::YAML_SCALAR_EVENT => {
            // SAFETY: a scalar event: the scalar member is the live one.
            let scalar = unsafe { raw.data.scalar };
            let value = if scalar.value.is_null() {
                &[][..]
            } else {
                // The length of a buffer libyaml allocated in this process:
                // it fits in usize.
                #[allow(clippy::cast_possible_truncation)]
                let length = scalar.length as usize;
                // SAFETY: `value` has `length` bytes, owned by the event.
                unsafe { std::slice::from_raw_parts(scalar.value, length) }
            };
            Event::Scalar {
                anchor: anchor(scalar.anchor),
                value,
                plain: scalar.style == unsafe_yaml::YAML_PLAIN_SCALAR_STYLE,
                line,
            }
        }
        unsafe_yaml::YAML_ALIAS_EVENT => Event::Alias {
            // SAFETY: an alias event: the alias member is the live one.
            anchor: anchor(unsafe { raw.data.alias.anchor }).unwrap_or_default(),
            line,
        },
        unsafe_yaml::YAML_SEQUENCE_START_EVENT => Event::Start {
            // SAFETY: a sequence start: that member is the live one.
            anchor: anchor(unsafe { raw.data.sequence_start.anchor }),
            mapping: false,
            line,
        },
        unsafe_yaml::YAML_MAPPING_START_EVENT => Event::Start {
            // SAFETY: a mapping start: that member is the live one.
            anchor: anchor(unsafe { raw.data.mapping_start.anchor }),
            mapping: true,
            line,
        },
        unsafe_yaml::YAML_SEQUENCE_END_EVENT | unsafe_yaml::YAML_MAPPING_END_EVENT => Event::End,
        _ => Event::Other,
    };
    (event, raw.type_ == unsafe_yaml::YAML_STREAM_END_EVENT)
}

struct Bounds {
    nodes: usize,
    text: usize,
}

/// A list or mapping being read.
struct Frame {
    mapping: bool,
    anchor: Option<Vec<u8>>,
    /// The totals when it started: its expanded size is the difference.
    nodes_before: usize,
    text_before: usize,
    /// Inside a mapping key (or under a key that is no scalar): nothing
    /// below has a key path.
    pathless: bool,
    /// Whether it added a segment to the walk's path.
    pushed: bool,
    /// Whether this collection is itself a mapping key.
    is_key: bool,
    /// Mapping: the next node is a key.
    expect_key: bool,
    /// Mapping: the key of the value being read, when it is a scalar.
    key: Option<String>,
    /// List: the index of the next entry.
    index: usize,
}

struct Walk {
    bounds: Bounds,
    size: Size,
    /// Expanded size of each anchor: (nodes, text).
    anchors: HashMap<Vec<u8>, (usize, usize)>,
    stack: Vec<Frame>,
    /// The key path of the innermost open collection.
    path: Vec<Segment>,
    wanted: HashSet<Vec<Segment>>,
    found: HashMap<Vec<Segment>, usize>,
}

impl Walk {
    fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            size: Size::default(),
            anchors: HashMap::new(),
            stack: Vec::new(),
            path: Vec::new(),
            wanted: HashSet::new(),
            found: HashMap::new(),
        }
    }

    fn event(&mut self, event: Event<'_>) -> Result<(), YamlLimit> {
        match event {
            Event::Scalar {
                anchor,
                value,
                plain,
                line,
            } => {
                let key_text = self.node_starts(line, || key_text(value, plain));
                self.add(1, value.len())?;
                if let Some(anchor) = anchor {
                    self.anchors.insert(anchor.to_vec(), (1, value.len()));
                }
                self.node_ends(key_text);
            }
            Event::Alias { anchor, line } => {
                self.size.aliases += 1;
                self.node_starts(line, || None);
                // An unknown anchor is the YAML reader's error to report.
                let (nodes, text) = self.anchors.get(anchor).copied().unwrap_or((0, 0));
                self.add(nodes, text)?;
                self.node_ends(None);
            }
            Event::Start {
                anchor,
                mapping,
                line,
            } => {
                let is_key = self.node_starts(line, || None).is_some();
                let segment = self.child_segment();
                // Below a complex key, or a value whose key is no scalar,
                // nothing has a key path.
                let pathless = is_key
                    || self
                        .stack
                        .last()
                        .is_some_and(|f| f.pathless || segment.is_none());
                let pushed = match segment {
                    Some(segment) if !pathless => {
                        self.path.push(segment);
                        true
                    }
                    _ => false,
                };
                self.stack.push(Frame {
                    mapping,
                    anchor: anchor.map(<[u8]>::to_vec),
                    nodes_before: self.size.nodes,
                    text_before: self.size.text,
                    pathless,
                    pushed,
                    is_key,
                    expect_key: true,
                    key: None,
                    index: 0,
                });
                self.add(1, 0)?;
            }
            Event::End => {
                let Some(frame) = self.stack.pop() else {
                    return Ok(());
                };
                if let Some(anchor) = frame.anchor {
                    self.anchors.insert(
                        anchor,
                        (
                            self.size.nodes - frame.nodes_before,
                            self.size.text - frame.text_before,
                        ),
                    );
                }
                if frame.pushed {
                    self.path.pop();
                }
                self.node_ends(frame.is_key.then_some(None));
            }
            Event::Other => {}
        }
        Ok(())
    }

    fn add(&mut self, nodes: usize, text: usize) -> Result<(), YamlLimit> {
        self.size.nodes = self.size.nodes.saturating_add(nodes);
        self.size.text = self.size.text.saturating_add(text);
        if self.size.nodes > self.bounds.nodes {
            return Err(YamlLimit::TooManyNodes {
                limit: self.bounds.nodes,
                aliases: self.size.aliases,
            });
        }
        if self.size.text > self.bounds.text {
            return Err(YamlLimit::TooMuchText {
                limit: self.bounds.text,
                aliases: self.size.aliases,
            });
        }
        Ok(())
    }

    /// A node starts at `line`. When it is a mapping key, returns
    /// `Some(its text)` (`Some(None)` for a key that is no scalar);
    /// otherwise records its line if its path is wanted.
    fn node_starts(
        &mut self,
        line: usize,
        key_text: impl FnOnce() -> Option<String>,
    ) -> Option<Option<String>> {
        let frame = self.stack.last()?;
        if frame.mapping && frame.expect_key {
            let key = key_text();
            if !frame.pathless
                && let Some(key) = &key
            {
                self.record(Segment::Key(key.clone()), line);
            }
            return Some(key);
        }
        if !frame.mapping && !frame.pathless {
            self.record(Segment::Index(frame.index), line);
        }
        None
    }

    fn record(&mut self, segment: Segment, line: usize) {
        if self.wanted.is_empty() {
            return;
        }
        self.path.push(segment);
        if self.wanted.contains(&self.path[..]) {
            self.found.entry(self.path.clone()).or_insert(line);
        }
        self.path.pop();
    }

    /// The segment a collection starting now takes in its parent.
    fn child_segment(&self) -> Option<Segment> {
        let frame = self.stack.last()?;
        if frame.mapping {
            frame.key.clone().map(Segment::Key)
        } else {
            Some(Segment::Index(frame.index))
        }
    }

    /// A node ended; `key` is `Some` when it was a mapping key (with its
    /// text when a scalar).
    fn node_ends(&mut self, key: Option<Option<String>>) {
        let Some(frame) = self.stack.last_mut() else {
            return;
        };
        if frame.mapping {
            if frame.expect_key {
                frame.key = key.flatten();
                frame.expect_key = false;
            } else {
                frame.key = None;
                frame.expect_key = true;
            }
        } else {
            frame.index += 1;
        }
    }
}

/// A mapping key's text as the checker names it: a plain `0x10`, `True`
/// or `~` is the number 16, `true` or `null`, as serde_norway reads them.
fn key_text(value: &[u8], plain: bool) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let resolves = plain
        && (text.is_empty()
            || text.starts_with(|c: char| c.is_ascii_digit() || "+-.~".contains(c))
            || matches!(
                text,
                "true" | "True" | "TRUE" | "false" | "False" | "FALSE" | "null" | "Null" | "NULL"
            ));
    if !resolves {
        return Some(text.to_owned());
    }
    Some(match serde_norway::from_str::<serde_norway::Value>(text) {
        Ok(serde_norway::Value::Bool(b)) => b.to_string(),
        Ok(serde_norway::Value::Number(n)) => n.to_string(),
        Ok(serde_norway::Value::Null) => "null".to_owned(),
        _ => text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str, paths: &[&str]) -> Vec<Option<usize>> {
        let paths: Vec<KeyPath> = paths.iter().map(|p| p.parse().unwrap()).collect();
        let found = lines_of(text, &paths);
        paths.iter().map(|p| found.get(p).copied()).collect()
    }

    #[test]
    fn many_paths_are_located_in_one_parse() {
        let text = "a: 1\nb:\n  c: [x, y]\n  d:\n    - e: 1\n    - f: 2\n";
        assert_eq!(
            lines(text, &["a", "b.c", "b.d[1]", "b.d[1].f", "b.zz", "b.c[1]"]),
            [Some(1), Some(3), Some(6), Some(6), None, Some(3)]
        );
    }

    #[test]
    fn keys_that_are_not_plain_strings_are_named_as_the_checker_names_them() {
        let text = "top:\n  0x10: a\n  True: b\n  ~: c\n  'quoted key': d\n  ? [complex]\n  : e\n  after: f\n";
        assert_eq!(
            lines(
                text,
                &[
                    "top.16",
                    "top.true",
                    "top.null",
                    "top.\"quoted key\"",
                    "top.after"
                ]
            ),
            [Some(2), Some(3), Some(4), Some(5), Some(8)]
        );
    }

    #[test]
    fn locating_ten_thousand_unknown_keys_is_one_parse_not_ten_thousand() {
        let text: String = (0..10_000).map(|i| format!("k{i}: {i}\n")).collect();
        let paths: Vec<KeyPath> = (0..10_000)
            .map(|i| KeyPath::root().key(format!("k{i}")))
            .collect();
        let started = std::time::Instant::now();
        let found = lines_of(&text, &paths);
        assert_eq!(found.len(), 10_000);
        assert_eq!(found[&paths[9_999]], 10_000);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn an_alias_bomb_is_refused_without_being_expanded() {
        // One 100 KB string and 100,000 aliases: 10 GB once expanded,
        // about 600 KB as text.
        let mut text = format!("big: &a {}\nbomb: [", "x".repeat(100_000));
        for _ in 0..100_000 {
            text.push_str("*a,");
        }
        text.push_str("]\n");
        let started = std::time::Instant::now();
        let error = scan(&text).unwrap_err();
        assert!(
            matches!(error, YamlLimit::TooMuchText { limit, .. } if limit == MAX_TEXT),
            "{error}"
        );
        assert!(error.to_string().contains("alias bomb"), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn nested_laughs_are_counted_by_nodes() {
        // Ten levels of ten aliases of the level below: 10^10 nodes.
        let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let below = level - 1;
            let aliases = vec![format!("*l{below}"); 10].join(", ");
            text.push_str(&format!("l{level}: &l{level} [{aliases}]\n"));
        }
        let error = scan(&text).unwrap_err();
        assert!(
            matches!(error, YamlLimit::TooManyNodes { limit, aliases } if limit == MAX_NODES && aliases > 0),
            "{error}"
        );
    }

    #[test]
    fn aliases_used_as_meant_and_large_documents_within_bounds_pass() {
        let text = "base: &base {image: x, net: host}\na: *base\nb: *base\n";
        let size = scan(text).unwrap();
        // The root, three keys, base (a mapping and four scalars), two copies.
        assert_eq!((size.nodes, size.aliases), (1 + 3 + 5 + 2 * 5, 2));
        let keys: String = (0..100_000).map(|i| format!("u{i}: 0\n")).collect();
        assert!(keys.len() < MAX_DOCUMENT);
        assert_eq!(scan(&keys).unwrap().nodes, 200_001);
        let too_long = "#".repeat(MAX_DOCUMENT + 1);
        assert_eq!(
            scan(&too_long).unwrap_err(),
            YamlLimit::TooLong {
                size: MAX_DOCUMENT + 1,
                limit: MAX_DOCUMENT
            }
        );
    }

    #[test]
    fn a_file_past_the_bound_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cloud-config.yml");
        std::fs::write(&path, "hostname: a\n").unwrap();
        assert_eq!(read_document(&path).unwrap(), "hostname: a\n");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(100 << 20)
            .unwrap();
        let error = read_document(&path).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(
            error.to_string(),
            format!("larger than {MAX_DOCUMENT} bytes, the most a configuration file may be")
        );
    }

    #[test]
    fn text_that_is_not_yaml_is_left_to_the_reader() {
        // Measured up to the fault: the mapping, its key, the list and
        // the list's one item.
        assert_eq!(scan("a: [unclosed").unwrap().nodes, 4);
        assert_eq!(scan("a: *nowhere").unwrap().aliases, 1);
        assert_eq!(lines("a: [unclosed\nb: 1", &["a"]), [Some(1)]);
    }
}
