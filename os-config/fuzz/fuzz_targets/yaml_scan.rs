//! The bounds on untrusted YAML: the scan never panics, and the nodes it
//! counts (aliases expanded, without expanding them) are never fewer than
//! the tree serde_norway reads from the same text, so a document the scan
//! lets through cannot expand past the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use os_config::KeyPath;
use os_config::parse::yaml::{lines_of, scan};
use serde_norway::Value;

fn nodes(value: &Value) -> usize {
    match value {
        Value::Sequence(list) => 1 + list.iter().map(nodes).sum::<usize>(),
        Value::Mapping(map) => 1 + map.iter().map(|(k, v)| nodes(k) + nodes(v)).sum::<usize>(),
        Value::Tagged(tagged) => nodes(&tagged.value),
        _ => 1,
    }
}

fuzz_target!(|text: &str| {
    let Ok(size) = scan(text) else {
        return;
    };
    if let Ok(value) = serde_norway::from_str::<Value>(text) {
        assert!(nodes(&value) <= size.nodes.max(1), "{size:?}");
    }
    let paths = [KeyPath::root().key("a"), KeyPath::root().key("a").index(0)];
    for line in lines_of(text, &paths).values() {
        assert!(*line >= 1 && *line <= text.lines().count().max(1));
    }
});
