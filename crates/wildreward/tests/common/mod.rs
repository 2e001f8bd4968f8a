//! Helpers of the `wildreward serve` process tests: the real SmolLM2 GGUF, a plain HTTP/1.1
//! client over a TCP socket, spawning `wildreward` and reading the URL it prints, waiting, signals.
#![allow(clippy::unwrap_used, dead_code)] // test code: a failed unwrap is a failed test

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn gguf() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    wildreward_model::assets::asset(&root, wildreward_model::assets::SMOLLM2_GGUF)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A response: status, lower-cased headers, body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Plain HTTP/1.1 over a TCP socket, one connection per request (what the simplest client does).
pub fn http(method: &str, url: &str, body: Option<&str>) -> std::io::Result<Reply> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

pub fn get(url: &str) -> Value {
    http("GET", url, None).unwrap().json()
}

/// Starts `wildreward <args>` and returns it with the URL it printed.
pub fn spawn(args: &[&str], log: &str) -> (Child, String) {
    spawn_with_env(args, &[], log)
}

/// [`spawn`] with extra environment variables.
pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)], log: &str) -> (Child, String) {
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(log);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wildreward"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split("listening on ")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {line:?}; see {}", log.display()))
        .trim()
        .to_string();
    (child, url)
}

pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

pub fn rewards(reply: &Reply) -> Vec<f64> {
    reply.json()["rewards"]
        .as_array()
        .unwrap_or_else(|| panic!("no rewards: {}", String::from_utf8_lossy(&reply.body)))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}
