//! Whole cloud-config documents: checking never panics, and a document
//! that checks exports to YAML that checks to the same configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use os_config::check_document;
use os_config::export::export;

fuzz_target!(|data: &str| {
    if let Ok(checked) = check_document(data) {
        let exported = export(checked.value.clone(), true).expect("a checked tree serialises");
        let again = check_document(&exported).expect("exported YAML checks");
        assert_eq!(again.config, checked.config, "{exported}");
    }
});
