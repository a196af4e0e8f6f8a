//! The start order of services from their `io.rancher.os.after` and
//! `io.rancher.os.before` labels. A service in a cycle, or naming a
//! service that is defined nowhere, does not start and is reported by
//! name; so are the services that start after it. The rest start.
//!
//! A label naming a service that is defined but not running (disabled,
//! not included, or with a bad definition) orders nothing: disabling a
//! service does not stop the ones that would have followed it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::service::{Service, ServiceName};

/// Which label an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    After,
    Before,
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::After => "io.rancher.os.after",
            Self::Before => "io.rancher.os.before",
        })
    }
}

/// Why a service is left out of the start order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("service {service}: {label} names {missing}, which is not defined")]
    Missing {
        service: ServiceName,
        label: Label,
        missing: ServiceName,
    },
    #[error("services {} wait for each other (a cycle in their after/before labels)", names(.services))]
    Cycle { services: Vec<ServiceName> },
    #[error("service {service} is not started: it starts after {dependency}, which cannot start")]
    Blocked {
        service: ServiceName,
        dependency: ServiceName,
    },
}

impl OrderError {
    /// The services this error keeps from starting.
    pub fn services(&self) -> Vec<&ServiceName> {
        match self {
            Self::Missing { service, .. } | Self::Blocked { service, .. } => vec![service],
            Self::Cycle { services } => services.iter().collect(),
        }
    }
}

fn names(services: &[ServiceName]) -> String {
    services
        .iter()
        .map(ServiceName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The services that can start, in an order that honours every label,
/// each with the services it waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub order: Vec<ServiceName>,
    pub waits_for: BTreeMap<ServiceName, Vec<ServiceName>>,
    pub problems: Vec<OrderError>,
}

/// Orders `services` (the ones to start). `is_defined` says whether a name
/// that is not among them is defined at all (and so orders nothing rather
/// than being missing).
pub fn plan(services: &[Service], is_defined: impl Fn(&ServiceName) -> bool) -> Plan {
    let present: BTreeSet<&ServiceName> = services.iter().map(|s| &s.name).collect();
    let mut problems = Vec::new();
    let mut broken: BTreeSet<ServiceName> = BTreeSet::new();
    // dependency -> dependants, and dependant -> dependencies.
    let mut edges: BTreeMap<&ServiceName, BTreeSet<&ServiceName>> = BTreeMap::new();
    let mut waits: BTreeMap<&ServiceName, BTreeSet<&ServiceName>> = BTreeMap::new();
    for name in &present {
        edges.entry(name).or_default();
        waits.entry(name).or_default();
    }
    for service in services {
        let labelled = service
            .after
            .iter()
            .map(|other| (Label::After, other))
            .chain(service.before.iter().map(|other| (Label::Before, other)));
        for (label, other) in labelled {
            if let Some(other) = present.get(other) {
                let (first, then) = match label {
                    Label::After => (*other, &service.name),
                    Label::Before => (&service.name, *other),
                };
                edges.entry(first).or_default().insert(then);
                waits.entry(then).or_default().insert(first);
            } else if !is_defined(other) {
                problems.push(OrderError::Missing {
                    service: service.name.clone(),
                    label,
                    missing: other.clone(),
                });
                broken.insert(service.name.clone());
            }
        }
    }

    // Kahn's algorithm; ties go by name so the order is stable.
    let mut pending: BTreeMap<&ServiceName, usize> = waits
        .iter()
        .map(|(name, deps)| (*name, deps.len()))
        .collect();
    let mut ready: BTreeSet<&ServiceName> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(name, _)| *name)
        .collect();
    let mut sorted = Vec::new();
    while let Some(name) = ready.pop_first() {
        pending.remove(name);
        sorted.push(name);
        for next in &edges[name] {
            if let Some(n) = pending.get_mut(next) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(next);
                }
            }
        }
    }

    // What is left is in a cycle or after one.
    let left: BTreeSet<&ServiceName> = pending.keys().copied().collect();
    let mut in_cycle: BTreeSet<&ServiceName> = BTreeSet::new();
    for name in &left {
        if in_cycle.contains(name) {
            continue;
        }
        let from_here = reachable(name, &edges, &left);
        if !from_here.contains(name) {
            continue;
        }
        let cycle: Vec<&ServiceName> = from_here
            .into_iter()
            .filter(|other| reachable(other, &edges, &left).contains(name))
            .collect();
        for member in &cycle {
            in_cycle.insert(member);
            broken.insert((*member).clone());
        }
        problems.push(OrderError::Cycle {
            services: cycle.into_iter().cloned().collect(),
        });
    }
    // After a cycle: in an order where each comes after what it waits for.
    let mut after_cycles: Vec<&ServiceName> = left.difference(&in_cycle).copied().collect();
    after_cycles.sort_by_key(|name| reachable_count(name, &waits));
    sorted.extend(after_cycles);

    let mut plan = Plan {
        problems,
        ..Plan::default()
    };
    for name in sorted {
        if broken.contains(name) {
            continue;
        }
        let deps: Vec<ServiceName> = waits[name].iter().map(|d| (*d).clone()).collect();
        if let Some(dependency) = deps.iter().find(|d| broken.contains(*d)) {
            plan.problems.push(OrderError::Blocked {
                service: name.clone(),
                dependency: dependency.clone(),
            });
            broken.insert(name.clone());
            continue;
        }
        plan.order.push(name.clone());
        plan.waits_for.insert(name.clone(), deps);
    }
    plan
}

