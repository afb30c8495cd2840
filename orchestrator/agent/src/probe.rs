//! Container probes (liveness, readiness, startup) with Kubernetes' semantics: the probe
//! fields of a container spec, and the pure state machine that turns probe results at given
//! times into a ready flag and a restart decision. No I/O here: the worker runs the checks
//! (in process for Wasm HTTP handlers, over the pod IP for containers) and feeds the results in.
//!
//! Semantics, as the kubelet's prober has them:
//! - A probe runs first `initialDelaySeconds` after the container started, then every
//!   `periodSeconds`; a check that takes longer than `timeoutSeconds` fails.
//! - A result flips only after `successThreshold` consecutive successes or `failureThreshold`
//!   consecutive failures.
//! - While a startup probe has not succeeded, liveness and readiness do not run and the
//!   container is not ready; once it succeeded it never runs again for that container.
//! - Readiness starts as failing (not ready until it succeeds); without a readiness probe a
//!   started container is ready.
//! - Liveness starts as succeeding; when it (or the startup probe) reaches its failure
//!   threshold, the container is killed and restarted per the pod's restart policy.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// Which of a container's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `startupProbe`.
    Startup,
    /// `livenessProbe`.
    Liveness,
    /// `readinessProbe`.
    Readiness,
}

impl Kind {
    /// The name Kubernetes uses in messages ("Liveness probe failed: ...").
    pub fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Kind::Startup => "startupProbe",
            Kind::Liveness => "livenessProbe",
            Kind::Readiness => "readinessProbe",
        }
    }
}

/// A port of a probe: a number, or the name of one of the container's `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Port {
    /// A port number.
    Number(u16),
    /// A `containerPort` name.
    Name(String),
}

impl Port {
    fn parse(value: &Value) -> Result<Port, String> {
        if let Some(n) = value.as_u64() {
            return u16::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .map(Port::Number)
                .ok_or_else(|| format!("port {n} is out of range"));
        }
        match value.as_str() {
            Some(s) if !s.is_empty() => match s.parse::<u16>() {
                Ok(n) if n > 0 => Ok(Port::Number(n)),
                _ => Ok(Port::Name(s.to_owned())),
            },
            _ => Err("a port (number or name) is required".into()),
        }
    }

    /// The port number, looking a name up in the container's `ports`.
    pub fn resolve(&self, container: &Value) -> Result<u16, String> {
        match self {
            Port::Number(n) => Ok(*n),
            Port::Name(name) => container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| format!("the container has no port named {name:?}")),
        }
    }
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `httpGet`: a GET whose status 200–399 is success.
    Http {
        /// Request path (with query), starting with `/`.
        path: String,
        /// Port.
        port: Port,
        /// `httpHeaders` as (name, value).
        headers: Vec<(String, String)>,
        /// `HTTP` or `HTTPS`.
        scheme: String,
    },
    /// `tcpSocket`: a connection that opens is success.
    Tcp {
        /// Port.
        port: Port,
    },
    /// `exec`: a command that exits 0 is success.
    Exec {
        /// argv.
        command: Vec<String>,
    },
}

/// One probe of a container, with Kubernetes' defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// What it checks.
    pub action: Action,
    /// `initialDelaySeconds` (default 0).
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `timeoutSeconds` (default 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1; always 1 for liveness and startup).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
    /// The probe's own `terminationGracePeriodSeconds`, used when it kills the container.
    pub termination_grace: Option<Duration>,
}

fn seconds(spec: &Value, field: &str, default: u64, min: u64) -> Duration {
    Duration::from_secs(spec[field].as_u64().unwrap_or(default).max(min))
}

fn count(spec: &Value, field: &str, default: u32) -> u32 {
    spec[field]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(default)
        .max(1)
}

