use std::process::Command;

use super::*;

fn blank_facts() -> DiskFacts {
    DiskFacts {
        name: "vdb".into(),
        size: 1 << 30,
        logical_sector: 512,
        head: vec![0; 1 << 20],
        ..DiskFacts::default()
    }
}

#[test]
fn a_blank_unmounted_disk_is_installed_to() {
    assert_eq!(refusal(&blank_facts(), false), None);
}

#[test]
fn a_disk_with_a_file_system_is_refused_unless_forced() {
    let mut facts = blank_facts();
    facts.head[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
    facts.head[1024 + 120..1024 + 124].copy_from_slice(b"DATA");
    let refused = refusal(&facts, false).unwrap();
    assert_eq!(
        refused.to_string(),
        "is not blank: it has a file system (ext4) labelled DATA; -f installs over it, erasing everything on it"
    );
    assert_eq!(refusal(&facts, true), None);
}

#[test]
fn what_makes_a_disk_not_blank_is_named() {
    let mut gpt = vec![0u8; 4096];
    gpt[512..520].copy_from_slice(b"EFI PART");
    let mut mbr = vec![0u8; 4096];
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let mut unlabelled_ext = vec![0u8; 4096];
    unlabelled_ext[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
    let mut data = vec![0u8; 4096];
    data[4000] = 1;
    let none: &[String] = &[];
    assert_eq!(
        not_blank(&gpt, none).unwrap(),
        "it has a GPT partition table"
    );
    assert_eq!(
        not_blank(&mbr, none).unwrap(),
        "it has an MBR partition table or boot sector"
    );
    assert_eq!(
        not_blank(&unlabelled_ext, none).unwrap(),
        "it has an ext file system"
    );
    assert_eq!(not_blank(&data, none).unwrap(), "its first MiB holds data");
    assert_eq!(
        not_blank(&[0; 4096], &["vdb1".into()]).unwrap(),
        "it has partitions vdb1"
    );
    assert_eq!(not_blank(&[0; 4096], none), None);
}

#[test]
fn a_mounted_disk_or_the_boot_medium_is_refused_even_when_forced() {
    let mut mounted = blank_facts();
    mounted.mounted = vec!["vdb1".into()];
    assert_eq!(
        refusal(&mounted, true).unwrap().to_string(),
        "is in use: /dev/vdb1 is mounted (-f does not change this; unmount it first)"
    );
    let mut medium = blank_facts();
    medium.boot_medium = true;
    assert_eq!(refusal(&medium, true), Some(Refusal::BootMedium));
    let mut partition = blank_facts();
    partition.parent = Some("vdb".into());
    assert_eq!(
        refusal(&partition, true).unwrap().to_string(),
        "is a partition; give the whole disk (/dev/vdb)"
    );
    let mut read_only = blank_facts();
    read_only.read_only = true;
    assert_eq!(refusal(&read_only, true), Some(Refusal::ReadOnly));
    let mut big_sectors = blank_facts();
    big_sectors.logical_sector = 4096;
    assert_eq!(refusal(&big_sectors, true), Some(Refusal::SectorSize(4096)));
}

#[test]
fn mountinfo_gives_the_device_numbers() {
    let text = "22 1 253:3 / / rw,noatime - ext4 /dev/vda3 rw\n\
                30 22 0:5 / /dev rw - devtmpfs devtmpfs rw\n";
    assert_eq!(mounted_numbers(text), ["253:3", "0:5"]);
}

#[test]
fn partitions_of_disks_ending_in_a_digit_get_a_p() {
    assert_eq!(
        partition_path(Path::new("/dev/vda"), 3),
        Path::new("/dev/vda3")
    );
    assert_eq!(
        partition_path(Path::new("/dev/nvme0n1"), 3),
        Path::new("/dev/nvme0n1p3")
    );
    assert_eq!(
        partition_path(Path::new("/dev/loop7"), 1),
        Path::new("/dev/loop7p1")
    );
}

#[test]
fn progress_prints_a_line_per_tenth() {
    let mut out = Vec::new();
    let mut progress = Progress::new(100 << 20, &mut out);
    for _ in 0..100 {
        progress.add(1 << 20);
    }
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10, "{text}");
    assert_eq!(
        lines[0],
        "ros install: copying the kernel and initrd:  10% (10 of 100 MiB)"
    );
    assert_eq!(
        lines[9],
        "ros install: copying the kernel and initrd: 100% (100 of 100 MiB)"
    );
}

/// A loop device over a file, or over `range` (offset, length) of it;
/// detached on drop. (The partition is a loop device of its own: the
/// test host's kernel may not scan loop devices for partitions.)
struct Loop {
    device: PathBuf,
}

impl Loop {
    fn attach(file: &Path, range: Option<(u64, u64)>) -> Self {
        let mut command = Command::new("losetup");
        command.args(["--find", "--show"]);
        if let Some((offset, len)) = range {
            command
                .arg(format!("--offset={offset}"))
                .arg(format!("--sizelimit={len}"));
        }
        let out = command.arg(file).output().expect("losetup (util-linux)");
        assert!(out.status.success(), "losetup: {out:?}");
        Self {
            device: PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// Needs root (loop devices, mount): runs as root here, as the test
/// suite does.
#[test]
fn installing_onto_a_loop_device_writes_a_bootable_layout_and_the_files() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (loop devices and mount)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let image = path("disk.img");
    File::create(&image).unwrap().set_len(128 << 20).unwrap();
    std::fs::write(path("vmlinuz"), vec![1u8; 3 << 20]).unwrap();
    // The small initrd with the root image beside it, as on the ISO.
    std::fs::write(path("initrd"), vec![2u8; 2 << 20]).unwrap();
    std::fs::write(path("rootfs.squashfs"), vec![4u8; 5 << 20]).unwrap();
    std::fs::create_dir(path("loaders")).unwrap();
    std::fs::write(path("loaders/boot.img"), vec![0xEBu8; 512]).unwrap();
    std::fs::write(path("loaders/core.img"), vec![0xC0u8; 30_000]).unwrap();
    std::fs::write(path("loaders/esp.img"), vec![0xE5u8; 3 << 20]).unwrap();
    let disk = Loop::attach(&image, None);
    // Where the layout puts the state partition for a 3 MiB ESP.
    let layout = ros_layout(128 << 20, 3 << 20, || Guid::ZERO).unwrap();
    let state_part = layout.partition(3).unwrap();
    let part = Loop::attach(&image, Some((state_part.offset(), state_part.bytes())));
    let system = System::real();

    // Blank: nothing refuses it.
    let facts = inspect(&system, &disk.device, None).unwrap();
    assert_eq!(facts.size, 128 << 20);
    assert_eq!(refusal(&facts, false), None, "{facts:?}");

    let config: serde_norway::Value =
        serde_norway::from_str("hostname: installed\nrancher: {debug: true}\n").unwrap();
    let mke2fs = ["/sbin/mke2fs", "/usr/sbin/mke2fs"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("mke2fs (e2fsprogs)");
    let installer = Installer {
        disk: disk.device.clone(),
        size: facts.size,
        vmlinuz: path("vmlinuz"),
        initrd: path("initrd"),
        loaders: Loaders::in_dir(&path("loaders")),
        cmdline: "console=ttyS0 rancher.autologin=ttyS0".into(),
        cloud_config: Some(config),
        mke2fs,
        mount_dir: path("mnt"),
        partition: Some(part.device.clone()),
    };
    let mut out = Vec::new();
    installer.run(&RealMounts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("copying the kernel and initrd: 100% (10 of 10 MiB)"),
        "{text}"
    );
    assert!(text.contains("saved the cloud-config"), "{text}");

    // util-linux reads three partitions; the third is the state file system.
    let table = Command::new("partx")
        .args(["-g", "-r", "-o", "NR,START,NAME"])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(table.stdout).unwrap(),
        "1 2048 BIOS\\x20boot\n2 4096 EFI\\x20system\n3 10240 RANCHER_STATE\n"
    );
    let state = part.device.clone();
    let probe = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(&state)
        .output()
        .unwrap();
    let probe = String::from_utf8(probe.stdout).unwrap();
    assert!(probe.contains("LABEL=RANCHER_STATE"), "{probe}");
    let raw = std::fs::read(&image).unwrap();
    assert!(raw[..440].iter().all(|&b| b == 0xEB));
    assert!(
        raw[2048 * 512..2048 * 512 + 30_000]
            .iter()
            .all(|&b| b == 0xC0)
    );
    assert!(
        raw[4096 * 512..(4096 + 6144) * 512]
            .iter()
            .all(|&b| b == 0xE5)
    );

    // Its files.
    std::fs::create_dir_all(path("check")).unwrap();
    RealMounts.mount(&state, &path("check")).unwrap();
    let read = |name: &str| std::fs::read(path("check").join(name));
    let grub = read("boot/grub/grub.cfg").map(String::from_utf8);
    let initrd = read("boot/initrd").map(|b| b.len());
    let rootfs = read("boot/rootfs.squashfs").map(|b| b.len());
    let saved = read("var/lib/rancher/conf/cloud-config.yml").map(String::from_utf8);
    let mode = std::fs::metadata(path("check/var/lib/rancher/conf/cloud-config.yml"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    RealMounts.unmount(&path("check")).unwrap();
    assert_eq!(
        grub.unwrap().unwrap(),
        "linux /boot/vmlinuz console=ttyS0 rancher.autologin=ttyS0\ninitrd /boot/initrd\n"
    );
    assert_eq!(initrd.unwrap(), 2 << 20);
    assert_eq!(rootfs.unwrap(), 5 << 20);
    let saved = saved.unwrap().unwrap();
    assert!(saved.contains("hostname: installed"), "{saved}");
    assert_eq!(mode.unwrap(), 0o600);

    // Installed: no longer blank; and refused while mounted, even forced.
    let facts = inspect(&system, &disk.device, None).unwrap();
    assert_eq!(
        refusal(&facts, false).unwrap().to_string(),
        "is not blank: it has a GPT partition table; -f installs over it, erasing everything on it"
    );
    // Refused while mounted (the partition here is a loop device of its
    // own), even forced; and as the boot medium, even forced.
    RealMounts.mount(&state, &path("check")).unwrap();
    let facts = inspect(&system, &state, None);
    RealMounts.unmount(&path("check")).unwrap();
    let facts = facts.unwrap();
    assert_eq!(
        refusal(&facts, true),
        Some(Refusal::Mounted(format!(
            "/dev/{}",
            state.file_name().unwrap().to_string_lossy()
        )))
    );
    let name = disk
        .device
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let facts = inspect(&system, &disk.device, Some(&name)).unwrap();
    assert_eq!(refusal(&facts, true), Some(Refusal::BootMedium));
}
