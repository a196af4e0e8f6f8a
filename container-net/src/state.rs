//! The state directory: which container holds which address and which
//! published host port. One file per address (`addresses/172.18.0.2`) and
//! per port (`ports/tcp-8080`), each created with `O_EXCL` and holding the
//! container id, so two hooks running at once can never take the same
//! one: the kernel decides who created the file. Other processes (the
//! CLI) read the same files.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::settings::{Proto, Subnet};

const ADDRESSES: &str = "addresses";
const PORTS: &str = "ports";

fn port_file(state_dir: &Path, proto: Proto, port: u16) -> PathBuf {
    state_dir.join(PORTS).join(format!("{proto}-{port}"))
}

/// Who a claim file names; `None` when the file is absent.
fn holder(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|id| id.trim().to_string())
}

/// The outcome of claiming a file for a container.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Created now.
    New,
    /// The container held it already (an `up` after a crash).
    Ours,
    /// Another container holds it.
    Theirs(String),
}

/// Creates `path` holding `id`, unless it exists.
fn claim(path: &Path, id: &str) -> io::Result<Claim> {
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut file) => {
            file.write_all(id.as_bytes())?;
            Ok(Claim::New)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match holder(path) {
            Some(owner) if owner == id => Ok(Claim::Ours),
            Some(owner) => Ok(Claim::Theirs(owner)),
            // Removed between our attempt and our read: try once more.
            None => claim(path, id),
        },
        Err(e) => Err(e),
    }
}

/// The files in `dir` naming `id`, with their names.
fn held_by(dir: &Path, id: &str) -> io::Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut held = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if holder(&path).as_deref() == Some(id) {
            held.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    Ok(held)
}

/// The address container `id` holds, as recorded in `state_dir`.
pub fn address_of(state_dir: &Path, id: &str) -> Option<Ipv4Addr> {
    held_by(&state_dir.join(ADDRESSES), id)
        .ok()?
        .iter()
        .find_map(|(name, _)| name.parse().ok())
}

/// The container that published host port `port`/`proto`, if any.
pub fn port_owner(state_dir: &Path, proto: Proto, port: u16) -> Option<String> {
    holder(&port_file(state_dir, proto, port)).filter(|id| !id.is_empty())
}

/// The lowest free address of `subnet` for `id`, or the one `id` holds
/// already; `None` when the subnet is full.
pub(crate) fn allocate_address(
    state_dir: &Path,
    subnet: Subnet,
    id: &str,
) -> io::Result<Option<Ipv4Addr>> {
    let dir = state_dir.join(ADDRESSES);
    fs::create_dir_all(&dir)?;
    for (name, path) in held_by(&dir, id)? {
        match name.parse() {
            Ok(addr) if subnet.contains(addr) => return Ok(Some(addr)),
            // From another subnet (the annotations changed): give it back.
            _ => remove_if_absent_ok(&path)?,
        }
    }
    // Skip known holders without a syscall each; a /16 has 65533 hosts.
    let taken: std::collections::HashSet<String> = fs::read_dir(&dir)?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    for addr in subnet.hosts() {
        if taken.contains(&addr.to_string()) {
            continue;
        }
        match claim(&dir.join(addr.to_string()), id)? {
            Claim::New | Claim::Ours => return Ok(Some(addr)),
            // Taken since we listed the directory.
            Claim::Theirs(_) => {}
        }
    }
    Ok(None)
}

/// Records that `id` publishes `port`/`proto`.
pub(crate) fn claim_port(state_dir: &Path, proto: Proto, port: u16, id: &str) -> io::Result<Claim> {
    let path = port_file(state_dir, proto, port);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    claim(&path, id)
}

