//! `/metrics` in the Prometheus text format: request durations by route, method and status, the
//! pools of the databases opened so far, and transactions that rolled back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::db::Databases;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let h = m
            .entry((route.to_string(), method.to_string(), status))
            .or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn render(&self, dbs: &Databases) -> String {
        let mut out = String::new();
        out.push_str("# HELP steward_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE steward_http_request_duration_seconds histogram\n");
        {
            let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            for ((route, method, status), h) in m.iter() {
                let l = format!(
                    "route=\"{}\",method=\"{}\",status=\"{status}\"",
                    label(route),
                    label(method)
                );
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "steward_http_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "steward_http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "steward_http_request_duration_seconds_sum{{{l}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "steward_http_request_duration_seconds_count{{{l}}} {}",
                    h.count
                );
            }
        }
        let gauges = [
            (
                "steward_pool_max_connections",
                "Connections a database's pool may open.",
            ),
            (
                "steward_pool_connections",
                "Connections a database's pool holds.",
            ),
            (
                "steward_pool_idle_connections",
                "Connections idle in a database's pool.",
            ),
            (
                "steward_pool_waiting_requests",
                "Requests waiting for a connection.",
            ),
        ];
        let opened = dbs.opened();
        for (i, (name, help)) in gauges.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for db in &opened {
                let s = db.pool.status();
                let v = match i {
                    0 => s.max_size,
                    1 => s.size,
                    2 => s.available,
                    _ => s.waiting,
                };
                let _ = writeln!(out, "{name}{{database=\"{}\"}} {v}", label(&db.label));
            }
        }
        out.push_str(
            "# HELP steward_transaction_rollbacks_total Request transactions that rolled back.\n",
        );
        out.push_str("# TYPE steward_transaction_rollbacks_total counter\n");
        let _ = writeln!(
            out,
            "steward_transaction_rollbacks_total {}",
            dbs.rollbacks.load(std::sync::atomic::Ordering::Relaxed)
        );
        out
    }
}
