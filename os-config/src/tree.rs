//! Editing untyped configuration trees: read and write at a key path, and
//! the layer merge (maps merge deeply, scalars and lists replace).

use serde_norway::{Mapping, Value};

use crate::parse::keypath::{KeyPath, Segment};

/// A key path that cannot be followed in a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A key was used where the tree holds a list or a scalar.
    #[error("`{path}` is not a map, so it has no key `{key}`")]
    NotAMap {
        /// Where the non-map sits.
        path: KeyPath,
        /// The key that was asked for.
        key: String,
    },
    /// An index was used where the tree holds a map or a scalar.
    #[error("`{path}` is not a list, so it has no index [{index}]")]
    NotAList {
        /// Where the non-list sits.
        path: KeyPath,
        /// The index that was asked for.
        index: usize,
    },
    /// An index past the end (one past the end appends).
    #[error("`{path}` has {len} entries; index [{index}] is past the end")]
    IndexOutOfRange {
        /// The list.
        path: KeyPath,
        /// Its length.
        len: usize,
        /// The index that was asked for.
        index: usize,
    },
}

/// The value at `path`, if there is one.
pub fn get<'a>(root: &'a Value, path: &KeyPath) -> Option<&'a Value> {
    let mut node = root;
    for segment in path.segments() {
        node = match (segment, node) {
            (Segment::Key(key), Value::Mapping(map)) => map.get(key.as_str())?,
            (Segment::Index(index), Value::Sequence(list)) => list.get(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Sets `path` to `value`, creating maps on the way. A null on the way is
/// treated as an empty map or list; index `len` appends to a list.
pub fn set(root: &mut Value, path: &KeyPath, value: Value) -> Result<(), TreeError> {
    let mut node = root;
    let mut walked = KeyPath::root();
    for segment in path.segments() {
        node = match segment {
            Segment::Key(key) => {
                if node.is_null() {
                    *node = Value::Mapping(Mapping::new());
                }
                let Value::Mapping(map) = node else {
                    return Err(TreeError::NotAMap {
                        path: walked,
                        key: key.clone(),
                    });
                };
                walked = walked.key(key.clone());
                map.entry(Value::String(key.clone())).or_insert(Value::Null)
            }
            Segment::Index(index) => {
                if node.is_null() {
                    *node = Value::Sequence(Vec::new());
                }
                let Value::Sequence(list) = node else {
                    return Err(TreeError::NotAList {
                        path: walked,
                        index: *index,
                    });
                };
                if *index > list.len() {
                    return Err(TreeError::IndexOutOfRange {
                        path: walked,
                        len: list.len(),
                        index: *index,
                    });
                }
                if *index == list.len() {
                    list.push(Value::Null);
                }
                walked = walked.index(*index);
                &mut list[*index]
            }
        };
    }
    *node = value;
    Ok(())
}

/// Removes the deepest part of `path` that is in the tree (at least its
/// first segment): the key or list entry at `path`, or the section holding
/// a key that is missing. Map keys compare by their scalar text, so
/// `1:` and `true:` are found as `"1"` and `"true"`. Returns the path
/// removed, `None` when not even the first segment is there.
pub fn remove(root: &mut Value, path: &KeyPath) -> Option<KeyPath> {
    let segments = path.segments();
    let mut depth = segments.len();
    while depth > 0 {
        let prefix = KeyPath::from_segments(segments[..depth].to_vec());
        if remove_exact(root, prefix.segments()) {
            return Some(prefix);
        }
        depth -= 1;
    }
    None
}

/// Removes the key at each of `paths` in one walk of the tree, keeping
/// the order of what stays: a document with 10^5 unknown keys loses them
/// in linear time, where [`remove`] one by one is quadratic. A path that
/// ends in a list index is removed by [`remove`].
pub fn remove_keys(root: &mut Value, paths: &[KeyPath]) {
    #[derive(Default)]
    struct Trie {
        remove: bool,
        children: std::collections::HashMap<Segment, Trie>,
    }
    fn walk(node: &mut Value, trie: &Trie) {
        let node = match node {
            Value::Tagged(tagged) => &mut tagged.value,
            other => other,
        };
        match node {
            Value::Mapping(map) => map.retain(|key, child| {
                let Some(below) = key_text(key).and_then(|k| trie.children.get(&Segment::Key(k)))
                else {
                    return true;
                };
                if below.remove {
                    return false;
                }
                walk(child, below);
                true
            }),
            Value::Sequence(list) => {
                for (index, entry) in list.iter_mut().enumerate() {
                    if let Some(below) = trie.children.get(&Segment::Index(index)) {
                        walk(entry, below);
                    }
                }
            }
            _ => {}
        }
    }
    let mut trie = Trie::default();
    for path in paths {
        if !matches!(path.segments().last(), Some(Segment::Key(_))) {
            remove(root, path);
            continue;
        }
        let mut node = &mut trie;
        for segment in path.segments() {
            node = node.children.entry(segment.clone()).or_default();
        }
        node.remove = true;
    }
    walk(root, &trie);
}

fn remove_exact(node: &mut Value, segments: &[Segment]) -> bool {
    let node = match node {
        Value::Tagged(tagged) => &mut tagged.value,
        other => other,
    };
    let Some((first, rest)) = segments.split_first() else {
        return false;
    };
    match (first, node) {
        (Segment::Key(key), Value::Mapping(map)) => {
            let Some(found) = map
                .keys()
                .find(|k| key_text(k).as_deref() == Some(key))
                .cloned()
            else {
                return false;
            };
            if rest.is_empty() {
                map.remove(&found).is_some()
            } else {
                map.get_mut(&found)
                    .is_some_and(|child| remove_exact(child, rest))
            }
        }
        (Segment::Index(index), Value::Sequence(list)) if *index < list.len() => {
            if rest.is_empty() {
                list.remove(*index);
                true
            } else {
                remove_exact(&mut list[*index], rest)
            }
        }
        _ => false,
    }
}

fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(text) => Some(text.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some("null".to_owned()),
        _ => None,
    }
}

/// Lays `overlay` over `base`: maps merge key by key, all else replaces.
/// A null in the overlay changes nothing, so an empty `rancher:` in a
/// higher layer does not wipe the defaults beneath it.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (_, Value::Null) => {}
        (Value::Mapping(base_map), Value::Mapping(overlay_map)) => {
            for (key, value) in overlay_map {
                match base_map.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base_map.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    fn path(text: &str) -> KeyPath {
        KeyPath::parse(text).unwrap()
    }

    #[test]
    fn gets_through_maps_and_lists() {
        let tree = yaml("a: {b: [x, {c: 3}]}\n\"d.e\": 1");
        assert_eq!(get(&tree, &path("a.b[1].c")), Some(&yaml("3")));
        assert_eq!(get(&tree, &path("\"d.e\"")), Some(&yaml("1")));
        assert_eq!(get(&tree, &path("a.b[2]")), None);
        assert_eq!(get(&tree, &path("a.b.c")), None);
        assert_eq!(get(&tree, &path("a.b[0].c")), None);
    }

    #[test]
    fn remove_takes_the_deepest_part_that_is_there() {
        let mut tree = yaml("a: {b: [x, {c: 3}], 1: y}\nd: 1");
        assert_eq!(remove(&mut tree, &path("a.b[1].c")), Some(path("a.b[1].c")));
        assert_eq!(remove(&mut tree, &path("a.b[0]")), Some(path("a.b[0]")));
        assert_eq!(remove(&mut tree, &path("a.\"1\"")), Some(path("a.\"1\"")));
        assert_eq!(remove(&mut tree, &path("d.missing")), Some(path("d")));
        assert_eq!(remove(&mut tree, &path("zz.y")), None);
        assert_eq!(tree, yaml("a: {b: [{}]}"));
    }

    #[test]
    fn set_creates_maps_and_appends_to_lists() {
        let mut tree = yaml("a: {list: [1]}");
        set(&mut tree, &path("a.b.c"), yaml("v")).unwrap();
        set(&mut tree, &path("a.list[1]"), yaml("2")).unwrap();
        set(&mut tree, &path("a.list[0]"), yaml("0")).unwrap();
        set(&mut tree, &path("new[0].k"), yaml("x")).unwrap();
        assert_eq!(tree, yaml("a: {list: [0, 2], b: {c: v}}\nnew: [{k: x}]"));
    }

    #[test]
    fn set_refuses_paths_through_the_wrong_kind() {
        let mut tree = yaml("a: 1\nl: [1]\nm: {}");
        assert_eq!(
            set(&mut tree, &path("a.b"), yaml("x")),
            Err(TreeError::NotAMap {
                path: path("a"),
                key: "b".into()
            })
        );
        assert_eq!(
            set(&mut tree, &path("m[0]"), yaml("x")),
            Err(TreeError::NotAList {
                path: path("m"),
                index: 0
            })
        );
        assert_eq!(
            set(&mut tree, &path("l[5]"), yaml("x")),
            Err(TreeError::IndexOutOfRange {
                path: path("l"),
                len: 1,
                index: 5
            })
        );
    }

    #[test]
    fn merge_is_deep_for_maps_and_replaces_the_rest() {
        let mut base = yaml("a: {b: 1, c: [1, 2]}\nd: x\nkeep: {k: v}");
        merge(
            &mut base,
            yaml("a: {c: [3], e: {f: 1}}\nd: [y]\nkeep: ~\nnew: 1"),
        );
        assert_eq!(
            base,
            yaml("a: {b: 1, c: [3], e: {f: 1}}\nd: [y]\nkeep: {k: v}\nnew: 1")
        );
    }
}
