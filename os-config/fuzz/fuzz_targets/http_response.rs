//! HTTP responses from the metadata service or a user-data URL: whatever
//! a server sends, parsing never panics and never yields more than the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use os_config::datasource::http::{MAX_BODY, parse_response};

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = parse_response(data) {
        assert!((100..600).contains(&response.status));
        assert!(response.body.len() <= MAX_BODY.min(data.len()));
    }
});
