//! The kernel command line: any bytes PID 1 may read from /proc/cmdline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use os_config::parse::cmdline::{config_from_cmdline, parse_cmdline};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let params = parse_cmdline(&text);
    let layer = config_from_cmdline(&text);
    // Every rancher.* parameter either became config or a reported problem.
    let relevant = params
        .iter()
        .filter(|p| p.key.starts_with("rancher.") || p.key.starts_with("cc."))
        .count();
    assert!(layer.problems.len() <= relevant);
    // Whatever the layer holds must be a mapping the checker can judge.
    let _ = os_config::check_value(layer.value);
});
