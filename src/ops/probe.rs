//! The one probe engine: `doctor`, `instance list` and `instance status` read live facts
//! (health endpoints, sockets, files, commands) through it. Probes run concurrently, at
//! most `parallel` at once, each against its own deadline: a probe that hangs (an instance
//! that accepts TCP and never answers) costs its own timeout, once, and never delays the
//! probes beside it beyond that.
//!
//! Each probe runs on its own thread. A probe past its deadline is reported as
//! [`Outcome::TimedOut`] and its thread is abandoned: it keeps running until its own I/O
//! timeout ends it (or the process exits), and its late answer is dropped. That is why a
//! probe must own what it touches (`'static`) and must not hold locks or change state:
//! probes only read.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One read to make: a name for the report, how long it may take, and the work.
pub struct Probe<T> {
    pub id: String,
    pub timeout: Duration,
    pub run: Box<dyn FnOnce() -> T + Send + 'static>,
}

impl<T> std::fmt::Debug for Probe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<T> Probe<T> {
    pub fn new(
        id: impl Into<String>,
        timeout: Duration,
        run: impl FnOnce() -> T + Send + 'static,
    ) -> Self {
        Probe {
            id: id.into(),
            timeout,
            run: Box::new(run),
        }
    }
}

/// How one probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// It answered within its deadline.
    Done { value: T, elapsed: Duration },
    /// It did not answer within `after` (its timeout); its thread was abandoned.
    TimedOut { after: Duration },
    /// It panicked: a bug in the probe, reported rather than taking the command down.
    Panicked(String),
}

impl<T> Outcome<T> {
    /// The value, when the probe answered.
    pub fn value(self) -> Option<T> {
        match self {
            Outcome::Done { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// Run every probe, at most `parallel` at once (at least one), and return their outcomes
/// in the order given. The wall time is bounded by the probes' own timeouts: with
/// `parallel >= probes.len()` it is at most the longest single timeout.
pub fn run_all<T: Send + 'static>(probes: Vec<Probe<T>>, parallel: usize) -> Vec<Outcome<T>> {
    let parallel = parallel.max(1);
    let n = probes.len();
    let mut results: Vec<Option<Outcome<T>>> = (0..n).map(|_| None).collect();
    let mut queue: VecDeque<(usize, Probe<T>)> = probes.into_iter().enumerate().collect();
    let (tx, rx) = mpsc::channel::<(usize, Result<T, String>, Duration)>();
    // Running probes: index, start, deadline.
    let mut running: Vec<(usize, Instant, Duration)> = Vec::new();
    let mut left = n;
    while left > 0 {
        while running.len() < parallel {
            let Some((i, p)) = queue.pop_front() else {
                break;
            };
            let tx = tx.clone();
            let start = Instant::now();
            let spawned = std::thread::Builder::new()
                .name(format!("probe-{i}"))
                .spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(p.run))
                        .map_err(panic_text);
                    // The receiver is gone when this probe was abandoned: nothing to do.
                    let _ = tx.send((i, r, start.elapsed()));
                });
            match spawned {
                Ok(_) => running.push((i, start, p.timeout)),
                Err(e) => {
                    results[i] = Some(Outcome::Panicked(format!("could not start: {e}")));
                    left -= 1;
                }
            }
        }
        if running.is_empty() {
            // Every probe has ended or could not start.
            if queue.is_empty() {
                break;
            }
            continue;
        }
        let now = Instant::now();
        let next_deadline = running
            .iter()
            .map(|(_, s, t)| (*s + *t).saturating_duration_since(now))
            .min()
            .unwrap_or_default();
        match rx.recv_timeout(next_deadline) {
            Ok((i, r, elapsed)) => {
                // A late answer from an abandoned probe is already TimedOut: keep that.
                if let Some(pos) = running.iter().position(|(j, ..)| *j == i) {
                    running.swap_remove(pos);
                    results[i] = Some(match r {
                        Ok(value) => Outcome::Done { value, elapsed },
                        Err(msg) => Outcome::Panicked(msg),
                    });
                    left -= 1;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                running.retain(|(i, s, t)| {
                    if now >= *s + *t {
                        results[*i] = Some(Outcome::TimedOut { after: *t });
                        left -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
            // Unreachable while `tx` lives in this frame; treat as all done.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Outcome::Panicked("no result".into())))
        .collect()
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a probe panicked".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn outcomes_keep_the_order_given() {
        let probes = (0..20u64)
            .map(|i| {
                Probe::new(format!("p{i}"), ms(2000), move || {
                    std::thread::sleep(ms(20 - i));
                    i
                })
            })
            .collect();
        let out: Vec<u64> = run_all(probes, 8)
            .into_iter()
            .map(|o| o.value().expect("answered"))
            .collect();
        assert_eq!(out, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_hung_probe_costs_its_own_timeout_once() {
        let mut probes = vec![Probe::new("hung", ms(300), || {
            std::thread::sleep(ms(5000));
            0
        })];
        probes.extend((1..10).map(|i| Probe::new(format!("p{i}"), ms(300), move || i)));
        let t = Instant::now();
        let out = run_all(probes, 4);
        let wall = t.elapsed();
        assert_eq!(out[0], Outcome::TimedOut { after: ms(300) });
        assert!(out[1..].iter().all(|o| matches!(o, Outcome::Done { .. })));
        // Bounded by one timeout (plus scheduling), not five seconds nor ten timeouts.
        assert!(wall < ms(2500), "took {wall:?}");
    }

    #[test]
    fn never_more_than_parallel_at_once() {
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let probes = (0..24)
            .map(|i| {
                let (now, peak) = (now.clone(), peak.clone());
                Probe::new(format!("p{i}"), ms(5000), move || {
                    let c = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(c, Ordering::SeqCst);
                    std::thread::sleep(ms(10));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        run_all(probes, 3);
        let p = peak.load(Ordering::SeqCst);
        assert!((1..=3).contains(&p), "peak {p}");
    }

    #[test]
    fn a_panicking_probe_is_reported_not_fatal() {
        let probes = vec![
            Probe::new("bad", ms(1000), || -> u8 { panic!("boom") }),
            Probe::new("good", ms(1000), || 7u8),
        ];
        let out = run_all(probes, 2);
        assert_eq!(out[0], Outcome::Panicked("boom".into()));
        assert_eq!(out[1].clone().value(), Some(7));
    }

    #[test]
    fn no_probes_no_work() {
        assert!(run_all::<u8>(Vec::new(), 8).is_empty());
    }
}
