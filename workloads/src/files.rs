//! The files a container gets at `/etc/resolv.conf`, `/etc/hosts` and
//! `/etc/hostname`, written under `RUN_DIR/<name>/` and bound in (as
//! Docker does), so the image's own are left alone.

use std::io;
use std::path::{Path, PathBuf};

use crate::flags::NetMode;

/// Name servers used when the host's are all on loopback, which a
/// container with its own network cannot reach (Docker's fallback).
const FALLBACK_NAMESERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// The host's resolver configuration for a container: in its own
/// network namespace, `nameserver` lines on 127.0.0.0/8 (and `::1`)
/// point at itself, so they are dropped; when none is left, public
/// ones are added. With the host's network it is kept as it is.
pub fn resolv_conf(host: &str, net: NetMode) -> String {
    if net == NetMode::Host {
        return host.to_string();
    }
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let address = words.next().unwrap_or_default();
            if address.starts_with("127.") || address == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        for server in FALLBACK_NAMESERVERS {
            out.push_str(&format!("nameserver {server}\n"));
        }
    }
    out
}

/// `localhost`, and the container's host name and name on a loopback
/// address of its own (its bridge address is the hooks' to know).
pub fn hosts(hostname: &str, name: &str) -> String {
    let names = if hostname == name {
        hostname.to_string()
    } else {
        format!("{hostname} {name}")
    };
    format!(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         127.0.1.1\t{names}\n"
    )
}

/// The three files of one container, by where they are on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFiles {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    pub hostname: PathBuf,
}

impl RuntimeFiles {
    pub fn under(dir: &Path) -> Self {
        Self {
            resolv_conf: dir.join("resolv.conf"),
            hosts: dir.join("hosts"),
            hostname: dir.join("hostname"),
        }
    }

    /// Where each goes in the container.
    pub fn binds(&self) -> [(&Path, &'static str); 3] {
        [
            (&self.resolv_conf, "/etc/resolv.conf"),
            (&self.hosts, "/etc/hosts"),
            (&self.hostname, "/etc/hostname"),
        ]
    }

    /// Writes them (again: the run directory is gone after a reboot).
    pub fn write(
        &self,
        host_resolv_conf: &Path,
        net: NetMode,
        hostname: &str,
        name: &str,
    ) -> io::Result<()> {
        if let Some(dir) = self.resolv_conf.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A host without /etc/resolv.conf still gets containers that
        // resolve names.
        let host = std::fs::read_to_string(host_resolv_conf).unwrap_or_default();
        std::fs::write(&self.resolv_conf, resolv_conf(&host, net))?;
        std::fs::write(&self.hosts, hosts(hostname, name))?;
        std::fs::write(&self.hostname, format!("{hostname}\n"))?;
        Ok(())
    }
}

/// The directories an image's root file system is made of, top first,
/// from its snapshot's mounts (an overlay's upper and lower directories,
/// or a bound directory).
pub fn layer_dirs(mounts: &[system_services::root::RootfsMount]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for mount in mounts {
        if mount.typ == "bind" {
            dirs.push(PathBuf::from(&mount.source));
            continue;
        }
        let option = |key: &str| {
            mount
                .options
                .iter()
                .find_map(|o| o.strip_prefix(key))
                .map(str::to_string)
        };
        if let Some(upper) = option("upperdir=") {
            dirs.push(PathBuf::from(upper));
        }
        if let Some(lower) = option("lowerdir=") {
            dirs.extend(lower.split(':').map(PathBuf::from));
        }
    }
    dirs
}

/// The first of `layers` (top first) holding `file`, read.
fn read_in_layers(layers: &[PathBuf], file: &str) -> Option<String> {
    layers
        .iter()
        .find_map(|dir| std::fs::read_to_string(dir.join(file)).ok())
}

/// The id of `name` in an `/etc/passwd` or `/etc/group` text, and (for
/// passwd) the primary group.
fn lookup(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) {
            return None;
        }
        let id = fields.get(2)?.parse().ok()?;
        let group = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
        Some((id, group))
    })
}

/// An image's `User` (`name`, `name:group`, `uid:group`...) as numbers,
/// from the image's own `/etc/passwd` and `/etc/group`.
pub fn resolve_user(text: &str, layers: &[PathBuf]) -> Option<system_services::service::User> {
    let (user, group) = match text.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (text, None),
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => (uid, 0),
        Err(_) => lookup(&read_in_layers(layers, "etc/passwd")?, user)?,
    };
    let gid = match group {
        None => primary,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(&read_in_layers(layers, "etc/group")?, group)?.0,
        },
    };
    Some(system_services::service::User { uid, gid })
}

/// The host's own name, for containers that share its UTS namespace.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|n| n.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# from DHCP\nsearch lab\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\noptions edns0\n";

    #[test]
    fn loopback_name_servers_are_dropped_in_a_network_of_its_own() {
        assert_eq!(
            resolv_conf(HOST, NetMode::Bridge),
            "# from DHCP\nsearch lab\nnameserver 10.0.0.2\noptions edns0\n"
        );
        assert_eq!(resolv_conf(HOST, NetMode::Host), HOST);
    }

    #[test]
    fn public_name_servers_stand_in_when_only_loopback_ones_were_there() {
        let text = resolv_conf("nameserver 127.0.0.1\nsearch lab\n", NetMode::None);
        assert_eq!(text, "search lab\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        assert_eq!(
            resolv_conf("", NetMode::Bridge),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn hosts_names_localhost_and_the_container() {
        let text = hosts("web", "web");
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.ends_with("127.0.1.1\tweb\n"));
        assert!(hosts("db.lab", "db").ends_with("127.0.1.1\tdb.lab db\n"));
    }

    #[test]
    fn an_image_user_name_is_found_in_its_top_most_passwd() {
        let dir = tempfile::tempdir().unwrap();
        let (top, base) = (dir.path().join("top"), dir.path().join("base"));
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::write(
            base.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(base.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let mounts = vec![system_services::root::RootfsMount {
            typ: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "index=off".into(),
                format!("lowerdir={}:{}", top.display(), base.display()),
            ],
        }];
        let layers = layer_dirs(&mounts);
        assert_eq!(layers, [top.clone(), base.clone()]);
        let user = |text| resolve_user(text, &layers).map(|u| (u.uid, u.gid));
        assert_eq!(user("nobody"), Some((65534, 65534)));
        assert_eq!(user("nobody:staff"), Some((65534, 50)));
        assert_eq!(user("1000:staff"), Some((1000, 50)));
        assert_eq!(user("ghost"), None);
        // A passwd in a higher layer hides the lower one.
        std::fs::write(top.join("etc/passwd"), "app:x:1001:1001::/app:/bin/sh\n").unwrap();
        assert_eq!(user("app"), Some((1001, 1001)));
        assert_eq!(user("nobody"), None);
    }

    #[test]
    fn the_files_are_written_under_the_container_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("host-resolv"), HOST).unwrap();
        let files = RuntimeFiles::under(&dir.path().join("web"));
        files
            .write(
                &dir.path().join("host-resolv"),
                NetMode::Bridge,
                "web",
                "web",
            )
            .unwrap();
        assert_eq!(std::fs::read_to_string(&files.hostname).unwrap(), "web\n");
        assert!(
            !std::fs::read_to_string(&files.resolv_conf)
                .unwrap()
                .contains("127.0.0.53")
        );
        assert_eq!(files.binds()[1].1, "/etc/hosts");
    }
}
