//! Every committed fuzz corpus of this crate (`fuzz/corpus/<target>/`),
//! replayed on stable by `cargo test` through the same calls and checks
//! as its target in `fuzz/fuzz_targets/`: keep each row's body the same
//! as its target's. A target or corpus without a row fails the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use system_services::control::Request;
use system_services::definition::shell_words;
use system_services::image::ImageRef;

type Replay = (&'static str, fn(&[u8]));

const REPLAYS: &[Replay] = &[
    ("control_request", control_request),
    ("image_reference", |data| text(data, image_reference)),
    ("shell_words", |data| text(data, words)),
];

/// libFuzzer's `|text: &str|` targets see only the inputs that are UTF-8.
fn text(data: &[u8], target: fn(&str)) {
    if let Ok(text) = std::str::from_utf8(data) {
        target(text);
    }
}

fn control_request(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<Request>(data) {
        let text = serde_json::to_string(&request).expect("a request encodes");
        let again: Request = serde_json::from_str(&text).expect("an encoded request decodes");
        assert_eq!(again, request, "{text}");
    }
}

fn image_reference(text: &str) {
    if let Ok(reference) = ImageRef::parse(text) {
        let shown = reference.to_string();
        assert_eq!(ImageRef::parse(&shown).as_ref(), Ok(&reference), "{shown}");
    }
}

fn words(text: &str) {
    if let Ok(words) = shell_words(text) {
        assert!(words.len() <= text.len());
        assert!(words.iter().map(String::len).sum::<usize>() <= text.len());
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

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
    assert_eq!(targets, corpora, "every target has a corpus and no more");
    assert_eq!(
        replays,
        targets,
        "REPLAYS in {} and the fuzz targets",
        file!()
    );
}

#[test]
fn every_committed_corpus_input_replays_through_its_target() {
    let mut replayed = 0;
    for (target, replay) in REPLAYS {
        let dir = fuzz_dir().join("corpus").join(target);
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{} is empty", dir.display());
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| replay(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {target} fails on {}",
                input.display()
            );
            replayed += 1;
        }
    }
    assert!(replayed >= 11, "only {replayed} inputs replayed");
}
