//! Values from `ros config set` and the kernel cmdline: parse, and what
//! parses serialises to YAML that reads back as the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use os_config::parse::value::parse_value;

fuzz_target!(|data: &str| {
    if let Ok(value) = parse_value(data) {
        let yaml = serde_norway::to_string(&value).expect("a parsed value serialises");
        let back: serde_norway::Value = serde_norway::from_str(&yaml).expect("serialised YAML parses");
        assert_eq!(back, value, "{yaml}");
    }
});