impl Plan {
    /// Splits the plan in two: what starts now, and what waits for the
    /// network to be online, with everything that comes after it (a
    /// service waiting for one that waits for the network waits too).
    /// The second starts once the first has settled, so it keeps only
    /// its own waits.
    pub fn split_after_network(self, services: &[Service]) -> (Plan, Plan) {
        let waits_online: BTreeSet<&ServiceName> = services
            .iter()
            .filter(|s| s.after_network)
            .map(|s| &s.name)
            .collect();
        let mut later: BTreeSet<ServiceName> = BTreeSet::new();
        // In plan order every service comes after what it waits for, so
        // one pass sees each dependency's side before the dependant's.
        for name in &self.order {
            let deps = self.waits_for.get(name).into_iter().flatten();
            if waits_online.contains(name) || deps.into_iter().any(|d| later.contains(d)) {
                later.insert(name.clone());
            }
        }
        let mut now = Plan {
            problems: self.problems,
            ..Plan::default()
        };
        let mut after = Plan::default();
        for name in self.order {
            let deps = self.waits_for.get(&name).cloned().unwrap_or_default();
            if later.contains(&name) {
                let own: Vec<ServiceName> =
                    deps.into_iter().filter(|d| later.contains(d)).collect();
                after.waits_for.insert(name.clone(), own);
                after.order.push(name);
            } else {
                now.waits_for.insert(name.clone(), deps);
                now.order.push(name);
            }
        }
        (now, after)
    }
}

/// Every service reachable from `start` along `edges`, within `within`.
fn reachable<'a>(
    start: &'a ServiceName,
    edges: &BTreeMap<&'a ServiceName, BTreeSet<&'a ServiceName>>,
    within: &BTreeSet<&'a ServiceName>,
) -> BTreeSet<&'a ServiceName> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(name) = todo.pop() {
        for next in edges.get(name).into_iter().flatten() {
            if within.contains(next) && seen.insert(*next) {
                todo.push(next);
            }
        }
    }
    seen
}

