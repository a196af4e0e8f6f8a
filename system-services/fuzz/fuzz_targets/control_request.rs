//! Requests on PID 1's control socket (`/run/ros/control.sock`, one JSON
//! line each): whatever a client writes, decoding never panics, and a
//! request that decodes encodes back to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use system_services::control::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<Request>(data) {
        let text = serde_json::to_string(&request).expect("a request encodes");
        let again: Request = serde_json::from_str(&text).expect("an encoded request decodes");
        assert_eq!(again, request, "{text}");
    }
});
