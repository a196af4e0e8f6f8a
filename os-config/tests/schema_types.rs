//! The checks that used to happen late at boot, now types of the schema:
//! each bad value is refused by `check_document` (what `ros config
//! validate/set` runs) with its key path and line, and dropped alone by
//! the boot's `check_document_dropping`.

use os_config::check::{ErrorKind, check_document, check_document_dropping};

/// The one problem of `yaml`: its kind, key path, line and message.
fn problem(yaml: &str) -> (ErrorKind, String, Option<usize>, String) {
    let errors = check_document(yaml).expect_err(yaml);
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = &errors.0[0];
    (
        error.kind(),
        error.path().map(ToString::to_string).unwrap_or_default(),
        error.line(),
        error.to_string(),
    )
}

fn assert_refused(yaml: &str, path: &str, line: usize, says: &str) {
    let (kind, found, at, message) = problem(yaml);
    assert_eq!(
        (kind, found.as_str(), at),
        (ErrorKind::InvalidValue, path, Some(line)),
        "{message}"
    );
    assert!(message.contains(says), "{message}");
}

#[test]
fn a_capability_the_kernel_does_not_have_is_named_by_its_key() {
    assert_refused(
        "rancher:\n  services:\n    ntp:\n      image: ros/ntp\n      cap_add: [SYS_TIME, SYS_TIEM]\n",
        "rancher.services.ntp.cap_add[1]",
        5,
        "`SYS_TIEM` is not a Linux capability",
    );
    assert_refused(
        "rancher:\n  services:\n    ntp:\n      cap_drop:\n        - CAP_NET_RAW\n        - CAP_NET_RAWW\n",
        "rancher.services.ntp.cap_drop[1]",
        6,
        "`CAP_NET_RAWW` is not a Linux capability",
    );
}

#[test]
fn a_service_name_the_boot_refuses_is_refused_by_validate() {
    // Upper case and 64 characters passed `validate` and failed at boot.
    assert_refused(
        "rancher:\n  services:\n    Web: {image: nginx}\n",
        "rancher.services.Web",
        3,
        "it must start with a lowercase letter or a digit",
    );
    let long = "a".repeat(64);
    assert_refused(
        &format!("rancher:\n  disable: [{long}]\n"),
        "rancher.disable[0]",
        2,
        "longer than 63 characters",
    );
    assert_refused(
        "rancher:\n  services:\n    web:\n      labels: {io.rancher.os.after: 'udev, Net'}\n",
        "rancher.services.web.labels.\"io.rancher.os.after\"",
        4,
        "`Net` is not a valid service name",
    );
}

#[test]
fn a_file_owner_is_resolved_when_read() {
    let checked = check_document(
        "write_files:\n- path: /etc/a\n  owner: rancher:docker\n- path: /etc/b\n  owner: 0\n",
    )
    .unwrap();
    let ids: Vec<(u32, u32)> = checked
        .config
        .write_files
        .iter()
        .map(|f| f.owner.as_ref().map_or((0, 0), |o| (o.uid(), o.gid())))
        .collect();
    assert_eq!(ids, [(1100, 1101), (0, 0)]);
    assert_refused(
        "write_files:\n- path: /etc/a\n  content: x\n  owner: www-data\n",
        "write_files[0].owner",
        4,
        "no user `www-data` in this system",
    );
}

#[test]
fn a_state_device_the_boot_would_never_find_is_refused() {
    assert_refused(
        "rancher:\n  state:\n    dev: sda1\n",
        "rancher.state.dev",
        3,
        "`sda1` is not a device",
    );
    assert_refused(
        "rancher:\n  state:\n    dev: UUID=\n",
        "rancher.state.dev",
        3,
        "a UUID is hex digits",
    );
    let checked = check_document("rancher:\n  state:\n    dev: LABEL=RANCHER_STATE\n").unwrap();
    let dev = checked.config.rancher.state.dev.unwrap();
    assert_eq!(
        dev.kind(),
        &os_config::schema::DeviceKind::Label("RANCHER_STATE".into())
    );
    // Empty, as `rancher.state.dev=` writes it, is no state device.
    let checked = check_document("rancher:\n  state:\n    dev: ''\n").unwrap();
    assert_eq!(checked.config.rancher.state.dev, None);
}

#[test]
fn a_mount_point_is_checked_when_read_and_only_its_entry_is_dropped() {
    assert_refused(
        "mounts:\n- [/dev/vdb, /mnt/../etc, ext4, '']\n",
        "mounts[0]",
        2,
        "has a `.` or `..` component",
    );
    let checked = check_document_dropping(
        "mounts:\n- [/dev/vdb, /, ext4, '']\n- [/dev/vdc, /mnt/c, ext4, '']\n",
    )
    .unwrap();
    assert_eq!(checked.dropped.len(), 1);
    assert_eq!(
        checked.dropped[0]
            .path()
            .map(ToString::to_string)
            .as_deref(),
        Some("mounts[0]")
    );
    let kept: Vec<&str> = checked
        .config
        .mounts
        .iter()
        .map(|m| m.mount_point.as_str())
        .collect();
    assert_eq!(kept, ["/mnt/c"]);
}

#[test]
fn services_include_names_are_service_names_and_unshipped_ones_warn() {
    assert_refused(
        "rancher:\n  services_include:\n    Open VM Tools: true\n",
        "rancher.services_include.\"Open VM Tools\"",
        3,
        "is not a valid service name",
    );
    let checked =
        check_document("rancher:\n  services_include:\n    open-vm-tools: true\n").unwrap();
    let warnings: Vec<String> = checked.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "line 3: `rancher.services_include.open-vm-tools`: `open-vm-tools` is not a service \
          this image ships (RancherOS pulled it from its service repositories); nothing is \
          started (available: user-containerd)"
        ]
    );
}

#[test]
fn a_search_domain_that_would_break_resolv_conf_is_refused() {
    assert_refused(
        "rancher:\n  network:\n    dns:\n      search: [lan, 'corp example']\n",
        "rancher.network.dns.search[1]",
        4,
        "`corp example` is not a domain name",
    );
    let checked =
        check_document("rancher:\n  network:\n    dns:\n      search: [lan, example.com.]\n")
            .unwrap();
    assert_eq!(
        checked.config.rancher.network.dns.search,
        ["lan", "example.com."]
    );
}
