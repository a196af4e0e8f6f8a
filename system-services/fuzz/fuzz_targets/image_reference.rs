//! Image references from configuration (`image:` of a service, the
//! cluster agent's image, `ros pull`): parsing never panics, and the
//! normalised form of a reference parses to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use system_services::image::ImageRef;

fuzz_target!(|text: &str| {
    if let Ok(reference) = ImageRef::parse(text) {
        let shown = reference.to_string();
        assert_eq!(ImageRef::parse(&shown).as_ref(), Ok(&reference), "{shown}");
    }
});
