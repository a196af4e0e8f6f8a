//! A workload command typed as the console comes up: the console is
//! ready before the user containerd has made its socket (seconds later
//! under TCG), so the command waits for the socket while PID 1 says the
//! service is on its way, and says why when it is not (disabled, failed,
//! stopped) instead of a bare "no such file".

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use system_services::control::ServiceInfo;

/// The service that makes the socket.
pub const SERVICE: &str = "user-containerd";

/// How long a command waits for a starting user containerd.
pub const WAIT: Duration = Duration::from_secs(60);

/// How often the socket and the service's state are looked at.
const POLL: Duration = Duration::from_millis(250);

/// What to do, given the service as PID 1 reports it.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// On its way: look again soon.
    Wait,
    /// Not coming: the reason, for the user.
    Fail(String),
}

fn verdict(info: &ServiceInfo) -> Verdict {
    let state = info.state.as_str();
    let hint = match state {
        "starting" | "created" | "running" => return Verdict::Wait,
        // Enabled but not yet reached by the boot's start.
        "not-started" if info.enabled => return Verdict::Wait,
        "disabled" | "not-started" => {
            format!("turn it on with `ros service enable {SERVICE}` and `ros service up {SERVICE}`")
        }
        "stopped" => format!("start it with `ros service start {SERVICE}`"),
        _ => format!(
            "`ros service logs {SERVICE}` says why, `ros service start {SERVICE}` starts it"
        ),
    };
    let detail = info
        .detail
        .as_deref()
        .map(|detail| format!(" ({detail})"))
        .unwrap_or_default();
    Verdict::Fail(format!("the {SERVICE} service is {state}{detail}; {hint}"))
}

/// Returns once `socket` exists; waits up to `timeout` while `ask` (PID
/// 1's list of services) says the service is starting. Without an answer
/// from PID 1 (no control socket: not on this OS, or a test) there is
/// nothing to wait for, and the connection says what is wrong. `note` is
/// told once that the command waits.
pub async fn wait_for_socket(
    socket: &Path,
    timeout: Duration,
    ask: impl Fn() -> Option<Vec<ServiceInfo>>,
    mut note: impl FnMut(&str),
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut noted = false;
    loop {
        if socket.exists() {
            return Ok(());
        }
        let Some(services) = ask() else {
            return Ok(());
        };
        let Some(info) = services.iter().find(|info| info.name == SERVICE) else {
            return Ok(());
        };
        if let Verdict::Fail(why) = verdict(info) {
            bail!("{} is missing: {why}", socket.display());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} is missing: the {SERVICE} service is {} and did not make it in {:?}; \
                 `ros service logs {SERVICE}` says why",
                socket.display(),
                info.state,
                timeout
            );
        }
        if !noted {
            note(&format!(
                "ros: waiting for the {SERVICE} service to start ({})",
                info.state
            ));
            noted = true;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn info(state: &str, enabled: bool) -> ServiceInfo {
        ServiceInfo {
            name: SERVICE.into(),
            enabled,
            state: state.into(),
            pid: None,
            restarts: 0,
            image: "ros/user-containerd".into(),
            privileged: true,
            command: vec![],
            detail: None,
            since: None,
        }
    }

    #[test]
    fn a_starting_or_enabled_service_is_waited_for_and_others_are_named() {
        assert_eq!(verdict(&info("starting", true)), Verdict::Wait);
        assert_eq!(verdict(&info("running", true)), Verdict::Wait);
        assert_eq!(verdict(&info("not-started", true)), Verdict::Wait);
        let Verdict::Fail(disabled) = verdict(&info("disabled", false)) else {
            panic!("a disabled service is not waited for");
        };
        assert!(disabled.contains("is disabled"), "{disabled}");
        assert!(
            disabled.contains("ros service enable user-containerd"),
            "{disabled}"
        );
        let mut failed = info("failed", true);
        failed.detail = Some("exec: no such file".into());
        let Verdict::Fail(failed) = verdict(&failed) else {
            panic!("a failed service is not waited for");
        };
        assert!(
            failed.contains("is failed (exec: no such file)"),
            "{failed}"
        );
        assert!(
            failed.contains("ros service logs user-containerd"),
            "{failed}"
        );
        let Verdict::Fail(stopped) = verdict(&info("stopped", true)) else {
            panic!("a stopped service is not waited for");
        };
        assert!(
            stopped.ends_with("is stopped; start it with `ros service start user-containerd`"),
            "{stopped}"
        );
    }

    #[tokio::test]
    async fn the_command_waits_until_the_starting_service_makes_its_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("containerd.sock");
        let asked = Mutex::new(0);
        let mut notes = Vec::new();
        let started = Instant::now();
        wait_for_socket(
            &socket,
            Duration::from_secs(10),
            || {
                let mut asked = asked.lock().expect("lock");
                *asked += 1;
                // The socket appears at the third look.
                if *asked == 3 {
                    std::fs::write(&socket, "").expect("socket stand-in");
                }
                Some(vec![info("starting", true)])
            },
            |line| notes.push(line.to_string()),
        )
        .await
        .expect("the socket appeared");
        assert_eq!(*asked.lock().expect("lock"), 3);
        assert_eq!(
            notes,
            ["ros: waiting for the user-containerd service to start (starting)"]
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_disabled_service_fails_at_once_naming_the_socket_and_the_way_to_turn_it_on() {
        let socket = Path::new("/nonexistent/containerd.sock");
        let started = Instant::now();
        let error = wait_for_socket(
            socket,
            Duration::from_secs(10),
            || Some(vec![info("disabled", false)]),
            |_| panic!("nothing to wait for"),
        )
        .await
        .expect_err("disabled");
        let text = error.to_string();
        assert!(
            text.starts_with(
                "/nonexistent/containerd.sock is missing: the user-containerd service is disabled"
            ),
            "{text}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_service_that_never_makes_its_socket_fails_after_the_wait() {
        let socket = Path::new("/nonexistent/containerd.sock");
        let error = wait_for_socket(
            socket,
            Duration::from_millis(600),
            || Some(vec![info("running", true)]),
            |_| {},
        )
        .await
        .expect_err("no socket");
        assert!(
            error
                .to_string()
                .contains("is running and did not make it in 600ms"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn without_pid_1_to_ask_the_connection_says_what_is_wrong() {
        let socket = Path::new("/nonexistent/containerd.sock");
        wait_for_socket(socket, Duration::from_secs(10), || None, |_| {})
            .await
            .expect("nothing to wait for");
        wait_for_socket(socket, Duration::from_secs(10), || Some(vec![]), |_| {})
            .await
            .expect("no such service");
    }
}
