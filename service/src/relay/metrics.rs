//! The relay's `/metrics` (Prometheus text format), per sink: lag, events in flight, attempts,
//! failures, dead letters, events delivered, and the time from an event's transaction to its
//! delivery.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0,
];

#[derive(Default)]
pub struct SinkMetrics {
    lag: AtomicI64,
    in_flight: AtomicI64,
    attempts: AtomicU64,
    failures: AtomicU64,
    dead: AtomicU64,
    too_large: AtomicU64,
    delivered: AtomicU64,
    latency: Mutex<([u64; BUCKETS.len()], f64)>,
    /// Wall time spent in each phase of a batch (poll, publish, broker_ack, db_ack): where a
    /// sink's time goes.
    phases: Mutex<BTreeMap<&'static str, f64>>,
}

impl SinkMetrics {
    pub fn set_lag(&self, n: i64) {
        self.lag.store(n, Ordering::Relaxed);
    }
    pub fn in_flight_add(&self, n: i64) {
        self.in_flight.fetch_add(n, Ordering::Relaxed);
    }
    pub fn attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }
    pub fn failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
    /// `seconds` spent in `phase` of a batch.
    pub fn phase(&self, phase: &'static str, seconds: f64) {
        *self
            .phases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(phase)
            .or_default() += seconds;
    }
    /// An event too large for the sink, sent as a stub naming it.
    pub fn too_large(&self) {
        self.too_large.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dead_letter(&self) {
        self.dead.fetch_add(1, Ordering::Relaxed);
    }
    /// An event delivered `seconds` after its transaction began.
    pub fn delivered(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                l.0[i] += 1;
            }
        }
        l.1 += seconds;
    }
}

#[derive(Default)]
pub struct RelayMetrics {
    sinks: Mutex<BTreeMap<String, Arc<SinkMetrics>>>,
    held: AtomicU64,
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl RelayMetrics {
    pub fn sink(&self, name: &str) -> Arc<SinkMetrics> {
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    pub fn set_sinks(&self, n: usize) {
        self.held.store(n as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let sinks: Vec<(String, Arc<SinkMetrics>)> = self
            .sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP steward_relay_sinks_held Sinks this relay holds a lease on.\n# TYPE steward_relay_sinks_held gauge\nsteward_relay_sinks_held {}",
            self.held.load(Ordering::Relaxed)
        );
        type Get = fn(&SinkMetrics) -> String;
        let series: [(&str, &str, &str, Get); 7] = [
            (
                "steward_relay_lag_events",
                "gauge",
                "Events committed that the sink has not taken yet.",
                |m| m.lag.load(Ordering::Relaxed).to_string(),
            ),
            (
                "steward_relay_in_flight_events",
                "gauge",
                "Events sent and not yet acknowledged.",
                |m| m.in_flight.load(Ordering::Relaxed).to_string(),
            ),
            (
                "steward_relay_attempts_total",
                "counter",
                "Delivery attempts (publishes, webhook requests).",
                |m| m.attempts.load(Ordering::Relaxed).to_string(),
            ),
            (
                "steward_relay_failures_total",
                "counter",
                "Attempts that failed (and will be made again, or were dead letters).",
                |m| m.failures.load(Ordering::Relaxed).to_string(),
            ),
            (
                "steward_relay_dead_letters_total",
                "counter",
                "Events given up on after the retry budget.",
                |m| m.dead.load(Ordering::Relaxed).to_string(),
            ),
            (
                "steward_relay_delivered_total",
                "counter",
                "Events delivered.",
                |m| m.delivered.load(Ordering::Relaxed).to_string(),
            ),
            (
                "steward_relay_too_large_total",
                "counter",
                "Events larger than the sink takes, sent as a stub naming them.",
                |m| m.too_large.load(Ordering::Relaxed).to_string(),
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (sink, m) in &sinks {
                let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", label(sink), get(m));
            }
        }
        let name = "steward_relay_phase_seconds_total";
        let _ = writeln!(
            out,
            "# HELP {name} Wall time a sink spent in each phase of its batches (poll, publish, broker_ack, db_ack).\n# TYPE {name} counter"
        );
        for (sink, m) in &sinks {
            let p = m.phases.lock().unwrap_or_else(|p| p.into_inner());
            for (phase, secs) in p.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{sink=\"{}\",phase=\"{phase}\"}} {secs}",
                    label(sink)
                );
            }
        }
        let name = "steward_relay_delivery_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From the event's transaction to its delivery (broker ack, 2xx).\n# TYPE {name} histogram"
        );
        for (sink, m) in &sinks {
            let l = m.latency.lock().unwrap_or_else(|p| p.into_inner());
            let s = label(sink);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "{name}_bucket{{sink=\"{s}\",le=\"{b}\"}} {}", l.0[i]);
            }
            let n = m.delivered.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{sink=\"{s}\",le=\"+Inf\"}} {n}");
            let _ = writeln!(out, "{name}_sum{{sink=\"{s}\"}} {}", l.1);
            let _ = writeln!(out, "{name}_count{{sink=\"{s}\"}} {n}");
        }
        out
    }
}
