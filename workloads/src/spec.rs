//! A workload's OCI spec: `system_services::spec::build` makes the
//! least-privilege base (own namespaces, all capability sets explicit,
//! seccomp, masked paths, device rules) from a `Service` filled in from
//! the flags; then what differs for the user's containers is changed:
//!
//! - Docker's default capabilities (the services' set plus `MKNOD`,
//!   `NET_RAW`, `SETFCAP`, `SYS_CHROOT`, `AUDIT_WRITE`), so images
//!   written for Docker behave the same;
//! - the cgroup under [`CGROUP_PARENT`](crate::CGROUP_PARENT) instead
//!   of the system services' parent; no shim group (one shim each, as
//!   with Docker: a shim dying takes only its own container);
//! - no `/run` and `/tmp` tmpfs (Docker has none; images put things
//!   there);
//! - for the bridge: the `container-net` hooks (`createRuntime` up,
//!   `poststop` down) and the `io.ros.net.*` annotations they read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::OciSpecError;
use oci_spec::runtime::{Capability, HookBuilder, HooksBuilder, LinuxCapabilitiesBuilder, Spec};
use system_services::root::{ImageDefaults, PreparedRoot, Root};
use system_services::service::{BindMount, Service, ServiceName, default_capabilities};
use system_services::spec::SpecError;

use crate::Settings;
use crate::engine::RunOptions;
use crate::files::RuntimeFiles;
use crate::flags::{NetMode, VolumeSource, ports_label};

/// The annotations `container-net`'s hooks read.
pub mod annotations {
    pub const BRIDGE: &str = "io.ros.net.bridge";
    pub const SUBNET: &str = "io.ros.net.subnet";
    pub const MTU: &str = "io.ros.net.mtu";
    pub const PORTS: &str = "io.ros.net.ports";
}

/// The arguments of the hooks: `ros net-hook up|down`.
pub const HOOK_UP: [&str; 3] = ["ros", "net-hook", "up"];
pub const HOOK_DOWN: [&str; 3] = ["ros", "net-hook", "down"];

/// Docker's default capability set.
pub fn docker_capabilities() -> std::collections::HashSet<Capability> {
    let mut caps = default_capabilities();
    caps.extend([
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setfcap,
        Capability::SysChroot,
        Capability::AuditWrite,
    ]);
    caps
}

/// The host name a container gets: `--hostname`, else its name; none
/// (the host's) with the host's network.
pub fn hostname_of(name: &ServiceName, options: &RunOptions) -> Option<String> {
    match options.net {
        NetMode::Host => None,
        NetMode::Bridge | NetMode::None => {
            Some(options.hostname.clone().unwrap_or_else(|| name.to_string()))
        }
    }
}

/// Where each `-v` comes from on the host.
pub fn volume_source(source: &VolumeSource, settings: &Settings) -> PathBuf {
    match source {
        VolumeSource::Host(path) => path.clone(),
        VolumeSource::Named(volume) => settings.volume_path(volume),
    }
}

/// The `Service` the flags describe, for `system_services::spec::build`.
pub fn service(
    name: &ServiceName,
    options: &RunOptions,
    files: &RuntimeFiles,
    settings: &Settings,
) -> Service {
    let mut service = Service::new(name.clone(), "/", Vec::new());
    service.image = options.image.clone();
    service.root = Root::Image(options.image.clone());
    service.command = (!options.command.is_empty()).then(|| options.command.clone());
    // Docker: `--entrypoint ""` clears the image's; either way a new
    // entrypoint drops the image's command.
    service.entrypoint = options.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            Vec::new()
        } else {
            vec![e.clone()]
        }
    });
    service.env = options.env.clone();
    service.working_dir = options.workdir.clone();
    service.user = options.user;
    service.host.net = options.net == NetMode::Host;
    service.host.uts = options.net == NetMode::Host;
    service.capabilities = docker_capabilities();
    service.restart = options.restart;
    service.mounts = files
        .binds()
        .into_iter()
        .map(|(source, destination)| BindMount {
            source: source.to_path_buf(),
            destination: destination.into(),
            read_only: false,
            propagation: None,
        })
        .chain(options.volumes.iter().map(|v| BindMount {
            source: volume_source(&v.source, settings),
            destination: v.target.clone(),
            read_only: v.read_only,
            propagation: None,
        }))
        .collect();
    service
}

