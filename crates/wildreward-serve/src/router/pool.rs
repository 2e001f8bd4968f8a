//! The router's view of its workers: where each is, whether it is healthy, how much it has in flight;
//! worker selection (round-robin or least-in-flight, healthy workers only) and the active health
//! checks that take a dead worker out and put it back once its `/health` says 200.

use crate::config::Policy;
use crate::metrics::RouterMetrics;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use wildreward_types::exit::BadInput;

/// Health checks in a row that must time out before a worker is taken out.
const SLOW_CHECKS_TO_FAIL: u32 = 3;

/// One worker as the router sees it.
#[derive(Default)]
pub struct WorkerSlot {
    url: RwLock<Option<String>>,
    healthy: AtomicBool,
    in_flight: AtomicUsize,
    served: AtomicU64,
    failures: AtomicU64,
    pid: AtomicU32,
    restarts: AtomicU64,
    slow_checks: AtomicU32,
    ever_healthy: AtomicBool,
}

impl WorkerSlot {
    /// Its base URL (`None` while a spawned worker has not said where it listens).
    pub fn url(&self) -> Option<String> {
        self.url.read().ok().and_then(|u| u.clone())
    }

    /// Whether requests may go to it.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Requests on it now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Marks a request as on this worker until the guard is dropped, on every path (verl's naive
    /// router only released its counts on success, so they drifted upwards).
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// Counts a request it answered.
    pub fn count_served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a try on it that failed.
    pub fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Releases a worker's in-flight count when dropped.
pub struct InFlightGuard<'a>(&'a WorkerSlot);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// All workers behind one router.
pub struct Pool {
    slots: Vec<WorkerSlot>,
    policy: Policy,
    next: AtomicUsize,
    metrics: RouterMetrics,
}

/// A worker URL as given (`http://host:port`, optionally with the reference's `/get_reward`
/// suffix) reduced to its base.
pub fn worker_base_url(given: &str) -> Result<String, BadInput> {
    let trimmed = given.trim();
    let base = trimmed
        .strip_suffix("/get_reward")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    let url =
        reqwest::Url::parse(base).map_err(|e| BadInput(format!("--worker-urls {given:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(BadInput(format!(
            "--worker-urls {given:?}: expected http://host:port"
        )));
    }
    Ok(base.to_string())
}

impl Pool {
    /// A pool over workers started elsewhere (unhealthy until their first health check).
    pub fn new(urls: &[String], policy: Policy, metrics: RouterMetrics) -> Result<Self, BadInput> {
        if urls.is_empty() {
            return Err(BadInput("the router needs at least one worker URL".into()));
        }
        let slots = urls
            .iter()
            .map(|u| {
                Ok(WorkerSlot {
                    url: RwLock::new(Some(worker_base_url(u)?)),
                    ..WorkerSlot::default()
                })
            })
            .collect::<Result<Vec<_>, BadInput>>()?;
        Ok(Self::with_slots(slots, policy, metrics))
    }

    /// A pool of `n` workers the fleet will spawn (their URLs are set once they listen).
    pub fn spawned(n: usize, policy: Policy, metrics: RouterMetrics) -> Self {
        Self::with_slots(
            (0..n).map(|_| WorkerSlot::default()).collect(),
            policy,
            metrics,
        )
    }

    fn with_slots(slots: Vec<WorkerSlot>, policy: Policy, metrics: RouterMetrics) -> Self {
        Self {
            slots,
            policy,
            next: AtomicUsize::new(0),
            metrics,
        }
    }

    /// The workers.
    pub fn slots(&self) -> &[WorkerSlot] {
        &self.slots
    }

    /// The router's metrics.
    pub fn metrics(&self) -> &RouterMetrics {
        &self.metrics
    }

