//! A service's `command:`/`entrypoint:` given as one string, split into
//! words as sh would: never panics, and there are never more words than
//! characters, nor a word holding more than the text did.
#![no_main]

use libfuzzer_sys::fuzz_target;
use system_services::definition::shell_words;

fuzz_target!(|text: &str| {
    if let Ok(words) = shell_words(text) {
        assert!(words.len() <= text.len());
        assert!(words.iter().map(String::len).sum::<usize>() <= text.len());
    }
});