/// The container's spec, from the flags and the image's defaults.
pub fn build(
    name: &ServiceName,
    options: &RunOptions,
    image: &ImageDefaults,
    settings: &Settings,
) -> Result<Spec, SpecError> {
    let files = RuntimeFiles::under(&settings.container_run_dir(name.as_str()));
    let service = service(name, options, &files, settings);
    let prepared = PreparedRoot {
        mounts: Vec::new(),
        image: Some(image.clone()),
    };
    let mut spec = system_services::spec::build(&service, &prepared)?;
    adjust(&mut spec, name, options, settings)?;
    Ok(spec)
}

fn adjust(
    spec: &mut Spec,
    name: &ServiceName,
    options: &RunOptions,
    settings: &Settings,
) -> Result<(), OciSpecError> {
    spec.set_hostname(hostname_of(name, options));
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(
            PathBuf::from(crate::CGROUP_PARENT).join(name.as_str()),
        ));
    }
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(options.tty));
        // `no_new_privileges` stays as the base sets it: setuid programs
        // in images do not gain privileges.
        let caps = docker_capabilities();
        process.set_capabilities(Some(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(std::collections::HashSet::new())
                .ambient(std::collections::HashSet::new())
                .build()?,
        ));
    }
    if let Some(mounts) = spec.mounts_mut() {
        mounts.retain(|m| {
            let scratch = m.typ().as_deref() == Some("tmpfs")
                && (m.destination() == Path::new("/run") || m.destination() == Path::new("/tmp"));
            !scratch
        });
    }
    let mut notes = HashMap::new();
    if options.net == NetMode::Bridge {
        let bridge = &settings.bridge;
        notes.insert(annotations::BRIDGE.to_string(), bridge.bridge.clone());
        notes.insert(annotations::SUBNET.to_string(), bridge.subnet.clone());
        if let Some(mtu) = bridge.mtu {
            notes.insert(annotations::MTU.to_string(), mtu.to_string());
        }
        notes.insert(annotations::PORTS.to_string(), ports_label(&options.ports));
        let hook = |args: [&str; 3]| {
            HookBuilder::default()
                .path(settings.hook_program.clone())
                .args(args.iter().map(|a| (*a).to_string()).collect::<Vec<_>>())
                .build()
        };
        spec.set_hooks(Some(
            HooksBuilder::default()
                .create_runtime(vec![hook(HOOK_UP)?])
                .poststop(vec![hook(HOOK_DOWN)?])
                .build()?,
        ));
    } else {
        spec.set_hooks(None);
    }
    spec.set_annotations((!notes.is_empty()).then_some(notes));
    Ok(())
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

    use super::*;
    use crate::flags::{parse_port, parse_volume};

    fn settings() -> Settings {
        let mut settings = Settings::system();
        settings.data_dir = "/data".into();
        settings.run_dir = "/run/ros-test".into();
        settings
    }

    fn options(net: NetMode) -> RunOptions {
        RunOptions {
            net,
            ..RunOptions::new("busybox")
        }
    }

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: Vec::new(),
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            working_dir: None,
            user: None,
        }
    }

    fn name() -> ServiceName {
        ServiceName::new("web").unwrap()
    }

    fn linux_namespaces(spec: &Spec) -> &[LinuxNamespace] {
        spec.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
    }

    fn namespaces(spec: &Spec) -> Vec<LinuxNamespaceType> {
        linux_namespaces(spec).iter().map(|n| n.typ()).collect()
    }

    fn json(spec: &Spec) -> serde_json::Value {
        serde_json::to_value(spec).unwrap()
    }

    #[test]
    fn a_bridge_container_has_its_own_netns_the_hooks_and_the_annotations() {
        let mut settings = settings();
        settings.bridge.mtu = Some(1450);
        settings.hook_program = "/opt/test/ros".into();
        let mut opts = options(NetMode::Bridge);
        opts.ports = vec![
            parse_port("8080:80").unwrap(),
            parse_port("53:53/udp").unwrap(),
        ];
        let spec = build(&name(), &opts, &image(), &settings).unwrap();
        let netns = linux_namespaces(&spec)
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .cloned()
            .unwrap();
        assert_eq!(netns.path(), &None, "a new namespace, not a path");
        let v = json(&spec);
        assert_eq!(
            v["hooks"]["createRuntime"],
            serde_json::json!([{"path": "/opt/test/ros", "args": ["ros", "net-hook", "up"]}])
        );
        assert_eq!(
            v["hooks"]["poststop"],
            serde_json::json!([{"path": "/opt/test/ros", "args": ["ros", "net-hook", "down"]}])
        );
        assert_eq!(
            v["annotations"],
            serde_json::json!({
                "io.ros.net.bridge": "ros0",
                "io.ros.net.subnet": "172.18.0.1/16",
                "io.ros.net.mtu": "1450",
                "io.ros.net.ports": "8080:80/tcp,53:53/udp",
            })
        );
        assert_eq!(spec.hostname().as_deref(), Some("web"));
    }

    #[test]
    fn host_net_shares_the_hosts_network_and_name_without_hooks() {
        let spec = build(&name(), &options(NetMode::Host), &image(), &settings()).unwrap();
        use LinuxNamespaceType::*;
        assert_eq!(namespaces(&spec), vec![Mount, Cgroup, Pid, Ipc]);
        assert_eq!(spec.hooks(), &None);
        assert_eq!(spec.annotations(), &None);
        assert_eq!(spec.hostname(), &None);
    }

    #[test]
    fn none_net_owns_a_network_namespace_without_hooks() {
        let spec = build(&name(), &options(NetMode::None), &image(), &settings()).unwrap();
        use LinuxNamespaceType::*;
        assert_eq!(
            namespaces(&spec),
            vec![Mount, Cgroup, Network, Pid, Ipc, Uts]
        );
        assert_eq!(spec.hooks(), &None);
        assert_eq!(spec.annotations(), &None, "no shim group either");
    }

    #[test]
    fn binds_cover_the_etc_files_and_volumes_and_no_scratch_tmpfs() {
        let mut opts = options(NetMode::None);
        opts.volumes = vec![
            parse_volume("/srv/site:/usr/share/html:ro").unwrap(),
            parse_volume("pgdata:/var/lib/pg").unwrap(),
        ];
        let spec = build(&name(), &opts, &image(), &settings()).unwrap();
        let mounts = spec.mounts().as_ref().unwrap();
        let bind = |dest: &str| {
            mounts
                .iter()
                .find(|m| m.destination() == Path::new(dest))
                .unwrap_or_else(|| panic!("no mount at {dest}"))
                .clone()
        };
        assert_eq!(
            bind("/etc/resolv.conf").source().as_deref(),
            Some(Path::new("/run/ros-test/web/resolv.conf"))
        );
        assert_eq!(
            bind("/etc/hosts").source().as_deref(),
            Some(Path::new("/run/ros-test/web/hosts"))
        );
        assert_eq!(
            bind("/etc/hostname").source().as_deref(),
            Some(Path::new("/run/ros-test/web/hostname"))
        );
        let site = bind("/usr/share/html");
        assert_eq!(site.source().as_deref(), Some(Path::new("/srv/site")));
        assert!(site.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert_eq!(
            bind("/var/lib/pg").source().as_deref(),
            Some(Path::new("/data/volumes/pgdata"))
        );
        assert!(
            !mounts
                .iter()
                .any(|m| m.destination() == Path::new("/tmp")
                    || m.destination() == Path::new("/run")),
            "{mounts:?}"
        );
    }

    #[test]
    fn capabilities_are_dockers_and_seccomp_and_the_workloads_cgroup_are_set() {
        let spec = build(&name(), &options(NetMode::None), &image(), &settings()).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        let expected = docker_capabilities();
        assert_eq!(expected.len(), 14);
        assert_eq!(caps.bounding().as_ref(), Some(&expected));
        assert_eq!(caps.effective().as_ref(), Some(&expected));
        assert!(caps.inheritable().as_ref().unwrap().is_empty());
        assert!(!expected.contains(&Capability::SysAdmin));
        assert!(!expected.contains(&Capability::NetAdmin));
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_some());
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/workloads/web"))
        );
    }

    #[test]
    fn flags_override_the_image_process() {
        let mut opts = options(NetMode::None);
        opts.command = vec!["echo".into(), "hi".into()];
        opts.env = vec!["A=1".into()];
        opts.workdir = Some("/srv".into());
        opts.user = Some(system_services::service::User { uid: 7, gid: 8 });
        opts.hostname = Some("box".into());
        opts.tty = true;
        let v = json(&build(&name(), &opts, &image(), &settings()).unwrap());
        assert_eq!(v["process"]["args"], serde_json::json!(["echo", "hi"]));
        assert_eq!(v["process"]["cwd"], "/srv");
        assert_eq!(v["process"]["user"]["uid"], 7);
        assert_eq!(v["process"]["terminal"], true);
        assert_eq!(v["hostname"], "box");
        assert!(
            v["process"]["env"]
                .as_array()
                .unwrap()
                .contains(&"A=1".into())
        );
        opts.command.clear();
        opts.entrypoint = Some("/bin/env".into());
        let v = json(&build(&name(), &opts, &image(), &settings()).unwrap());
        assert_eq!(v["process"]["args"], serde_json::json!(["/bin/env"]));
    }
}