    /// The selection policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Workers healthy now.
    pub fn healthy_count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_healthy()).count()
    }

    /// Workers healthy now with nothing of this router's in flight: the ones a split batch can
    /// spread over without waiting behind other requests.
    pub fn idle_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.is_healthy() && s.in_flight() == 0)
            .count()
    }

    /// The next worker for a request: healthy, not in `tried`, by the policy. Ties (and the
    /// round-robin order) rotate, so equal workers share the load.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let mut candidates = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.slots[i].is_healthy() && !tried.contains(&i));
        match self.policy {
            Policy::RoundRobin => candidates.next(),
            Policy::LeastInFlight => candidates.min_by_key(|&i| self.slots[i].in_flight()),
        }
    }

    /// Records a health verdict, logging changes.
    pub fn set_healthy(&self, i: usize, healthy: bool, why: &str) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let was = slot.healthy.swap(healthy, Ordering::SeqCst);
        if healthy {
            slot.ever_healthy.store(true, Ordering::SeqCst);
        }
        if was != healthy {
            let url = slot.url().unwrap_or_else(|| format!("worker {i}"));
            if healthy {
                eprintln!("wildreward router: {url} is up");
            } else {
                eprintln!("wildreward router: {url} is down ({why})");
            }
        }
        self.metrics
            .healthy_workers
            .set(self.healthy_count() as i64);
    }

    /// Whether worker `i` has ever passed a health check (a worker that exits with bad settings
    /// before that will not do better on a restart).
    pub fn was_ever_healthy(&self, i: usize) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| s.ever_healthy.load(Ordering::SeqCst))
    }

    /// Where spawned worker `i` now listens (after a (re)start).
    pub fn set_url(&self, i: usize, url: Option<String>) {
        if let Some(slot) = self.slots.get(i) {
            if let Ok(mut u) = slot.url.write() {
                *u = url;
            }
        }
    }

    /// The process id of spawned worker `i` (0 when it is not running).
    pub fn set_pid(&self, i: usize, pid: u32) {
        if let Some(slot) = self.slots.get(i) {
            slot.pid.store(pid, Ordering::SeqCst);
        }
    }

    /// Counts a restart of spawned worker `i`.
    pub fn count_restart(&self, i: usize) {
        if let Some(slot) = self.slots.get(i) {
            slot.restarts.fetch_add(1, Ordering::SeqCst);
            self.metrics
                .restarts
                .with_label_values(&[&i.to_string()])
                .inc();
        }
    }

    /// Each worker's state, for the router's info page.
    pub fn describe(&self) -> serde_json::Value {
        let workers: Vec<serde_json::Value> = self
            .slots
            .iter()
            .map(|s| {
                json!({
                    "url": s.url(),
                    "healthy": s.is_healthy(),
                    "in_flight": s.in_flight(),
                    "served": s.served.load(Ordering::Relaxed),
                    "failures": s.failures.load(Ordering::Relaxed),
                    "pid": match s.pid.load(Ordering::SeqCst) { 0 => None, p => Some(p) },
                    "restarts": s.restarts.load(Ordering::SeqCst),
                })
            })
            .collect();
        json!(workers)
    }

    /// Polls every worker's `/health` each `interval`, forever (abort the task to stop it).
    pub async fn health_checks(self: Arc<Self>, client: reqwest::Client, interval: Duration) {
        let timeout = interval.max(Duration::from_secs(2));
        loop {
            let mut checks = tokio::task::JoinSet::new();
            for i in 0..self.slots.len() {
                let pool = self.clone();
                let client = client.clone();
                checks.spawn(async move {
                    let Some(url) = pool.slots[i].url() else {
                        pool.set_healthy(i, false, "not listening yet");
                        return;
                    };
                    let verdict = client
                        .get(format!("{url}/health"))
                        .timeout(timeout)
                        .send()
                        .await;
                    let slot = &pool.slots[i];
                    match verdict {
                        Ok(r) if r.status().is_success() => {
                            slot.slow_checks.store(0, Ordering::SeqCst);
                            pool.set_healthy(i, true, "");
                        }
                        Ok(r) => {
                            pool.set_healthy(i, false, &format!("/health says {}", r.status()))
                        }
                        // A worker busy on a shared CPU may answer late: only repeated timeouts
                        // take it out (a refused connection does at once).
                        Err(e) if e.is_timeout() => {
                            if slot.slow_checks.fetch_add(1, Ordering::SeqCst) + 1
                                >= SLOW_CHECKS_TO_FAIL
                            {
                                pool.set_healthy(i, false, "/health timed out repeatedly");
                            }
                        }
                        Err(e) => pool.set_healthy(i, false, &e.to_string()),
                    }
                });
            }
            while checks.join_next().await.is_some() {}
            tokio::time::sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, policy: Policy) -> Pool {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", 8004 + i))
            .collect();
        Pool::new(&urls, policy, RouterMetrics::new().unwrap()).unwrap()
    }

    #[test]
    fn round_robin_visits_healthy_workers_in_turn_and_skips_tried_ones() {
        let p = pool(3, Policy::RoundRobin);
        assert_eq!(p.pick(&[]), None, "nobody is healthy before a health check");
        for i in 0..3 {
            p.set_healthy(i, true, "");
        }
        p.set_healthy(1, false, "test");
        let picks: Vec<usize> = (0..4).map(|_| p.pick(&[]).unwrap()).collect();
        assert!(picks.iter().all(|&i| i != 1), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&2), "{picks:?}");
        assert_eq!(p.pick(&[0]), Some(2));
        assert_eq!(p.pick(&[0, 2]), None);
    }

    #[test]
    fn least_in_flight_prefers_the_idle_worker_and_guards_release_counts() {
        let p = pool(2, Policy::LeastInFlight);
        p.set_healthy(0, true, "");
        p.set_healthy(1, true, "");
        let busy = p.slots()[0].enter();
        for _ in 0..4 {
            assert_eq!(p.pick(&[]), Some(1));
        }
        drop(busy);
        assert_eq!(p.slots()[0].in_flight(), 0);
    }

    #[test]
    fn worker_urls_accept_the_reference_form_and_refuse_junk() {
        assert_eq!(
            worker_base_url("http://localhost:8004/get_reward").unwrap(),
            "http://localhost:8004"
        );
        assert_eq!(worker_base_url("http://h:1/").unwrap(), "http://h:1");
        assert!(worker_base_url("localhost:8004").is_err());
        assert!(worker_base_url("ftp://h:1").is_err());
    }
}
