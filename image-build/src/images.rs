//! What goes into the root file system: the host (what PID 1 runs
//! directly: containerd, its shim, the OCI runtime) and one pre-extracted
//! root directory per system service, all from Debian packages.

/// One root file system.
#[derive(Debug)]
pub struct ImageDef {
    /// The service name (`image: ros/<name>`), or "host".
    pub name: &'static str,
    /// The packages its files come from; their dependencies are added.
    pub packages: &'static [&'static str],
    /// The programs taken from them, each with the libraries it needs.
    pub programs: &'static [&'static str],
    /// Links for every busybox applet.
    pub busybox_links: bool,
    /// Directories every instance has (mount points, writable places).
    pub dirs: &'static [&'static str],
}

/// The OCI runtime: crun, a tenth of runc's size compressed, works with
/// the runc shim (measured: see image-build's size report).
pub const OCI_RUNTIME: &str = "/usr/bin/crun";

/// busybox gives the host a shell for bootcmd, runcmd and the user-data
/// script; it is the console's busybox, stored once in the squashfs.
pub const HOST: ImageDef = ImageDef {
    name: "host",
    packages: &["containerd", "crun", "busybox-static"],
    programs: &[
        "/usr/bin/containerd",
        "/usr/bin/containerd-shim-runc-v2",
        OCI_RUNTIME,
        "/bin/busybox",
    ],
    busybox_links: true,
    dirs: &[
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "etc",
        "root",
        "home",
        "mnt",
        "media",
        "opt",
        "srv",
        "var/lib/rancher/conf",
        "var/log/ros",
        "usr/bin",
        "usr/lib/ros/images",
    ],
};

/// Where service images go inside the host root.
pub const SERVICE_IMAGES_DIR: &str = "usr/lib/ros/images";

pub const SERVICES: &[ImageDef] = &[ImageDef {
    name: "console",
    packages: &["busybox-static"],
    programs: &["/bin/busybox"],
    busybox_links: true,
    dirs: &[
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "etc",
        "root",
        "home",
        "var/log",
        "var/lib/rancher",
        "usr/bin",
    ],
}];
