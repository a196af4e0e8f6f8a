//! The seccomp filter as the runtime applies it: a service of a real,
//! private containerd (crun or runc, libseccomp) tries to make
//! namespaces with `unshare`, `clone` and `clone3`, and the probes' exit
//! statuses say what the kernel answered. Needs root, containerd, an OCI
//! runtime and busybox-static; skipped loudly otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_spec::runtime::Capability;
use system_services::restart::Backoff;
use system_services::service::{Service, ServiceName};
use system_services::supervisor::supervise;

mod common;
mod probe;

use common::PrivateContainerd;

/// A busybox root with the probes in /probe.
fn root_with_probes(root: &Path) -> PathBuf {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("a static /bin/busybox (Debian's busybox-static)");
    for applet in ["sh", "echo", "unshare", "sleep", "true", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    for dir in ["proc", "sys", "dev", "run", "tmp", "etc", "probe"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for (name, program) in [
        ("clone-user", probe::clone(probe::CLONE_NEWUSER)),
        ("clone-net", probe::clone(probe::CLONE_NEWNET)),
        ("clone-plain", probe::clone(0)),
        (
            "clone3-user",
            probe::clone3(u64::from(probe::CLONE_NEWUSER)),
        ),
    ] {
        let path = root.join("probe").join(name);
        std::fs::write(&path, program).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    root.to_path_buf()
}

/// Each probe, then `unshare -U`, one `name=status` line each.
const SCRIPT: &str = "for p in clone-user clone-net clone-plain clone3-user; do \
    /probe/$p; echo \"$p=$?\"; done; \
    unshare -U true 2>/dev/null; echo \"unshare-user=$?\"; \
    echo done; trap 'exit 0' TERM; sleep 1000 & wait";

/// Runs [`SCRIPT`] as a service holding `capabilities`; its output lines.
async fn probe_as(name: &str, capabilities: &[Capability]) -> Vec<String> {
    let daemon = PrivateContainerd::start();
    let runtime = Arc::new(daemon.client().await);
    let root = root_with_probes(&daemon.path().join("rootfs"));
    let mut service = Service::new(
        ServiceName::new(name).unwrap(),
        root,
        vec!["/bin/sh".into(), "-c".into(), SCRIPT.into()],
    );
    service.capabilities.extend(capabilities.iter().copied());
    let log = daemon.path().join(format!("{name}.log"));
    let supervised = supervise(
        Arc::clone(&runtime),
        service,
        log.clone(),
        Backoff::default(),
    );
    supervised.settled().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|l| l == "done") {
            break text;
        }
        assert!(Instant::now() < deadline, "no probe results: {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    supervised.stop().await;
    text.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn an_unprivileged_service_makes_no_namespace_by_any_call() {
    require_root!();
    let lines = probe_as("no-namespaces", &[]).await;
    // EPERM from the clone rules, ENOSYS for clone3, EPERM for unshare
    // (busybox reports a failure as 1); a plain fork still works.
    assert_eq!(
        lines[..5],
        [
            "clone-user=1",
            "clone-net=1",
            format!("clone-plain={}", probe::CREATED).as_str(),
            "clone3-user=38",
            "unshare-user=1",
        ],
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_service_with_sys_admin_is_not_filtered_for_namespaces() {
    require_root!();
    let lines = probe_as("with-sys-admin", &[Capability::SysAdmin]).await;
    let created = probe::CREATED;
    assert_eq!(
        lines[..5],
        [
            format!("clone-user={created}"),
            format!("clone-net={created}"),
            format!("clone-plain={created}"),
            format!("clone3-user={created}"),
            "unshare-user=0".to_owned(),
        ],
        "{lines:?}"
    );
}
