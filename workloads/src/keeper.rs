//! The restart keeper: run inside the user containerd's container once
//! containerd answers. It starts the containers whose policy says so
//! (after a reboot their tasks are gone), then keeps them running: one
//! watcher per container Waits on its task and starts it again with
//! `system_services::restart::Backoff`. Containers made later are found
//! by looking at the records every two seconds.
//!
//! A container a person stopped (`io.ros.stopped`) is left alone, except
//! that `always` brings it back when the keeper starts, as Docker does
//! when its daemon starts. `--rm` containers are removed once they exit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use system_services::containerd::Containerd;
use system_services::restart::Backoff;
use system_services::runtime::{ContainerRuntime, TaskStatus};
use system_services::service::RestartPolicy;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Settings;
use crate::engine::{Engine, WorkloadError};
use crate::record::{Record, Task, labels};

/// How often the records are looked at for containers made since.
pub const POLL: Duration = Duration::from_secs(2);

/// What the keeper does about one container it is not watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Its task runs: wait for it to exit.
    Watch,
    /// Start it, then watch it.
    Start,
    /// It exited and asked to be removed (`--rm`).
    Remove,
    Leave,
}

/// The decision for a container not yet watched. `boot`: the keeper's
/// first look, when tasks that are gone were running at shutdown.
pub fn decide(record: &Record, task: Option<&Task>, boot: bool) -> Action {
    let policy = record.restart();
    let exit = match task.map(|t| t.status) {
        Some(TaskStatus::Running | TaskStatus::Paused) => {
            return if policy != RestartPolicy::No || record.auto_remove() {
                Action::Watch
            } else {
                Action::Leave
            };
        }
        Some(TaskStatus::Stopped { exit_code }) => Some(exit_code),
        // Being created by someone else: not ours to touch.
        Some(TaskStatus::Created | TaskStatus::Unknown) => return Action::Leave,
        None => record.last_exit().map(|(code, _)| code),
    };
    if record.auto_remove() && exit.is_some() {
        return Action::Remove;
    }
    // No task and no exit recorded: between `run`'s record and its
    // task, unless this is the first look after a boot.
    let ran_before_boot = boot && record.started().is_some();
    if exit.is_none() && !ran_before_boot {
        return Action::Leave;
    }
    let start = match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always => boot || !record.stopped(),
        RestartPolicy::UnlessStopped => !record.stopped(),
        // After a boot an unknown exit means it was running at shutdown.
        RestartPolicy::OnFailure(_) => !record.stopped() && exit.is_none_or(|code| code != 0),
    };
    if start { Action::Start } else { Action::Leave }
}

/// Timings, shortened by tests.
#[derive(Debug, Clone)]
pub struct KeeperTiming {
    pub poll: Duration,
    pub backoff: Backoff,
}

impl Default for KeeperTiming {
    fn default() -> Self {
        Self {
            poll: POLL,
            backoff: Backoff::default(),
        }
    }
}

/// Keeps the user's containers running by their policies until
/// `shutdown` turns true. Containers are not stopped then: that is
/// containerd's shutdown's business.
pub async fn keep(containerd: Containerd, settings: Settings, shutdown: watch::Receiver<bool>) {
    keep_with(containerd, settings, shutdown, KeeperTiming::default()).await;
}

/// [`keep`] with other timings.
pub async fn keep_with(
    containerd: Containerd,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
    timing: KeeperTiming,
) {
    let engine = Arc::new(Engine::new(containerd, settings));
    let mut watchers: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut boot = true;
    while !*shutdown.borrow() {
        watchers.retain(|_, w| !w.is_finished());
        match look(&engine).await {
            Ok(found) => {
                for (record, task) in found {
                    if watchers.contains_key(&record.name) {
                        continue;
                    }
                    let action = decide(&record, task.as_ref(), boot);
                    let name = record.name.clone();
                    let start = match action {
                        Action::Leave => continue,
                        Action::Remove => {
                            if let Err(err) = engine.remove(&name, false).await {
                                tracing::warn!(container = %name, %err, "removing an exited --rm container");
                            }
                            continue;
                        }
                        Action::Watch => false,
                        Action::Start => true,
                    };
                    let watcher = watch_container(
                        Arc::clone(&engine),
                        name.clone(),
                        start,
                        timing.backoff.clone(),
                    );
                    watchers.insert(name, tokio::spawn(watcher));
                }
                boot = false;
            }
            // containerd restarting: look again, and do the boot pass
            // once it answers.
            Err(err) => tracing::warn!(%err, "listing containers"),
        }
        tokio::select! {
            () = tokio::time::sleep(timing.poll) => {}
            _ = shutdown.changed() => {}
        }
    }
    for (_, watcher) in watchers {
        watcher.abort();
    }
}

async fn look(engine: &Engine) -> Result<Vec<(Record, Option<Task>)>, WorkloadError> {
    let mut tasks = engine.records().all_tasks().await?;
    Ok(engine
        .records()
        .list()
        .await?
        .into_iter()
        .map(|r| {
            let task = tasks.remove(&r.name);
            (r, task)
        })
        .collect())
}

