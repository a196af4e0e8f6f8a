//! Names a DHCP server hands out (search domains of options 119 and 15,
//! the host name of option 12) go into `resolv.conf`, `/etc/hosts` and
//! the kernel's host name only when these types accept them: whatever the
//! string, an accepted one has no blank, no control character (a newline
//! would add a line of the server's choosing) and labels of at most 63.
#![no_main]

use libfuzzer_sys::fuzz_target;
use os_config::schema::{DomainName, Hostname};

fn plain(name: &str) {
    assert!(!name.chars().any(|c| c.is_whitespace() || c.is_control()));
    assert!(name.split('.').all(|label| label.len() <= 63));
}

fuzz_target!(|text: &str| {
    if let Ok(domain) = DomainName::try_from(text.to_owned()) {
        plain(domain.as_str());
    }
    if let Ok(host) = Hostname::try_from(text.to_owned()) {
        plain(host.as_str());
    }
});
