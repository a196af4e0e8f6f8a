//! The seccomp filter of unprivileged services: the system calls Docker's
//! default profile refuses, as a short deny list instead of its long
//! allow list. Some are refused to everyone (kernel keyrings are not
//! namespaced, kexec replaces the kernel); the others unless the service
//! holds the capability Docker's profile ties them to. The kernel checks
//! the capability again: the filter keeps these calls' code out of reach,
//! as defence in depth. Privileged services get no filter, as in Docker.

use std::collections::HashSet;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder,
};

/// What a refused call returns: EPERM, as a missing capability would.
const EPERM: u32 = 1;

/// Refused to every unprivileged service.
const ALWAYS: &[&str] = &[
    "add_key",
    "keyctl",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "nfsservctl",
    "get_kernel_syms",
    "query_module",
    "create_module",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "userfaultfd",
];

/// Refused unless the service holds the capability.
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "swapon",
            "swapoff",
            "fanotify_init",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "name_to_handle_at",
            "lookup_dcookie",
            "quotactl",
            "sethostname",
            "setdomainname",
        ],
    ),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["init_module", "finit_module", "delete_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &[
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
        ],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (
        Capability::SysTime,
        &["settimeofday", "clock_settime", "clock_adjtime"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &["mbind", "set_mempolicy", "move_pages"],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// The system calls refused to a service holding `capabilities`.
pub fn denied(capabilities: &HashSet<Capability>) -> Vec<String> {
    let mut names: Vec<String> = ALWAYS.iter().map(|n| (*n).to_string()).collect();
    for (capability, calls) in BY_CAPABILITY {
        // CAP_SYS_ADMIN also stood for BPF and perf before they had their own.
        let held = capabilities.contains(capability)
            || (matches!(capability, Capability::Bpf | Capability::Perfmon)
                && capabilities.contains(&Capability::SysAdmin));
        if !held {
            names.extend(calls.iter().map(|n| (*n).to_string()));
        }
    }
    names
}

/// The filter of a service holding `capabilities`: everything allowed
/// but the denied calls, on x86-64 and its 32-bit ABIs.
pub fn profile(capabilities: &HashSet<Capability>) -> Result<LinuxSeccomp, OciSpecError> {
    let denied = LinuxSyscallBuilder::default()
        .names(denied(capabilities))
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(EPERM)
        .build()?;
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(vec![denied])
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::default_capabilities;

    #[test]
    fn the_default_capabilities_are_refused_mount_and_keyrings() {
        let names = denied(&default_capabilities());
        for call in [
            "mount", "unshare", "keyctl", "ptrace", "reboot", "bpf", "chroot",
        ] {
            assert!(names.iter().any(|n| n == call), "{call}");
        }
        // No name twice.
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn a_capability_opens_its_calls() {
        let mut caps = default_capabilities();
        caps.insert(Capability::SysTime);
        caps.insert(Capability::SysChroot);
        let names = denied(&caps);
        for call in ["settimeofday", "clock_settime", "clock_adjtime", "chroot"] {
            assert!(!names.iter().any(|n| n == call), "{call}");
        }
        caps.insert(Capability::SysAdmin);
        let names = denied(&caps);
        assert!(!names.iter().any(|n| n == "mount" || n == "bpf"));
        assert!(names.iter().any(|n| n == "keyctl"), "never allowed");
    }

    #[test]
    fn the_profile_serializes_as_oci_json() {
        let json = serde_json::to_value(profile(&default_capabilities()).unwrap()).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(json["architectures"][0], "SCMP_ARCH_X86_64");
        assert_eq!(json["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(json["syscalls"][0]["errnoRet"], 1);
    }
}