impl Probe {
    /// The probe `kind` of `container`, if it has one; an error for a probe that names no
    /// (or an unknown) action.
    pub fn of(container: &Value, kind: Kind) -> Result<Option<Probe>, String> {
        let spec = &container[kind.field()];
        if !spec.is_object() {
            return Ok(None);
        }
        let fail = |why: String| format!("{}: {why}", kind.field());
        let action = if let Some(http) = spec.get("httpGet").filter(|v| v.is_object()) {
            let path = http["path"].as_str().unwrap_or("/");
            Action::Http {
                path: if path.starts_with('/') {
                    path.to_owned()
                } else {
                    format!("/{path}")
                },
                port: Port::parse(&http["port"]).map_err(fail)?,
                headers: http["httpHeaders"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| {
                        Some((
                            h["name"].as_str()?.to_owned(),
                            h["value"].as_str().unwrap_or("").to_owned(),
                        ))
                    })
                    .collect(),
                scheme: http["scheme"]
                    .as_str()
                    .unwrap_or("HTTP")
                    .to_ascii_uppercase(),
            }
        } else if let Some(tcp) = spec.get("tcpSocket").filter(|v| v.is_object()) {
            Action::Tcp {
                port: Port::parse(&tcp["port"]).map_err(fail)?,
            }
        } else if let Some(exec) = spec.get("exec").filter(|v| v.is_object()) {
            let command: Vec<String> = exec["command"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
            if command.is_empty() {
                return Err(fail("exec needs a command".into()));
            }
            Action::Exec { command }
        } else {
            return Err(fail("one of httpGet, tcpSocket or exec is required".into()));
        };
        let success_threshold = match kind {
            Kind::Readiness => count(spec, "successThreshold", 1),
            Kind::Liveness | Kind::Startup => 1,
        };
        Ok(Some(Probe {
            action,
            initial_delay: seconds(spec, "initialDelaySeconds", 0, 0),
            period: seconds(spec, "periodSeconds", 10, 1),
            timeout: seconds(spec, "timeoutSeconds", 1, 1),
            success_threshold,
            failure_threshold: count(spec, "failureThreshold", 3),
            termination_grace: spec["terminationGracePeriodSeconds"]
                .as_u64()
                .map(Duration::from_secs),
        }))
    }
}

/// One probe and where its counting stands.
#[derive(Clone, Debug)]
struct Tracked {
    probe: Probe,
    /// The current result (after thresholds).
    passing: bool,
    /// The last raw result and how many times in a row it came.
    last: Option<bool>,
    streak: u32,
    /// When it runs next.
    next: Instant,
}

impl Tracked {
    fn new(probe: Probe, passing: bool, started: Instant) -> Tracked {
        Tracked {
            next: started + probe.initial_delay,
            probe,
            passing,
            last: None,
            streak: 0,
        }
    }

    /// Counts one raw result; returns whether the current result flipped.
    fn record(&mut self, ok: bool, at: Instant) -> bool {
        if self.last == Some(ok) {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.streak = 1;
        }
        self.next = at + self.probe.period;
        let threshold = if ok {
            self.probe.success_threshold
        } else {
            self.probe.failure_threshold
        };
        if self.passing != ok && self.streak >= threshold {
            self.passing = ok;
            return true;
        }
        false
    }
}

/// What a probe result means for the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing changes.
    Unchanged,
    /// The container's ready flag changed to this.
    Ready(bool),
    /// The container must be killed (and restarted per the restart policy); the message is
    /// for its `lastState.terminated.message`, like "Liveness probe failed: ...".
    Kill {
        /// Why.
        message: String,
        /// The probe's own termination grace period, if it sets one.
        grace: Option<Duration>,
    },
}

/// The probes of one running container instance: which is due when, and what their results
/// add up to. A new instance (after a restart) starts with a new `Probes`.
#[derive(Clone, Debug)]
pub struct Probes {
    startup: Option<Tracked>,
    liveness: Option<Tracked>,
    readiness: Option<Tracked>,
    started: bool,
}

impl Probes {
    /// The probes of `container` for an instance that started at `started`.
    pub fn of(container: &Value, started: Instant) -> Result<Probes, String> {
        let tracked = |kind, passing| -> Result<Option<Tracked>, String> {
            Ok(Probe::of(container, kind)?.map(|p| Tracked::new(p, passing, started)))
        };
        let startup = tracked(Kind::Startup, false)?;
        Ok(Probes {
            started: startup.is_none(),
            startup,
            liveness: tracked(Kind::Liveness, true)?,
            readiness: tracked(Kind::Readiness, false)?,
        })
    }

    /// Whether the container counts as started (its startup probe succeeded, or it has none).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the container is ready: started, and its readiness probe (if any) passing.
    pub fn ready(&self) -> bool {
        self.started && self.readiness.as_ref().is_none_or(|r| r.passing)
    }

    fn tracked(&self, kind: Kind) -> Option<&Tracked> {
        match kind {
            Kind::Startup => self.startup.as_ref(),
            Kind::Liveness => self.liveness.as_ref(),
            Kind::Readiness => self.readiness.as_ref(),
        }
    }

    fn tracked_mut(&mut self, kind: Kind) -> Option<&mut Tracked> {
        match kind {
            Kind::Startup => self.startup.as_mut(),
            Kind::Liveness => self.liveness.as_mut(),
            Kind::Readiness => self.readiness.as_mut(),
        }
    }

    /// The probe `kind`, if the container has it.
    pub fn probe(&self, kind: Kind) -> Option<&Probe> {
        self.tracked(kind).map(|t| &t.probe)
    }

