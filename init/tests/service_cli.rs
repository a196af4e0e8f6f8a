//! `ros service` parts that need no PID 1: enable and disable against a
//! temporary configuration root, and the errors for what cannot work.

use std::path::Path;
use std::process::{Command, Output};

fn ros(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ros"))
        .args(args)
        .env("ROS_CONFIG_ROOT", root)
        .env("ROS_CONTROL_SOCKET", root.join("no-pid-1.sock"))
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn stored(root: &Path) -> serde_norway::Value {
    let path = root.join("var/lib/rancher/conf/cloud-config.yml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap_or_default())
        .unwrap_or(serde_norway::Value::Null)
}

fn disabled(root: &Path) -> Vec<String> {
    stored(root)["rancher"]["disable"]
        .as_sequence()
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn disable_and_enable_a_built_in_service() {
    let dir = tempfile::tempdir().unwrap();
    let out = ros(dir.path(), &["service", "disable", "ntp"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        text(&out),
        "ntp: disabled; it does not start at boot (now: ros service stop ntp)\n"
    );
    assert_eq!(disabled(dir.path()), ["ntp"]);
    // Twice is the same.
    assert!(
        ros(dir.path(), &["service", "disable", "ntp"])
            .status
            .success()
    );
    ros(dir.path(), &["service", "disable", "acpid"]);
    assert_eq!(disabled(dir.path()), ["ntp", "acpid"]);

    let out = ros(dir.path(), &["service", "enable", "ntp"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(disabled(dir.path()), ["acpid"]);
    ros(dir.path(), &["service", "enable", "acpid"]);
    assert_eq!(
        stored(dir.path())["rancher"]["disable"],
        serde_norway::Value::Null
    );
}

#[test]
fn enable_and_disable_an_optional_service() {
    let dir = tempfile::tempdir().unwrap();
    let out = ros(dir.path(), &["service", "enable", "user-containerd"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stored(dir.path())["rancher"]["services_include"]["user-containerd"],
        serde_norway::Value::Bool(true)
    );
    // Now it is part of the merged configuration.
    let got = ros(
        dir.path(),
        &["config", "get", "rancher.services.user-containerd.image"],
    );
    assert_eq!(text(&got), "ros/user-containerd\n");

    let out = ros(dir.path(), &["service", "disable", "user-containerd"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stored(dir.path())["rancher"]["services_include"]["user-containerd"],
        serde_norway::Value::Bool(false)
    );
}

#[test]
fn unknown_services_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = ros(dir.path(), &["service", "enable", "open-vm-tools"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out),
        "ros: unknown service open-vm-tools (defined: acpid, console, ntp, syslog, udev, user-containerd)\n"
    );
    assert!(
        !dir.path()
            .join("var/lib/rancher/conf/cloud-config.yml")
            .exists()
    );
}

#[test]
fn without_pid_1_the_socket_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = ros(dir.path(), &["service", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let message = text(&out);
    assert!(
        message.starts_with("ros: cannot reach PID 1 at "),
        "{message}"
    );
    assert!(message.contains("no-pid-1.sock"), "{message}");
    let usage = ros(dir.path(), &["service", "stop"]);
    assert_eq!(usage.status.code(), Some(2), "a name is required");
}

#[test]
fn log_pipe_is_for_the_shim() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("never.log");
    let out = Command::new(env!("CARGO_BIN_EXE_ros"))
        .arg("log-pipe")
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("log-pipe is run by containerd's shim"),
        "{}",
        text(&out)
    );
    assert!(!log.exists());
}
