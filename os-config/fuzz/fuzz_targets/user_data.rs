//! User-data as a datasource delivers it: classification (gzip, `#!`
//! script, `#cloud-config`), the bounds on the YAML and the check never
//! panic, whatever the bytes; what applies is always a mapping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use os_config::userdata::{Metadata, Payload, UserData};

fuzz_target!(|data: &[u8]| {
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
});
