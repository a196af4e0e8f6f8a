//! Key paths from `ros config get/set`: parse, and what parses displays
//! back to the same path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use os_config::KeyPath;

fuzz_target!(|data: &str| {
    if let Ok(path) = KeyPath::parse(data) {
        let shown = path.to_string();
        assert_eq!(KeyPath::parse(&shown).as_ref(), Ok(&path), "{shown}");
    }
});
