//! Filesystem labels (and ext UUIDs) read from the first bytes of any
//! block device at boot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use os_config::datasource::label::{ext_uuid, filesystem_label};

fuzz_target!(|data: &[u8]| {
    // Short inputs probe vfat; padding them to the ISO 9660 descriptor
    // lets the fuzzer reach that parser too.
    let _ = filesystem_label(data);
    let _ = ext_uuid(data);
    let mut padded = vec![0u8; 16 * 2048];
    padded.extend_from_slice(data);
    let _ = filesystem_label(&padded);
});
