//! A workload command typed as the console comes up: the console is
//! ready before the user containerd answers on its socket (seconds later
//! under TCG), so the command waits for it while PID 1 says the service
//! is on its way, and says why when it is not (disabled, stopped, failed)
//! instead of a bare "no such file" or "connection refused".

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use system_services::control::ServiceInfo;

/// The service that makes the socket.
pub const SERVICE: &str = "user-containerd";

/// How long a command waits for a starting user containerd.
pub const WAIT: Duration = Duration::from_secs(60);

/// How often the socket is tried.
const POLL: Duration = Duration::from_millis(250);

/// How often PID 1 is asked (each answer re-reads the configuration).
const ASK_EVERY: Duration = Duration::from_secs(1);

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
    let enable = if info.enabled {
        String::new()
    } else {
        format!("`ros service enable {SERVICE}` and ")
    };
    let hint = match state {
        // A running service whose containerd does not answer yet (or is
        // being restarted inside it).
        "starting" | "running" => return Verdict::Wait,
        "stopped" => format!("start it with {enable}`ros service start {SERVICE}`"),
        // Never started since boot (the boot starts every enabled
        // service before the console runs): disabled, removed, or enabled
        // after the boot.
        "disabled" | "not-started" => format!("start it with {enable}`ros service up {SERVICE}`"),
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

/// Returns once `answers` (the socket takes a connection); waits up to
/// `timeout` while `ask` (PID 1's list of services) says the service is
/// starting or running. Without an answer from PID 1 (no control socket:
/// not on this OS, or a test) there is nothing to wait for, and the
/// connection says what is wrong. `note` is told once that the command
/// waits.
pub async fn wait_for_socket(
    socket: &Path,
    timeout: Duration,
    answers: impl Fn() -> bool,
    ask: impl Fn() -> Option<Vec<ServiceInfo>>,
    mut note: impl FnMut(&str),
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut asked: Option<Instant> = None;
    loop {
        if answers() {
            return Ok(());
        }
        if asked.is_none_or(|at| at.elapsed() >= ASK_EVERY) {
            let Some(services) = ask() else {
                return Ok(());
            };
            let Some(info) = services.iter().find(|info| info.name == SERVICE) else {
                return Ok(());
            };
            if let Verdict::Fail(why) = verdict(info) {
                bail!("nothing answers on {}: {why}", socket.display());
            }
            if started.elapsed() >= timeout {
                bail!(
                    "nothing answers on {}: the {SERVICE} service is {} and its containerd did \
                     not answer in {timeout:?}; `ros service logs {SERVICE}` says why",
                    socket.display(),
                    info.state,
                );
            }
            if asked.is_none() {
                note(&format!(
                    "ros: waiting for the {SERVICE} service's containerd (service {})",
                    info.state
                ));
            }
            asked = Some(Instant::now());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether something takes a connection on `socket`: a socket file can
/// outlive its containerd (killed, or still restarting).
pub fn answers(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
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

    fn failure(state: &str, enabled: bool) -> String {
        match verdict(&info(state, enabled)) {
            Verdict::Fail(why) => why,
            Verdict::Wait => panic!("{state} is waited for"),
        }
    }

    #[test]
    fn a_starting_or_running_service_is_waited_for_and_others_are_named_with_a_way_out() {
        assert_eq!(verdict(&info("starting", true)), Verdict::Wait);
        assert_eq!(verdict(&info("running", true)), Verdict::Wait);
        assert_eq!(
            failure("disabled", false),
            "the user-containerd service is disabled; start it with \
             `ros service enable user-containerd` and `ros service up user-containerd`"
        );
        assert_eq!(
            failure("not-started", true),
            "the user-containerd service is not-started; start it with \
             `ros service up user-containerd`"
        );
        assert_eq!(
            failure("stopped", true),
            "the user-containerd service is stopped; start it with \
             `ros service start user-containerd`"
        );
        assert!(failure("stopped", false).contains("`ros service enable user-containerd` and"));
        // A createonly definition never starts by itself.
        assert!(failure("created", true).contains("ros service logs user-containerd"));
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
    }

    #[tokio::test]
    async fn the_command_waits_until_the_starting_service_answers_on_its_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("containerd.sock");
        // A socket file nobody listens on, as a killed containerd leaves.
        drop(UnixListener::bind(&socket).expect("stale socket"));
        let listener = Mutex::new(None);
        let asked = Mutex::new(0);
        let mut notes = Vec::new();
        let started = Instant::now();
        wait_for_socket(
            &socket,
            Duration::from_secs(10),
            || answers(&socket),
            || {
                let mut asked = asked.lock().expect("lock");
                *asked += 1;
                // The containerd listens after the second answer.
                if *asked == 2 {
                    std::fs::remove_file(&socket).expect("stale socket removed");
                    *listener.lock().expect("lock") =
                        Some(UnixListener::bind(&socket).expect("listening"));
                }
                Some(vec![info("starting", true)])
            },
            |line| notes.push(line.to_string()),
        )
        .await
        .expect("the socket answered");
        assert_eq!(*asked.lock().expect("lock"), 2);
        assert_eq!(
            notes,
            ["ros: waiting for the user-containerd service's containerd (service starting)"]
        );
        // PID 1 was asked once a second, not at each look.
        assert!(started.elapsed() >= ASK_EVERY);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_stopped_service_fails_at_once_naming_the_socket_and_the_way_to_start_it() {
        let socket = Path::new("/nonexistent/containerd.sock");
        let started = Instant::now();
        let error = wait_for_socket(
            socket,
            Duration::from_secs(10),
            || false,
            || Some(vec![info("stopped", false)]),
            |_| panic!("nothing to wait for"),
        )
        .await
        .expect_err("stopped");
        assert_eq!(
            error.to_string(),
            "nothing answers on /nonexistent/containerd.sock: the user-containerd service is \
             stopped; start it with `ros service enable user-containerd` and \
             `ros service start user-containerd`"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_service_whose_containerd_never_answers_fails_after_the_wait() {
        let socket = Path::new("/nonexistent/containerd.sock");
        let started = Instant::now();
        let error = wait_for_socket(
            socket,
            Duration::from_millis(1500),
            || false,
            || Some(vec![info("running", true)]),
            |_| {},
        )
        .await
        .expect_err("no answer");
        assert!(
            error
                .to_string()
                .contains("is running and its containerd did not answer in 1.5s"),
            "{error}"
        );
        assert!(started.elapsed() >= Duration::from_millis(1500));
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn without_pid_1_or_the_service_to_ask_about_there_is_nothing_to_wait_for() {
        let socket = Path::new("/nonexistent/containerd.sock");
        for listed in [None, Some(vec![])] {
            let started = Instant::now();
            wait_for_socket(
                socket,
                Duration::from_secs(10),
                || false,
                || listed.clone(),
                |_| panic!("nothing to wait for"),
            )
            .await
            .expect("the connection says what is wrong");
            assert!(started.elapsed() < Duration::from_secs(1));
        }
    }
}
