//! What goes into the root file system: the host (what PID 1 runs
//! directly: containerd, its shim, the OCI runtime) and one pre-extracted
//! root directory per system service, all from Debian packages but for
//! the few files built here ([`Built`]).

/// Files this build makes itself, each in place of the package file at
/// the same path (see rootfs.rs: they come first in the file pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Built {
    /// `/usr/bin/containerd` and its runc shim, compiled from Debian's
    /// source with only the plugins we use (containerd.rs).
    Containerd,
    /// A `libkmod.so.2` that finds no modules (the kmod-stub crate): udev
    /// without libkmod's libcrypto, liblzma and libzstd.
    KmodStub,
    /// `/usr/bin/crun` compiled from Debian's source without systemd and
    /// libgcrypt (crun.rs).
    Crun,
    /// A `libsystemd.so.0` for a machine systemd did not boot (the
    /// systemd-stub crate): rsyslog without libsystemd's libgcrypt,
    /// libzstd, liblz4 and liblzma.
    SystemdStub,
    /// dropbear, dropbearkey and dropbearconvert as one binary with its
    /// own libtom, compiled from Debian's source (dropbear.rs).
    Dropbear,
}

/// One root file system.
#[derive(Debug)]
pub struct ImageDef {
    /// The service name (`image: ros/<name>`), or "host".
    pub name: &'static str,
    /// The packages its files come from; their dependencies are added.
    pub packages: &'static [&'static str],
    /// Files built here that replace package files of the same path.
    pub built: &'static [Built],
    /// The programs taken from them, each with the libraries it needs.
    pub programs: &'static [&'static str],
    /// Data files or whole directories taken from the packages as they
    /// are (udev rules); ELF files among them bring their libraries.
    pub files: &'static [&'static str],
    /// Links for every busybox applet.
    pub busybox_links: bool,
    /// Directories of its own besides [`MOUNT_POINTS`] (writable places,
    /// bind targets).
    pub dirs: &'static [&'static str],
}

/// What formats the state partition (ext4).
pub const MKE2FS: &str = "/sbin/mke2fs";

/// The OCI runtime: crun, a tenth of runc's size compressed, works with
/// the runc shim (measured: see image-build's size report).
pub const OCI_RUNTIME: &str = "/usr/bin/crun";

