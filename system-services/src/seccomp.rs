//! The seccomp filter of unprivileged services: the system calls Docker's
//! default profile refuses, as a short deny list instead of its long
//! allow list. Some are refused to everyone (kernel keyrings are not
//! namespaced, kexec replaces the kernel); the others unless the service
//! holds the capability Docker's profile ties them to. The kernel checks
//! the capability again: the filter keeps these calls' code out of reach,
//! as defence in depth. Privileged services get no filter, as in Docker.
//!
//! Namespaces: `unshare` and `setns` are refused without `SYS_ADMIN`, and
//! so is creating one through `clone`, whose flags are its first
//! argument: one rule per `CLONE_NEW*` flag matches when that bit is set
//! (Docker allows `clone` only when none is, which is the same thing said
//! the other way round). `clone3` takes its flags behind a pointer, which
//! a filter cannot read, so it answers ENOSYS, as in Docker's profile:
//! glibc and musl then fall back to `clone`, which the rules see. A new
//! user namespace is the usual first step of an escape (it gives
//! `CAP_NET_ADMIN` over nf_tables, `CAP_SYS_ADMIN` over mounts in it).

use std::collections::HashSet;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

/// What a refused call returns: EPERM, as a missing capability would.
const EPERM: u32 = 1;
/// What `clone3` returns: "not implemented", so callers fall back to
/// `clone` instead of failing.
const ENOSYS: u32 = 38;