/// One container: (start it,) wait for its task, and start it again
/// while its policy says so. Ends when it stays down.
async fn watch_container(engine: Arc<Engine>, name: String, mut start: bool, mut backoff: Backoff) {
    // Non-zero exits in a row, for `on-failure:N`.
    let mut failures = 0;
    loop {
        if start {
            match engine.start(&name).await {
                Ok(pid) => tracing::info!(container = %name, pid, "started"),
                Err(WorkloadError::NoSuchContainer(_)) => return,
                Err(err) => {
                    tracing::warn!(container = %name, %err, "starting");
                    tokio::time::sleep(backoff.delay_after(Duration::ZERO)).await;
                    if !still_wanted(&engine, &name).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let since = Instant::now();
        let code = match engine.containerd().wait_task(&name).await {
            Ok(code) => code,
            Err(err) if err.is_unavailable() => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                start = false;
                continue;
            }
            // The task was deleted under us (stop, rm): see below what
            // the record says.
            Err(_) => 0,
        };
        // Someone else may have started it again meanwhile.
        if let Ok(Some(Task {
            status: TaskStatus::Running,
            ..
        })) = engine.records().task(&name).await
        {
            start = false;
            continue;
        }
        let recorded = match engine.record_exit(&name).await {
            Ok(code) => code,
            Err(err) => {
                tracing::warn!(container = %name, %err, "recording the exit");
                None
            }
        };
        let code = recorded.unwrap_or(code);
        let Ok(Some(record)) = engine.records().get(&name).await else {
            return;
        };
        if record.auto_remove() {
            if let Err(err) = engine.remove(&name, false).await {
                tracing::warn!(container = %name, %err, "removing an exited --rm container");
            }
            return;
        }
        if record.stopped() {
            return;
        }
        let before = failures;
        failures = if code == 0 { 0 } else { failures + 1 };
        if !record.restart().restarts_after(code, before) {
            tracing::info!(container = %name, code, "exited; not restarted");
            return;
        }
        let delay = backoff.delay_after(since.elapsed());
        tracing::info!(container = %name, code, ?delay, "exited; restarting");
        tokio::time::sleep(delay).await;
        if !still_wanted(&engine, &name).await {
            return;
        }
        start = true;
    }
}

/// Not removed nor stopped by a person meanwhile.
async fn still_wanted(engine: &Engine, name: &str) -> bool {
    matches!(
        engine.records().get(name).await,
        Ok(Some(record)) if !record.stopped() && !record.labels.contains_key(labels::AUTO_REMOVE)
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn record(policy: &str, extra: &[(&str, &str)]) -> Record {
        let mut labels: HashMap<String, String> =
            HashMap::from([(labels::RESTART.to_string(), policy.to_string())]);
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        Record {
            name: "c".into(),
            image: "busybox".into(),
            labels,
            spec: serde_json::Value::Null,
        }
    }

    fn task(status: TaskStatus) -> Task {
        Task {
            pid: 1,
            status,
            exited_at: None,
        }
    }

    const RUNNING: TaskStatus = TaskStatus::Running;
    const STARTED: (&str, &str) = (labels::STARTED, "100");
    const STOPPED: (&str, &str) = (labels::STOPPED, "true");
    const FAILED: (&str, &str) = (labels::EXIT_CODE, "1");
    const SUCCEEDED: (&str, &str) = (labels::EXIT_CODE, "0");

    #[test]
    fn running_containers_with_a_policy_are_watched() {
        assert_eq!(
            decide(&record("always", &[]), Some(&task(RUNNING)), false),
            Action::Watch
        );
        assert_eq!(
            decide(&record("no", &[]), Some(&task(RUNNING)), false),
            Action::Leave
        );
        let rm = record("no", &[(labels::AUTO_REMOVE, "true")]);
        assert_eq!(decide(&rm, Some(&task(RUNNING)), false), Action::Watch);
    }

    #[test]
    fn after_a_boot_the_policies_say_what_starts() {
        let boot = |policy, extra: &[(&str, &str)]| decide(&record(policy, extra), None, true);
        assert_eq!(boot("always", &[STARTED]), Action::Start);
        assert_eq!(
            boot("always", &[STARTED, STOPPED]),
            Action::Start,
            "Docker's always"
        );
        assert_eq!(boot("unless-stopped", &[STARTED]), Action::Start);
        assert_eq!(boot("unless-stopped", &[STARTED, STOPPED]), Action::Leave);
        assert_eq!(boot("on-failure", &[STARTED, FAILED]), Action::Start);
        assert_eq!(boot("on-failure", &[STARTED, SUCCEEDED]), Action::Leave);
        assert_eq!(
            boot("on-failure", &[STARTED]),
            Action::Start,
            "running at shutdown"
        );
        assert_eq!(boot("no", &[STARTED]), Action::Leave);
        assert_eq!(boot("always", &[]), Action::Leave, "never started");
    }

    #[test]
    fn later_only_recorded_exits_start_and_a_stopped_container_stays_down() {
        let later = |policy, extra: &[(&str, &str)]| decide(&record(policy, extra), None, false);
        assert_eq!(
            later("always", &[STARTED]),
            Action::Leave,
            "run is starting it"
        );
        assert_eq!(later("always", &[STARTED, SUCCEEDED]), Action::Start);
        assert_eq!(
            later("always", &[STARTED, SUCCEEDED, STOPPED]),
            Action::Leave
        );
        let exited = task(TaskStatus::Stopped { exit_code: 2 });
        assert_eq!(
            decide(&record("on-failure:3", &[]), Some(&exited), false),
            Action::Start
        );
        assert_eq!(
            decide(&record("no", &[]), Some(&exited), false),
            Action::Leave
        );
        let rm = record("no", &[(labels::AUTO_REMOVE, "true")]);
        assert_eq!(decide(&rm, Some(&exited), false), Action::Remove);
        assert_eq!(
            decide(
                &record("always", &[]),
                Some(&task(TaskStatus::Created)),
                true
            ),
            Action::Leave
        );
    }
}