/// containerd, its shim and crun are built from Debian's source
/// ([`Built`]); the crun package still brings the libraries crun links.
/// busybox gives the host a shell for bootcmd, runcmd and the user-data
/// script; it is the console's busybox, stored once in the squashfs.
/// e2fsprogs' mke2fs (busybox's makes only ext2) formats a blank state
/// partition.
pub const HOST: ImageDef = ImageDef {
    name: "host",
    packages: &["crun", "busybox-static", "e2fsprogs"],
    built: &[Built::Containerd, Built::Crun],
    programs: &[
        "/usr/bin/containerd",
        "/usr/bin/containerd-shim-runc-v2",
        OCI_RUNTIME,
        "/bin/busybox",
        MKE2FS,
    ],
    files: &[],
    busybox_links: true,
    dirs: &[
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

/// CA certificates for `ros` pulling from HTTPS registries: Debian's set,
/// joined into the one PEM file rustls looks for first. About 215 kB, 120 kB
/// xz-compressed; the console's copy is the same file, which mksquashfs
/// stores once.
pub const CA_PACKAGE: &str = "ca-certificates";
/// Where the package keeps one certificate per file.
pub const CA_CERTS_DIR: &str = "usr/share/ca-certificates/mozilla";
/// The bundle, as Debian's update-ca-certificates would write it.
pub const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
/// The roots that pull: the host (PID 1 pulls service images at boot) and
/// the console (`ros service pull`).
pub const CA_BUNDLE_IMAGES: &[&str] = &["host", "console"];

/// The workspace's `sudo` (built with `ros`, static for musl): installed
/// setuid root in the console image, at this path.
pub const SUDO: (&str, &str) = ("console", "usr/bin/sudo");

/// Where service images go inside the host root.
pub const SERVICE_IMAGES_DIR: &str = "usr/lib/ros/images";

/// The mount points every root has, host and services: the runtime mounts
/// /proc, /sys, /dev, /run and /tmp over them, and binds files into /etc.
pub const MOUNT_POINTS: &[&str] = &["proc", "sys", "dev", "run", "tmp", "etc"];

/// The host's name files, bound over these in services on the host's
/// network (empty here, so the root needs no change when it is bound).
pub const NAME_FILES: &[&str] = &["etc/resolv.conf", "etc/hosts", "etc/hostname"];

/// What a service root has besides the mount points: a writable place
/// for logs when the root is read-only.
const SERVICE_DIRS: &[&str] = &["var/log"];

/// A root of busybox alone, with a link per applet.
const fn busybox_image(name: &'static str, dirs: &'static [&'static str]) -> ImageDef {
    ImageDef {
        name,
        packages: &["busybox-static"],
        built: &[],
        programs: &["/bin/busybox"],
        files: &[],
        busybox_links: true,
        dirs,
    }
}

/// The rsyslog modules the syslog image keeps: the socket and the kernel
/// log in; for omfwd (built in) over TCP its client, network stream and
/// plain-TCP driver, and zlib for compressed forwarding.
const RSYSLOG_MODULES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/rsyslog/imuxsock.so",
    "/usr/lib/x86_64-linux-gnu/rsyslog/imklog.so",
    "/usr/lib/x86_64-linux-gnu/rsyslog/lmnet.so",
    "/usr/lib/x86_64-linux-gnu/rsyslog/lmnetstrms.so",
    "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ptcp.so",
    "/usr/lib/x86_64-linux-gnu/rsyslog/lmtcpclt.so",
    "/usr/lib/x86_64-linux-gnu/rsyslog/lmzlibw.so",
];

/// One image per built-in service. Those built on busybox share its one
/// copy in the squashfs (mksquashfs stores identical files once).
pub const SERVICES: &[ImageDef] = &[
    // The console: busybox (getty, login, the shell) and dropbear for
    // SSH (with dropbearkey and dropbearconvert for its host keys: one
    // binary built here; dropbear-bin's dependencies give its libraries);
    // [`SUDO`] is added to it.
    ImageDef {
        name: "console",
        packages: &["busybox-static", "dropbear-bin"],
        built: &[Built::Dropbear],
        programs: &[
            "/bin/busybox",
            "/usr/sbin/dropbear",
            "/usr/bin/dropbearkey",
            "/usr/bin/dropbearconvert",
        ],
        files: &[],
        busybox_links: true,
        dirs: &["root", "home", "var/log", "var/lib/rancher", "usr/bin"],
    },
    // rsyslog, as RancherOS shipped: /dev/log and the kernel log in,
    // /var/log/syslog and the split files out, rotated by size by a
    // busybox shell script; forwarding over UDP and TCP. Only the modules
    // its configuration loads. libsystemd is the stub (socket activation
    // and readiness are never used here).
    ImageDef {
        name: "syslog",
        packages: &["rsyslog", "busybox-static"],
        built: &[Built::SystemdStub],
        programs: &["/usr/sbin/rsyslogd", "/bin/busybox"],
        files: RSYSLOG_MODULES,
        busybox_links: true,
        dirs: &["var/log", "etc/rsyslog.d"],
    },
    // busybox acpid: the power button powers the machine off.
    busybox_image("acpid", SERVICE_DIRS),
    // OpenNTPD: Debian builds it against libc alone (no TLS library).
    ImageDef {
        name: "ntp",
        packages: &["openntpd"],
        built: &[],
        programs: &["/usr/sbin/ntpd"],
        files: &[],
        busybox_links: false,
        dirs: &["var/empty", "var/lib/openntpd/db", "var/lib/openntpd/run"],
    },
    // systemd-udevd (udevadm) and its rules; a busybox shell runs the
    // start script (udevd, trigger, settle). Our kernel has no modules:
    // libkmod is the stub, which needs nothing (the real one pulled
    // libcrypto, liblzma and libzstd, 5.8 MB).
    ImageDef {
        name: "udev",
        packages: &["udev", "busybox-static"],
        built: &[Built::KmodStub],
        programs: &["/bin/udevadm", "/bin/busybox"],
        files: &[
            "/lib/systemd/systemd-udevd",
            "/lib/udev/rules.d",
            "/lib/udev/ata_id",
            "/lib/udev/cdrom_id",
            "/lib/udev/scsi_id",
            "/etc/udev/udev.conf",
        ],
        busybox_links: true,
        dirs: SERVICE_DIRS,
    },
    // Mount points only: the user containerd runs the host's containerd,
    // shim, crun and ros, bound in read-only; `ros user-containerd` writes
    // its configuration.
    ImageDef {
        name: "user-containerd",
        packages: &[],
        built: &[],
        programs: &[],
        files: &[],
        busybox_links: false,
        dirs: &[
            "lib",
            "lib64",
            "usr/bin",
            "usr/lib/x86_64-linux-gnu",
            "var/lib/containerd",
            "var/lib/rancher/preload/docker",
            "home",
            "opt",
            "mnt",
            "media",
            "srv",
        ],
    },
];