/// The `clone` flags that make a new namespace (linux/sched.h).
/// `CLONE_NEWTIME` (0x80) is left out: `clone` reads that bit as part of
/// the exit signal, only `unshare` and `clone3` take it.
pub const CLONE_NAMESPACE_FLAGS: &[(&str, u64)] = &[
    ("CLONE_NEWNS", 0x0002_0000),
    ("CLONE_NEWCGROUP", 0x0200_0000),
    ("CLONE_NEWUTS", 0x0400_0000),
    ("CLONE_NEWIPC", 0x0800_0000),
    ("CLONE_NEWUSER", 0x1000_0000),
    ("CLONE_NEWPID", 0x2000_0000),
    ("CLONE_NEWNET", 0x4000_0000),
];

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
/// but the denied calls, on x86-64 and its 32-bit ABIs; without
/// `SYS_ADMIN`, no namespace through `clone` or `clone3` either.
pub fn profile(capabilities: &HashSet<Capability>) -> Result<LinuxSeccomp, OciSpecError> {
    let mut rules = vec![
        LinuxSyscallBuilder::default()
            .names(denied(capabilities))
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(EPERM)
            .build()?,
    ];
    if !capabilities.contains(&Capability::SysAdmin) {
        rules.extend(namespace_rules()?);
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(rules)
        .build()
}

/// `clone` with any `CLONE_NEW*` flag: EPERM, one rule per flag (the
/// conditions of one rule all have to hold; separate rules are
/// alternatives). `(flags & bit) == bit` is libseccomp's masked-equal
/// with the bit as both mask and value. On x86 the flags are the first
/// argument in every ABI. Then `clone3`: ENOSYS.
fn namespace_rules() -> Result<Vec<LinuxSyscall>, OciSpecError> {
    let mut rules = Vec::new();
    for (_, bit) in CLONE_NAMESPACE_FLAGS {
        let condition = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(*bit)
            .value_two(*bit)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()?;
        rules.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(EPERM)
                .args(vec![condition])
                .build()?,
        );
    }
    rules.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(ENOSYS)
            .build()?,
    );
    Ok(rules)
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

    /// What the runtime's libseccomp makes of `profile` for one call:
    /// the errno of the first matching rule, `None` when allowed. Only
    /// the operators this module writes are understood.
    fn verdict(profile: &LinuxSeccomp, name: &str, args: [u64; 6]) -> Option<u32> {
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
        profile
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|rule| rule.names().iter().any(|n| n == name))
            .find(|rule| {
                rule.args().iter().flatten().all(|arg| {
                    assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
                    args[arg.index()] & arg.value() == arg.value_two().unwrap()
                })
            })
            .map(|rule| {
                assert_eq!(rule.action(), LinuxSeccompAction::ScmpActErrno);
                rule.errno_ret().unwrap()
            })
    }

    const SIGCHLD: u64 = 17;
    /// What glibc's pthread_create passes to clone.
    const THREAD: u64 = 0x003d_0f00;

    #[test]
    fn clone_with_a_new_namespace_is_refused_without_sys_admin() {
        let filter = profile(&default_capabilities()).unwrap();
        for (flag, bit) in CLONE_NAMESPACE_FLAGS {
            assert_eq!(
                verdict(&filter, "clone", [bit | SIGCHLD, 0, 0, 0, 0, 0]),
                Some(EPERM),
                "{flag}"
            );
        }
        // Two at once, as `unshare -Ur` would ask.
        assert_eq!(
            verdict(&filter, "clone", [0x1002_0000 | SIGCHLD, 0, 0, 0, 0, 0]),
            Some(EPERM)
        );
        // fork, vfork-like spawns and threads go on.
        assert_eq!(verdict(&filter, "clone", [SIGCHLD, 0, 0, 0, 0, 0]), None);
        assert_eq!(
            verdict(&filter, "clone", [0x4100 | SIGCHLD, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(verdict(&filter, "clone", [THREAD, 1, 2, 3, 4, 5]), None);
        // The flags are the first argument: others may hold anything.
        assert_eq!(
            verdict(&filter, "clone", [SIGCHLD, u64::MAX, u64::MAX, 0, 0, 0]),
            None
        );
        assert_eq!(
            verdict(&filter, "unshare", [0x1000_0000, 0, 0, 0, 0, 0]),
            Some(EPERM)
        );
        assert_eq!(verdict(&filter, "setns", [3, 0, 0, 0, 0, 0]), Some(EPERM));
    }

    #[test]
    fn clone3_answers_not_implemented_so_libc_falls_back_to_clone() {
        let filter = profile(&default_capabilities()).unwrap();
        // Whatever the pointer: the flags behind it cannot be read.
        assert_eq!(
            verdict(&filter, "clone3", [0x7fff_0000, 88, 0, 0, 0, 0]),
            Some(ENOSYS)
        );
        assert_eq!(ENOSYS, 38);
    }

    #[test]
    fn sys_admin_may_make_namespaces() {
        let mut caps = default_capabilities();
        caps.insert(Capability::SysAdmin);
        let filter = profile(&caps).unwrap();
        for (flag, bit) in CLONE_NAMESPACE_FLAGS {
            assert_eq!(
                verdict(&filter, "clone", [bit | SIGCHLD, 0, 0, 0, 0, 0]),
                None,
                "{flag}"
            );
        }
        assert_eq!(
            verdict(&filter, "clone3", [0x7fff_0000, 88, 0, 0, 0, 0]),
            None
        );
        assert_eq!(
            verdict(&filter, "unshare", [0x1000_0000, 0, 0, 0, 0, 0]),
            None
        );
        // Only the one rule of names is left.
        assert_eq!(filter.syscalls().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn the_clone_rules_serialize_as_dockers_masked_equal() {
        let json = serde_json::to_value(profile(&default_capabilities()).unwrap()).unwrap();
        let rules = json["syscalls"].as_array().unwrap();
        // The names, one rule per namespace flag, clone3.
        assert_eq!(rules.len(), 1 + CLONE_NAMESPACE_FLAGS.len() + 1);
        let user = rules
            .iter()
            .find(|r| r["args"][0]["value"] == 0x1000_0000)
            .unwrap();
        assert_eq!(user["names"], serde_json::json!(["clone"]));
        assert_eq!(
            user["args"],
            serde_json::json!([{"index": 0, "value": 0x1000_0000, "valueTwo": 0x1000_0000, "op": "SCMP_CMP_MASKED_EQ"}])
        );
        assert_eq!(user["errnoRet"], 1);
        let clone3 = rules.last().unwrap();
        assert_eq!(clone3["names"], serde_json::json!(["clone3"]));
        assert_eq!(clone3["errnoRet"], 38);
        assert!(clone3.get("args").is_none_or(serde_json::Value::is_null));
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