    /// The probe to run next and when; `None` when no probe will run again.
    pub fn next_due(&self) -> Option<(Instant, Kind)> {
        let active: &[Kind] = if self.started {
            &[Kind::Liveness, Kind::Readiness]
        } else {
            &[Kind::Startup]
        };
        active
            .iter()
            .filter_map(|&kind| Some((self.tracked(kind)?.next, kind)))
            .min_by_key(|(at, _)| *at)
    }

    /// Counts the result of probe `kind` that ran at `at`: `Ok` for success, `Err(why)` for a
    /// failure.
    pub fn record(&mut self, kind: Kind, at: Instant, result: Result<(), String>) -> Outcome {
        let was_ready = self.ready();
        let ok = result.is_ok();
        let Some(tracked) = self.tracked_mut(kind) else {
            return Outcome::Unchanged;
        };
        let flipped = tracked.record(ok, at);
        let grace = tracked.probe.termination_grace;
        // A startup probe starts neither passing nor failing, so its failures count up to the
        // threshold without a flip.
        let failed_out = !ok && tracked.streak >= tracked.probe.failure_threshold;
        if failed_out && matches!(kind, Kind::Liveness | Kind::Startup) {
            return Outcome::Kill {
                message: format!(
                    "{} probe failed: {}",
                    kind.title(),
                    result.err().unwrap_or_default()
                ),
                grace,
            };
        }
        if flipped && ok && kind == Kind::Startup {
            self.started = true;
            // Liveness and readiness start now, or at their initial delay if that is later.
            for other in [self.liveness.as_mut(), self.readiness.as_mut()]
                .into_iter()
                .flatten()
            {
                other.next = other.next.max(at);
            }
        }
        if self.ready() != was_ready {
            Outcome::Ready(self.ready())
        } else {
            Outcome::Unchanged
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn fail() -> Result<(), String> {
        Err("HTTP probe failed with statuscode: 500".into())
    }

    #[test]
    fn defaults_follow_kubernetes() {
        let container = json!({"livenessProbe": {"httpGet": {"path": "healthz", "port": 8080}}});
        let probe = Probe::of(&container, Kind::Liveness).unwrap().unwrap();
        assert_eq!(
            probe,
            Probe {
                action: Action::Http {
                    path: "/healthz".into(),
                    port: Port::Number(8080),
                    headers: vec![],
                    scheme: "HTTP".into()
                },
                initial_delay: secs(0),
                period: secs(10),
                timeout: secs(1),
                success_threshold: 1,
                failure_threshold: 3,
                termination_grace: None,
            }
        );
        assert_eq!(Probe::of(&container, Kind::Readiness).unwrap(), None);
    }

    #[test]
    fn fields_and_named_ports_are_read() {
        let container = json!({
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {
                "httpGet": {"path": "/ready", "port": "http", "httpHeaders": [{"name": "X-A", "value": "b"}]},
                "initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 3,
                "successThreshold": 2, "failureThreshold": 4
            },
            "livenessProbe": {"tcpSocket": {"port": 9000}, "successThreshold": 5},
            "startupProbe": {"exec": {"command": ["cat", "/tmp/ok"]}}
        });
        let readiness = Probe::of(&container, Kind::Readiness).unwrap().unwrap();
        let Action::Http { port, headers, .. } = &readiness.action else {
            panic!("not http")
        };
        assert_eq!(port.resolve(&container), Ok(8080));
        assert_eq!(headers, &vec![("X-A".to_owned(), "b".to_owned())]);
        assert_eq!(
            (readiness.initial_delay, readiness.period, readiness.timeout),
            (secs(5), secs(2), secs(3))
        );
        assert_eq!(
            (readiness.success_threshold, readiness.failure_threshold),
            (2, 4)
        );
        let liveness = Probe::of(&container, Kind::Liveness).unwrap().unwrap();
        assert_eq!(
            liveness.action,
            Action::Tcp {
                port: Port::Number(9000)
            }
        );
        // Liveness and startup probes always need one success only.
        assert_eq!(liveness.success_threshold, 1);
        assert_eq!(
            Probe::of(&container, Kind::Startup)
                .unwrap()
                .unwrap()
                .action,
            Action::Exec {
                command: vec!["cat".into(), "/tmp/ok".into()]
            }
        );
        assert!(Port::Name("nope".into()).resolve(&container).is_err());
    }

    #[test]
    fn a_probe_without_an_action_is_an_error() {
        let container = json!({"livenessProbe": {"periodSeconds": 1}});
        assert!(Probe::of(&container, Kind::Liveness).is_err());
        assert!(Probes::of(&container, Instant::now()).is_err());
    }

    #[test]
    fn without_probes_a_running_container_is_ready_and_nothing_runs() {
        let probes = Probes::of(&json!({"name": "c"}), Instant::now()).unwrap();
        assert!(probes.started() && probes.ready());
        assert_eq!(probes.next_due(), None);
    }

    #[test]
    fn liveness_kills_after_failure_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let container = json!({"livenessProbe": {
            "httpGet": {"path": "/", "port": 80}, "periodSeconds": 1, "initialDelaySeconds": 2
        }});
        let mut probes = Probes::of(&container, t0).unwrap();
        assert!(probes.ready(), "liveness alone does not gate readiness");
        assert_eq!(probes.next_due(), Some((t0 + secs(2), Kind::Liveness)));
        assert_eq!(
            probes.record(Kind::Liveness, t0 + secs(2), fail()),
            Outcome::Unchanged
        );
        assert_eq!(probes.next_due(), Some((t0 + secs(3), Kind::Liveness)));
        // A success in between starts the count over.
        assert_eq!(
            probes.record(Kind::Liveness, t0 + secs(3), fail()),
            Outcome::Unchanged
        );
        assert_eq!(
            probes.record(Kind::Liveness, t0 + secs(4), Ok(())),
            Outcome::Unchanged
        );
        for n in 5..7 {
            assert_eq!(
                probes.record(Kind::Liveness, t0 + secs(n), fail()),
                Outcome::Unchanged
            );
        }
        assert_eq!(
            probes.record(Kind::Liveness, t0 + secs(7), fail()),
            Outcome::Kill {
                message: "Liveness probe failed: HTTP probe failed with statuscode: 500".into(),
                grace: None
            }
        );
    }

    #[test]
    fn readiness_starts_false_and_follows_its_thresholds() {
        let t0 = Instant::now();
        let container = json!({"readinessProbe": {
            "tcpSocket": {"port": 80}, "periodSeconds": 1, "successThreshold": 2, "failureThreshold": 2
        }});
        let mut probes = Probes::of(&container, t0).unwrap();
        assert!(!probes.ready());
        assert_eq!(probes.next_due(), Some((t0, Kind::Readiness)));
        assert_eq!(
            probes.record(Kind::Readiness, t0, Ok(())),
            Outcome::Unchanged
        );
        assert_eq!(
            probes.record(Kind::Readiness, t0 + secs(1), Ok(())),
            Outcome::Ready(true)
        );
        assert_eq!(
            probes.record(Kind::Readiness, t0 + secs(2), fail()),
            Outcome::Unchanged
        );
        // Readiness failures never kill.
        assert_eq!(
            probes.record(Kind::Readiness, t0 + secs(3), fail()),
            Outcome::Ready(false)
        );
        for n in 4..20 {
            assert_eq!(
                probes.record(Kind::Readiness, t0 + secs(n), fail()),
                Outcome::Unchanged
            );
        }
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let t0 = Instant::now();
        let container = json!({
            "startupProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1, "failureThreshold": 30},
            "livenessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 10},
            "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 5}
        });
        let mut probes = Probes::of(&container, t0).unwrap();
        assert!(!probes.started() && !probes.ready());
        assert_eq!(probes.next_due(), Some((t0, Kind::Startup)));
        for n in 0..5 {
            assert_eq!(
                probes.record(Kind::Startup, t0 + secs(n), fail()),
                Outcome::Unchanged
            );
            assert_eq!(probes.next_due(), Some((t0 + secs(n + 1), Kind::Startup)));
        }
        // Started, but not ready until readiness succeeds.
        assert_eq!(
            probes.record(Kind::Startup, t0 + secs(5), Ok(())),
            Outcome::Unchanged
        );
        assert!(probes.started() && !probes.ready());
        let (at, kind) = probes.next_due().unwrap();
        assert_eq!(at, t0 + secs(5));
        assert!(matches!(kind, Kind::Liveness | Kind::Readiness));
        assert_eq!(
            probes.record(Kind::Readiness, t0 + secs(5), Ok(())),
            Outcome::Ready(true)
        );
        assert_eq!(probes.next_due(), Some((t0 + secs(5), Kind::Liveness)));
        probes.record(Kind::Liveness, t0 + secs(5), Ok(()));
        assert_eq!(probes.next_due(), Some((t0 + secs(10), Kind::Readiness)));
    }

    #[test]
    fn startup_failures_kill_with_the_probe_grace_period() {
        let t0 = Instant::now();
        let container = json!({"startupProbe": {
            "exec": {"command": ["true"]}, "failureThreshold": 2, "terminationGracePeriodSeconds": 3
        }});
        let mut probes = Probes::of(&container, t0).unwrap();
        assert_eq!(probes.record(Kind::Startup, t0, fail()), Outcome::Unchanged);
        assert_eq!(
            probes.record(Kind::Startup, t0 + secs(10), Err("exit code 1".into())),
            Outcome::Kill {
                message: "Startup probe failed: exit code 1".into(),
                grace: Some(secs(3))
            }
        );
    }
}
