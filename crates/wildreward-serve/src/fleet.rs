//! `wildreward serve --workers N`: spawns N worker processes and a router in front of them, and
//! keeps the workers running: one that dies is started again (with a growing pause if it keeps
//! dying) and rejoins once healthy. Workers run in their own process group (a Ctrl-C reaches only
//! the fleet, which drains the router before stopping them) and stop when their standard input
//! closes, which also happens if the fleet itself is killed.

use crate::config::RouterConfig;
use crate::router::{self, pool::Pool};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use wildreward_types::exit::{BadInput, EXIT_BAD_INPUT};

/// How to start worker `i`: the program and its arguments (the binary knows its own command line).
pub struct WorkerLauncher {
    /// The program (the `wildreward` binary).
    pub program: PathBuf,
    /// Arguments of worker `i`; they must make it print `listening on <url>` on stdout and stop
    /// at end of stdin.
    pub args: Box<dyn Fn(usize) -> Vec<String> + Send + Sync>,
    /// Extra environment of every worker.
    pub env: Vec<(String, String)>,
}

/// What a worker's stdout line announcing its address starts with.
pub const LISTENING: &str = "listening on ";

/// Runs the fleet until `shutdown`: spawns the workers, serves the router on `listener`, drains it,
/// then stops the workers. Fails if a worker exits with the bad-input status before it ever
/// started (a bad model path), rather than restarting it forever.
pub async fn run(
    launcher: WorkerLauncher,
    workers: usize,
    listener: TcpListener,
    cfg: RouterConfig,
    pool: Arc<Pool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if workers == 0 || pool.slots().len() != workers {
        return Err(BadInput("--workers must be at least 1".into()).into());
    }
    let launcher = Arc::new(launcher);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<anyhow::Error>(workers);
    let mut supervisors = tokio::task::JoinSet::new();
    for i in 0..workers {
        supervisors.spawn(supervise(
            i,
            launcher.clone(),
            pool.clone(),
            stop_rx.clone(),
            fatal_tx.clone(),
        ));
    }
    drop(fatal_tx);
    let (fatal_seen_tx, fatal_seen_rx) = tokio::sync::oneshot::channel();
    let router_stop = async move {
        tokio::select! {
            _ = shutdown => {}
            Some(e) = fatal_rx.recv() => { let _ = fatal_seen_tx.send(e); }
        }
    };
    let served = router::serve(listener, cfg, pool, router_stop).await;
    let _ = stop_tx.send(true);
    while supervisors.join_next().await.is_some() {}
    served?;
    match fatal_seen_rx.await {
        Ok(e) => Err(e),
        Err(_) => Ok(()),
    }
}

/// Keeps worker `i` running until the fleet stops.
async fn supervise(
    i: usize,
    launcher: Arc<WorkerLauncher>,
    pool: Arc<Pool>,
    mut stop: watch::Receiver<bool>,
    fatal: mpsc::Sender<anyhow::Error>,
) {
    let mut pause = Duration::from_millis(250);
    let mut ever_listened = false;
    let mut starts = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        if starts > 0 {
            pool.count_restart(i);
        }
        starts += 1;
        let mut child = match spawn_worker(&launcher, i) {
            Ok(c) => c,
            Err(e) => {
                let _ = fatal
                    .send(anyhow::anyhow!("cannot start worker {i}: {e}"))
                    .await;
                return;
            }
        };
        pool.set_pid(i, child.id().unwrap_or(0));
        // Held here: `Child::wait` would close it, and a closed stdin tells the worker to stop.
        let stdin = child.stdin.take();
        let (url_tx, mut url_rx) = mpsc::channel::<String>(1);
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(url) = line.split(LISTENING).nth(1) {
                        let _ = url_tx.send(url.trim().to_string()).await;
                    }
                }
            });
        }
        let started = Instant::now();
        let status = loop {
            tokio::select! {
                status = child.wait() => break Some(status),
                Some(url) = url_rx.recv() => {
                    ever_listened = true;
                    pool.set_url(i, Some(url));
                }
                _ = stop.changed() => break None,
            }
        };
        let Some(status) = status else {
            stop_worker(&mut child, stdin).await;
            pool.set_pid(i, 0);
            return;
        };
        pool.set_pid(i, 0);
        pool.set_healthy(i, false, "the process exited");
        pool.set_url(i, None);
        let bad_input = matches!(&status, Ok(s) if s.code() == Some(i32::from(EXIT_BAD_INPUT)));
        let status = describe(status);
        // Bad settings (exit 65) before the worker ever answered a health check — a refused
        // untrained head, a bad flag: restarting would repeat it, so the fleet stops with it.
        if bad_input && !(ever_listened && pool.was_ever_healthy(i)) {
            let _ = fatal
                .send(
                    BadInput(format!(
                        "worker {i} refused its settings ({status}); see its error above"
                    ))
                    .into(),
                )
                .await;
            return;
        }
        eprintln!("wildreward serve: worker {i} exited ({status}); restarting in {pause:?}");
        if started.elapsed() > Duration::from_secs(30) {
            pause = Duration::from_millis(250);
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

fn spawn_worker(launcher: &WorkerLauncher, i: usize) -> std::io::Result<Child> {
    let mut command = Command::new(&launcher.program);
    command
        .args((launcher.args)(i))
        .envs(launcher.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    command.spawn()
}

/// Closes the worker's stdin (it drains and exits), and kills it if it has not within 30 s.
async fn stop_worker(child: &mut Child, stdin: Option<tokio::process::ChildStdin>) {
    drop(stdin);
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    }
}