fn remove_if_absent_ok(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Gives back every address and port `id` holds.
pub(crate) fn release(state_dir: &Path, id: &str) -> io::Result<()> {
    for dir in [PORTS, ADDRESSES] {
        for (_, path) in held_by(&state_dir.join(dir), id)? {
            remove_if_absent_ok(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_the_lowest_free_and_stay_with_their_container() {
        let dir = tempfile::tempdir().unwrap();
        let net = subnet("172.18.0.1/16");
        let a = allocate_address(dir.path(), net, "a").unwrap().unwrap();
        let b = allocate_address(dir.path(), net, "b").unwrap().unwrap();
        assert_eq!(a, Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(b, Ipv4Addr::new(172, 18, 0, 3));
        // Asking again (an `up` after a crash) gives the same address.
        assert_eq!(allocate_address(dir.path(), net, "a").unwrap(), Some(a));
        assert_eq!(address_of(dir.path(), "a"), Some(a));
        assert_eq!(
            fs::read_to_string(dir.path().join("addresses/172.18.0.3")).unwrap(),
            "b"
        );
        // A released address is the lowest free one again.
        release(dir.path(), "a").unwrap();
        assert_eq!(address_of(dir.path(), "a"), None);
        assert_eq!(allocate_address(dir.path(), net, "c").unwrap(), Some(a));
        release(dir.path(), "a").unwrap();
        assert_eq!(address_of(dir.path(), "c"), Some(a));
    }

    #[test]
    fn the_gateway_is_never_given_and_a_full_subnet_says_so() {
        let dir = tempfile::tempdir().unwrap();
        // 10.1.1.0/30: hosts .1 and .2, the gateway is .2.
        let net = subnet("10.1.1.2/30");
        assert_eq!(
            allocate_address(dir.path(), net, "a").unwrap(),
            Some(Ipv4Addr::new(10, 1, 1, 1))
        );
        assert_eq!(allocate_address(dir.path(), net, "b").unwrap(), None);
    }

    #[test]
    fn an_address_from_another_subnet_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        allocate_address(dir.path(), subnet("10.1.1.1/24"), "a").unwrap();
        let addr = allocate_address(dir.path(), subnet("10.2.2.1/24"), "a").unwrap();
        assert_eq!(addr, Some(Ipv4Addr::new(10, 2, 2, 2)));
        assert!(!dir.path().join("addresses/10.1.1.2").exists());
    }

    #[test]
    fn concurrent_allocations_give_distinct_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let net = subnet("172.18.0.1/16");
        let addresses: Vec<Ipv4Addr> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..16)
                .map(|n| {
                    let path = dir.path();
                    scope.spawn(move || {
                        allocate_address(path, net, &format!("c{n}"))
                            .unwrap()
                            .unwrap()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut sorted = addresses.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 16, "{addresses:?}");
        // Together they fill .2 to .17: nothing was skipped.
        assert_eq!(sorted[0], Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(sorted[15], Ipv4Addr::new(172, 18, 0, 17));
        for (n, addr) in addresses.iter().enumerate() {
            assert_eq!(address_of(dir.path(), &format!("c{n}")), Some(*addr));
        }
    }

    #[test]
    fn a_port_has_one_owner_until_released() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(port_owner(dir.path(), Proto::Tcp, 8080), None);
        assert_eq!(
            claim_port(dir.path(), Proto::Tcp, 8080, "web").unwrap(),
            Claim::New
        );
        assert_eq!(
            claim_port(dir.path(), Proto::Tcp, 8080, "web").unwrap(),
            Claim::Ours
        );
        assert_eq!(
            claim_port(dir.path(), Proto::Tcp, 8080, "other").unwrap(),
            Claim::Theirs("web".into())
        );
        // udp/8080 is another port.
        assert_eq!(
            claim_port(dir.path(), Proto::Udp, 8080, "other").unwrap(),
            Claim::New
        );
        assert_eq!(
            port_owner(dir.path(), Proto::Tcp, 8080).as_deref(),
            Some("web")
        );
        assert!(dir.path().join("ports/tcp-8080").is_file());
        // Releasing for a container that holds nothing does nothing.
        release(dir.path(), "nobody").unwrap();
        assert_eq!(
            port_owner(dir.path(), Proto::Tcp, 8080).as_deref(),
            Some("web")
        );
        release(dir.path(), "web").unwrap();
        assert_eq!(port_owner(dir.path(), Proto::Tcp, 8080), None);
        assert_eq!(
            port_owner(dir.path(), Proto::Udp, 8080).as_deref(),
            Some("other")
        );
        // Releasing twice, or with nothing ever held, is fine.
        release(dir.path(), "web").unwrap();
        release(tempfile::tempdir().unwrap().path(), "web").unwrap();
    }
}
