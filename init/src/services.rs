//! The built-in system services.

use system_services::service::{BindMount, HostNamespaces, RestartPolicy, Service, ServiceName};

/// Where service root file systems live in the image (`image: ros/<name>`).
pub const IMAGES_DIR: &str = "/usr/lib/ros/images";

/// The console: a shell on the serial console and on tty1, with the `ros`
/// command. It administers the machine, so it sees the host's processes,
/// network and devices, as the RancherOS console did.
pub fn console() -> Service {
    let name = ServiceName::new("console").expect("a valid literal name");
    let mut service = Service::new(
        name,
        format!("{IMAGES_DIR}/console"),
        vec!["/usr/libexec/ros/console".into()],
    );
    service.host = HostNamespaces {
        net: true,
        pid: true,
        ipc: true,
        uts: true,
    };
    service.privileged = true;
    service.restart = RestartPolicy::Always;
    service.env.push("TERM=linux".into());
    for (path, read_only) in [
        ("/usr/bin/ros", true),
        ("/run/system-containerd", false),
        // `ros network` reads PID 1's DHCP status here.
        ("/run/ros", true),
        ("/var/log", false),
        ("/var/lib/rancher", false),
        ("/home", false),
    ] {
        service.mounts.push(BindMount {
            source: path.into(),
            destination: path.into(),
            read_only,
        });
    }
    service
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_is_privileged_on_host_namespaces_and_restarts() {
        let console = console();
        assert_eq!(console.name.as_str(), "console");
        assert!(console.privileged);
        assert_eq!(
            console.host,
            HostNamespaces {
                net: true,
                pid: true,
                ipc: true,
                uts: true
            }
        );
        assert_eq!(console.restart, RestartPolicy::Always);
        assert!(
            console
                .mounts
                .iter()
                .any(|m| m.source.as_os_str() == "/usr/bin/ros" && m.read_only)
        );
    }
}
