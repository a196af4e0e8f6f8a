//! Every committed fuzz corpus, replayed on stable by `cargo test`.
//!
//! The fuzz targets (`fuzz/fuzz_targets/<target>.rs`) need nightly and
//! cargo-fuzz; CI runs them for a bounded time only when those are
//! present. This test runs every input under `fuzz/corpus/<target>/`
//! through the same calls and checks as its target, so a parser change
//! that breaks a case the fuzzer once found fails here, on any toolchain.
//!
//! Targets are found by directory: a new target (or a corpus without a
//! target) fails the test until [`REPLAYS`] has a row for it. Each row's
//! function is its target's body: keep the two the same.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use os_config::datasource::http::{MAX_BODY, parse_response};
use os_config::datasource::label::{ext_uuid, filesystem_label};
use os_config::export::export;
use os_config::parse::cmdline::{config_from_cmdline, parse_cmdline};
use os_config::parse::value::parse_value;
use os_config::{KeyPath, check_document};

/// One row per fuzz target: its name (the file stem under
/// `fuzz_targets/`, the directory under `corpus/`) and its body.
type Replay = (&'static str, fn(&[u8]));

const REPLAYS: &[Replay] = &[
    ("cloud_config", |data| text(data, cloud_config)),
    ("cmdline", cmdline),
    ("fs_label", fs_label),
    ("http_response", http_response),
    ("keypath", |data| text(data, keypath)),
    ("lease_names", |data| text(data, lease_names)),
    ("user_data", user_data),
    ("value", |data| text(data, value)),
    ("yaml_scan", |data| text(data, yaml_scan)),
];

/// libFuzzer's `|data: &str|` targets see only the inputs that are UTF-8.
fn text(data: &[u8], target: fn(&str)) {
    if let Ok(text) = std::str::from_utf8(data) {
        target(text);
    }
}

fn cloud_config(data: &str) {
    if let Ok(checked) = check_document(data) {
        let exported = export(checked.value.clone(), true).expect("a checked tree serialises");
        let again = check_document(&exported).expect("exported YAML checks");
        assert_eq!(again.config, checked.config, "{exported}");
    }
}

fn cmdline(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let params = parse_cmdline(&text);
    let layer = config_from_cmdline(&text);
    let relevant = params
        .iter()
        .filter(|p| p.key.starts_with("rancher.") || p.key.starts_with("cc."))
        .count();
    assert!(layer.problems.len() <= relevant);
    let _ = os_config::check_value(layer.value);
}

fn fs_label(data: &[u8]) {
    let _ = filesystem_label(data);
    let _ = ext_uuid(data);
    let mut padded = vec![0u8; 16 * 2048];
    padded.extend_from_slice(data);
    let _ = filesystem_label(&padded);
}

fn http_response(data: &[u8]) {
    if let Ok(response) = parse_response(data) {
        assert!((100..600).contains(&response.status));
        assert!(response.body.len() <= MAX_BODY.min(data.len()));
    }
}

fn keypath(data: &str) {
    if let Ok(path) = KeyPath::parse(data) {
        let shown = path.to_string();
        assert_eq!(KeyPath::parse(&shown).as_ref(), Ok(&path), "{shown}");
    }
}

fn value(data: &str) {
    if let Ok(value) = parse_value(data) {
        let yaml = serde_norway::to_string(&value).expect("a parsed value serialises");
        let back: serde_norway::Value =
            serde_norway::from_str(&yaml).expect("serialised YAML parses");
        assert_eq!(back, value, "{yaml}");
    }
}

fn user_data(data: &[u8]) {
    use os_config::userdata::{Metadata, Payload, UserData};
    let Ok(payload) = Payload::from_bytes(data) else {
        return;
    };
    let user_data = UserData {
        payload,
        metadata: Metadata::default(),
    };
    if let Ok(config) = user_data.to_user_config() {
        assert!(config.value.is_mapping());
    }
}

fn yaml_nodes(value: &serde_norway::Value) -> usize {
    use serde_norway::Value;
    match value {
        Value::Sequence(list) => 1 + list.iter().map(yaml_nodes).sum::<usize>(),
        Value::Mapping(map) => {
            1 + map
                .iter()
                .map(|(k, v)| yaml_nodes(k) + yaml_nodes(v))
                .sum::<usize>()
        }
        Value::Tagged(tagged) => yaml_nodes(&tagged.value),
        _ => 1,
    }
}

fn yaml_scan(text: &str) {
    use os_config::parse::yaml::{lines_of, scan};
    let Ok(size) = scan(text) else {
        return;
    };
    if let Ok(value) = serde_norway::from_str::<serde_norway::Value>(text) {
        assert!(yaml_nodes(&value) <= size.nodes.max(1), "{size:?}");
    }
    let paths = [KeyPath::root().key("a"), KeyPath::root().key("a").index(0)];
    for line in lines_of(text, &paths).values() {
        assert!(*line >= 1 && *line <= text.lines().count().max(1));
    }
}

fn lease_names(text: &str) {
    use os_config::schema::{DomainName, Hostname};
    let plain = |name: &str| {
        assert!(!name.chars().any(|c| c.is_whitespace() || c.is_control()));
        assert!(name.split('.').all(|label| label.len() <= 63));
    };
    if let Ok(domain) = DomainName::try_from(text.to_owned()) {
        plain(domain.as_str());
    }
    if let Ok(host) = Hostname::try_from(text.to_owned()) {
        plain(host.as_str());
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The names under `dir`: file stems of `.rs` files, or directory names.
fn names(dir: &Path, directories: bool) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            if directories {
                path.is_dir()
            } else {
                path.extension().is_some_and(|e| e == "rs")
            }
        })
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_fuzz_target_and_corpus_has_a_replay() {
    let replays: BTreeSet<String> = REPLAYS.iter().map(|(name, _)| (*name).to_owned()).collect();
    let targets = names(&fuzz_dir().join("fuzz_targets"), false);
    let corpora = names(&fuzz_dir().join("corpus"), true);
    let no_replay: Vec<_> = targets
        .union(&corpora)
        .filter(|n| !replays.contains(*n))
        .collect();
    assert!(
        no_replay.is_empty(),
        "fuzz targets or corpora with no row in REPLAYS ({}): {no_replay:?}",
        file!()
    );
    let stale: Vec<_> = replays.difference(&targets).collect();
    assert!(
        stale.is_empty(),
        "REPLAYS rows with no fuzz target: {stale:?}"
    );
    let no_corpus: Vec<_> = targets.difference(&corpora).collect();
    assert!(
        no_corpus.is_empty(),
        "fuzz targets with no committed corpus: {no_corpus:?}"
    );
}

#[test]
fn every_committed_corpus_input_replays_through_its_target() {
    let mut replayed = 0;
    for (target, replay) in REPLAYS {
        let dir = fuzz_dir().join("corpus").join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // reported by the test above
        };
        let mut inputs: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{} is empty", dir.display());
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            // Name the input that fails: the panic itself may not.
            let outcome = std::panic::catch_unwind(|| replay(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {target} fails on {}",
                input.display()
            );
            replayed += 1;
        }
    }
    assert!(replayed >= REPLAYS.len(), "only {replayed} inputs replayed");
}