/// How many services `name` waits for, directly or not.
fn reachable_count(
    name: &ServiceName,
    waits: &BTreeMap<&ServiceName, BTreeSet<&ServiceName>>,
) -> usize {
    let mut seen: BTreeSet<&ServiceName> = BTreeSet::new();
    let mut todo = vec![name];
    while let Some(name) = todo.pop() {
        for next in waits.get(name).into_iter().flatten() {
            if seen.insert(next) {
                todo.push(next);
            }
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ServiceName {
        ServiceName::new(text).unwrap()
    }

    fn svc(text: &str, after: &[&str], before: &[&str]) -> Service {
        let mut s = Service::new(name(text), "/root", vec!["run".into()]);
        s.after = after.iter().map(|n| name(n)).collect();
        s.before = before.iter().map(|n| name(n)).collect();
        s
    }

    fn order(plan: &Plan) -> Vec<&str> {
        plan.order.iter().map(ServiceName::as_str).collect()
    }

    #[test]
    fn after_and_before_both_order() {
        let services = [
            svc("console", &["syslog", "udev"], &[]),
            svc("syslog", &["udev"], &[]),
            svc("udev", &[], &[]),
            svc("ntp", &[], &["console"]),
        ];
        let plan = plan(&services, |_| false);
        assert_eq!(plan.problems, vec![]);
        assert_eq!(order(&plan), ["ntp", "udev", "syslog", "console"]);
        assert_eq!(
            plan.waits_for[&name("console")],
            [name("ntp"), name("syslog"), name("udev")]
        );
        assert_eq!(plan.waits_for[&name("udev")], []);
    }

    #[test]
    fn a_cycle_is_named_and_the_rest_start() {
        let services = [
            svc("a", &["b"], &[]),
            svc("b", &["c"], &[]),
            svc("c", &["a"], &[]),
            svc("d", &["c"], &[]),
            svc("e", &[], &[]),
        ];
        let plan = plan(&services, |_| false);
        assert_eq!(order(&plan), ["e"]);
        assert_eq!(
            plan.problems,
            vec![
                OrderError::Cycle {
                    services: vec![name("a"), name("b"), name("c")]
                },
                OrderError::Blocked {
                    service: name("d"),
                    dependency: name("c")
                }
            ]
        );
        assert_eq!(
            plan.problems[0].to_string(),
            "services a, b, c wait for each other (a cycle in their after/before labels)"
        );
    }

    #[test]
    fn a_service_before_itself_is_a_cycle() {
        let plan = plan(&[svc("a", &[], &["a"])], |_| false);
        assert_eq!(
            plan.problems,
            vec![OrderError::Cycle {
                services: vec![name("a")]
            }]
        );
        assert!(plan.order.is_empty());
    }

    #[test]
    fn a_missing_dependency_is_named_and_blocks_only_its_dependants() {
        let services = [
            svc("web", &["databse"], &[]),
            svc("proxy", &["web"], &[]),
            svc("ntp", &[], &["nothing"]),
            svc("udev", &[], &[]),
        ];
        let plan = plan(&services, |_| false);
        assert_eq!(order(&plan), ["udev"]);
        assert_eq!(
            plan.problems[0].to_string(),
            "service web: io.rancher.os.after names databse, which is not defined"
        );
        assert_eq!(
            plan.problems[1],
            OrderError::Missing {
                service: name("ntp"),
                label: Label::Before,
                missing: name("nothing")
            }
        );
        assert_eq!(
            plan.problems[2].to_string(),
            "service proxy is not started: it starts after web, which cannot start"
        );
    }

    #[test]
    fn a_defined_but_disabled_dependency_orders_nothing() {
        let services = [svc("console", &["syslog"], &[])];
        let plan = plan(&services, |n| n.as_str() == "syslog");
        assert_eq!(plan.problems, vec![]);
        assert_eq!(order(&plan), ["console"]);
        assert_eq!(plan.waits_for[&name("console")], []);
    }

    #[test]
    fn what_comes_after_the_network_waits_for_it_with_its_dependants() {
        let mut agent = svc("agent", &["udev"], &[]);
        agent.after_network = true;
        let services = vec![
            svc("udev", &[], &[]),
            agent,
            svc("metrics", &["agent"], &[]),
            svc("console", &["udev"], &[]),
        ];
        let plan = plan(&services, |_| false);
        let (now, later) = plan.split_after_network(&services);
        assert_eq!(order(&now), ["udev", "console"]);
        assert_eq!(order(&later), ["agent", "metrics"]);
        // udev has settled by the time the later part starts.
        assert!(later.waits_for[&name("agent")].is_empty());
        assert_eq!(later.waits_for[&name("metrics")], [name("agent")]);
    }
}
