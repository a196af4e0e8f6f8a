//! The host checks: what the OS promised the k3s agent's container
//! (its data directories as mounts, kubelet's directory shared for
//! mount propagation, a writable cgroup tree, `/dev/kmsg`, the host's
//! network, being PID 1), each a named bool sent to the server.

use std::path::Path;

/// One line of `/proc/self/mountinfo`, the parts the checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    /// The optional fields (`shared:N`, `master:N`, ...).
    pub optional: Vec<String>,
}

/// Parses mountinfo: `ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS
/// [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS`; lines too short to be
/// a mount are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let mount_point = fields.nth(4)?;
            fields.next()?; // mount options
            let optional = fields
                .take_while(|field| *field != "-")
                .filter(|field| !field.is_empty())
                .map(str::to_string)
                .collect();
            Some(Mount {
                mount_point: unescape(mount_point),
                optional,
            })
        })
        .collect()
}

/// The kernel writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount visible at `path` (the last one stacked there), if any.
pub fn mount_at<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// Whether the mount at `path` is in a shared peer group.
pub fn is_shared(mounts: &[Mount], path: &str) -> bool {
    mount_at(mounts, path).is_some_and(|m| m.optional.iter().any(|f| f.starts_with("shared:")))
}

/// The checks read from mountinfo.
pub fn mount_checks(mountinfo: &str) -> Vec<(&'static str, bool)> {
    let mounts = parse_mountinfo(mountinfo);
    vec![
        (
            "k3s_data_mounted",
            mount_at(&mounts, "/var/lib/rancher/k3s").is_some(),
        ),
        ("kubelet_shared", is_shared(&mounts, "/var/lib/kubelet")),
        (
            "pods_log_mounted",
            mount_at(&mounts, "/var/log/pods").is_some(),
        ),
        (
            "node_dir_mounted",
            mount_at(&mounts, "/etc/rancher/node").is_some(),
        ),
    ]
}

/// Every check, in the order they are logged and sent.
pub fn run(mountinfo: &str) -> Vec<(&'static str, bool)> {
    let mut checks = mount_checks(mountinfo);
    checks.extend([
        ("cgroup_writable", cgroup_writable()),
        ("kmsg", Path::new("/dev/kmsg").exists()),
        ("host_network", has_network_interface()),
        // k3s moves itself out of the root cgroup only as PID 1.
        ("pid_one", std::process::id() == 1),
    ]);
    checks
}

/// Can make and remove a cgroup, as the kubelet will.
fn cgroup_writable() -> bool {
    let probe = Path::new("/sys/fs/cgroup/cluster-agent-probe");
    // A probe left by a killed run would make mkdir fail.
    let _ = std::fs::remove_dir(probe);
    std::fs::create_dir(probe).is_ok() && std::fs::remove_dir(probe).is_ok()
}

/// An interface beside `lo`: not an empty network namespace.
fn has_network_interface() -> bool {
    std::fs::read_dir("/sys/class/net").is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|entry| entry.file_name() != "lo")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw
23 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
30 22 8:1 /k3s /var/lib/rancher/k3s rw,relatime - ext4 /dev/sda1 rw
31 22 8:1 /kubelet /var/lib/kubelet rw,relatime shared:7 master:3 - ext4 /dev/sda1 rw
32 22 8:1 /pods /var/log/pods rw,relatime master:4 - ext4 /dev/sda1 rw
33 22 0:40 / /my\\040dir rw - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_lines_give_their_mount_point_and_optional_fields() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[3].mount_point, "/var/lib/kubelet");
        assert_eq!(mounts[3].optional, ["shared:7", "master:3"]);
        assert!(mounts[1].optional.is_empty());
    }

    #[test]
    fn escaped_spaces_in_mount_points_are_decoded() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts[5].mount_point, "/my dir");
        assert_eq!(unescape("/a\\134b"), "/a\\b");
        // A backslash not followed by three octal digits stays.
        assert_eq!(unescape("/a\\9"), "/a\\9");
    }

    #[test]
    fn a_shared_mount_is_told_from_a_slave_one() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert!(is_shared(&mounts, "/var/lib/kubelet"));
        assert!(!is_shared(&mounts, "/var/log/pods"));
        assert!(!is_shared(&mounts, "/nowhere"));
    }

    #[test]
    fn the_last_mount_stacked_on_a_path_is_the_one_that_counts() {
        let text = format!("{MOUNTINFO}40 31 0:50 / /var/lib/kubelet rw - tmpfs tmpfs rw\n");
        let mounts = parse_mountinfo(&text);
        assert!(!is_shared(&mounts, "/var/lib/kubelet"));
    }

    #[test]
    fn the_mount_checks_follow_mountinfo_and_short_lines_are_skipped() {
        let text = format!("{MOUNTINFO}garbage\n");
        assert_eq!(
            mount_checks(&text),
            [
                ("k3s_data_mounted", true),
                ("kubelet_shared", true),
                ("pods_log_mounted", true),
                ("node_dir_mounted", false),
            ]
        );
    }
}
