//! `wildfb sample-users`: a training set of exactly N instances drawn from K users only, so that "same
//! data size, more users" is one loop over K.
//!
//! The input is a labelled set (`train.jsonl` as `wildfb collect` writes it: each line an `id`, a
//! training `label` 1..4 and its user, `user` / `user_key`; a file without user fields reads as keyed
//! by conversation, and the report says so). The draw, for a seed S:
//!
//! 1. the users with at least `--min-per-user` instances are put in one order fixed by S (a keyed
//!    hash of the user), and the first K are chosen, so for one seed the users of a smaller K are
//!    among those of a larger K;
//! 2. each chosen user's instances are put in an order fixed by S (a keyed hash of the id), and the
//!    draw goes round-robin over the chosen users, one instance each per round, a user with no
//!    instance left dropping out, until N are drawn. So every chosen user gives at least one (N ≥ K),
//!    and no user gives more than one above anyone who still has instances left;
//! 3. the N lines are written byte for byte as read, in a seeded shuffled order.
//!
//! When the K chosen users hold fewer than N instances the command fails and says by how much, and
//! whether any K users of the file would do. The same input, K, N and seed give the same bytes; the
//! input's line order does not matter.

use crate::collect::io::{write_json_atomic, AtomicWriter};
use crate::collect::users::{UserCounter, UserKey, UserStats, UserTag};
use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use wildreward_types::TrainingLabel;

/// Everything one `wildfb sample-users` needs.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// The labelled JSONL to draw from.
    pub input: PathBuf,
    /// The JSONL to write.
    pub output: PathBuf,
    /// Where the report goes (default: `<output>.report.json`).
    pub report: Option<PathBuf>,
    /// K: how many users to draw from.
    pub users: usize,
    /// N: how many instances to write.
    pub size: usize,
    /// The seed of both draws.
    pub seed: u64,
    /// Only users with at least this many instances can be chosen.
    pub min_per_user: usize,
}

/// One chosen user in the report.
#[derive(Debug, Clone, Serialize)]
pub struct DrawnUser {
    /// The user's identifier.
    pub user: String,
    /// What the identifier is (`hashed_ip` or `conversation`).
    pub user_key: UserKey,
    /// Instances the user has in the input.
    pub available: u64,
    /// Instances drawn from the user.
    pub drawn: u64,
}

/// What a draw did: printed as JSON and written to the report file.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    /// The input file.
    pub input: PathBuf,
    /// The file written.
    pub output: PathBuf,
    /// The seed.
    pub seed: u64,
    /// N asked for.
    pub size: u64,
    /// Instances written (always N).
    pub written: u64,
    /// K asked for.
    pub users_requested: u64,
    /// Users that gave at least one instance (always K).
    pub users_used: u64,
    /// Distinct users in the input.
    pub users_in_input: u64,
    /// Users with at least `min_per_user` instances (those that could be chosen).
    pub users_eligible: u64,
    /// The `--min-per-user` threshold.
    pub min_per_user: u64,
    /// Records in the input.
    pub instances_in_input: u64,
    /// Instances the K chosen users hold in the input.
    pub instances_held_by_chosen: u64,
    /// The per-user statistics of the set written (key used, instances per user, label mix, top-k
    /// shares).
    pub drawn: UserStats,
    /// Each chosen user, in the order they were chosen.
    pub per_user: Vec<DrawnUser>,
}

/// A record of the input, located by byte range.
struct Rec {
    order: [u8; 32],
    line: usize,
    offset: u64,
    len: usize,
    label: TrainingLabel,
}

struct User {
    key: UserKey,
    name: String,
    recs: Vec<usize>,
}

fn keyed(seed: u64, domain: &str, value: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(domain.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    h.finalize().into()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The fields the draw needs from one line, each error naming the file, line and field.
fn parse_line(path: &Path, line: usize, bytes: &[u8]) -> Result<(String, TrainingLabel, UserTag)> {
    let field_err = |field: &str, message: String| Error::Field {
        path: path.to_path_buf(),
        line,
        field: field.to_string(),
        message,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        line,
        column: e.column(),
        message: e.to_string(),
    })?;
    let Value::Object(obj) = value else {
        return Err(Error::Json {
            path: path.to_path_buf(),
            line,
            column: 1,
            message: format!(
                "expected a JSON object (a labelled record), found {}",
                type_name(&value)
            ),
        });
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(field_err("id", "is empty".into())),
        Some(v) => {
            return Err(field_err(
                "id",
                format!("expected a string, found {}", type_name(v)),
            ))
        }
        None => return Err(field_err("id", "missing".into())),
    };
    let label = match obj.get("label") {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("expected an integer 1..4, found {}", type_name(v)))
            .and_then(|n| {
                TrainingLabel::try_from(n)
                    .map_err(|_| format!("expected a training label 1..4, found {n}"))
            })
            .map_err(|m| field_err("label", m))?,
        None => return Err(field_err("label", "missing".into())),
    };
    let user = match obj.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::String(_)) => return Err(field_err("user", "is empty".into())),
        Some(v) => {
            return Err(field_err(
                "user",
                format!("expected a string, found {}", type_name(v)),
            ))
        }
    };
    let user_key = match obj.get("user_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(UserKey::parse(s).ok_or_else(|| {
            field_err(
                "user_key",
                format!("expected \"hashed_ip\" or \"conversation\", found {s:?}"),
            )
        })?),
        Some(v) => {
            return Err(field_err(
                "user_key",
                format!("expected a string, found {}", type_name(v)),
            ))
        }
    };
    Ok((id, label, UserTag { user, user_key }))
}

fn fail(opts: &SampleOptions, message: String) -> Error {
    Error::Sample {
        path: opts.input.clone(),
        message,
    }
}

/// Reads the input: every record located, grouped by user (users in first-seen order).
fn read_users(opts: &SampleOptions) -> Result<(Vec<Rec>, Vec<User>)> {
    let path = &opts.input;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut recs: Vec<Rec> = Vec::new();
    let mut users: Vec<User> = Vec::new();
    let mut index: HashMap<(UserKey, String), usize> = HashMap::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut buf = Vec::new();
    let (mut offset, mut line) = (0u64, 0usize);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        line += 1;
        let start = offset;
        offset += n as u64;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (id, label, tag) = parse_line(path, line, &buf)?;
        let (user, key) = tag.resolve_at(&id, path, line)?;
        let identity = (key, user.to_string());
        let u = match index.get(&identity) {
            Some(&u) => u,
            None => {
                users.push(User {
                    key,
                    name: identity.1.clone(),
                    recs: Vec::new(),
                });
                index.insert(identity, users.len() - 1);
                users.len() - 1
            }
        };
        if let Some(first) = ids.get(&id) {
            return Err(Error::Field {
                path: path.clone(),
                line,
                field: "id".into(),
                message: format!("{id} is already on line {first}; each instance must be once"),
            });
        }
        users[u].recs.push(recs.len());
        recs.push(Rec {
            order: keyed(opts.seed, "instance", &id),
            line,
            offset: start,
            len: n,
            label,
        });
        ids.insert(id, line);
    }
    Ok((recs, users))
}

/// Draws N instances from K users of `opts.input` and writes them and the report.
pub fn run(opts: &SampleOptions) -> Result<SampleReport> {
    let (k, n) = (opts.users, opts.size);
    if k == 0 || n == 0 || opts.min_per_user == 0 {
        return Err(fail(
            opts,
            format!(
                "--users ({k}), --size ({n}) and --min-per-user ({}) must be at least 1",
                opts.min_per_user
            ),
        ));
    }
    if n < k {
        return Err(fail(
            opts,
            format!("--size {n} is smaller than --users {k}: some chosen users would give nothing"),
        ));
    }
    let (recs, mut users) = read_users(opts)?;
    let users_in_input = users.len();
    let key_of_input = {
        let mut c = UserCounter::default();
        for u in &users {
            for &r in &u.recs {
                c.add(&u.name, u.key, recs[r].label);
            }
        }
        c.finish().key
    };
    users.retain(|u| u.recs.len() >= opts.min_per_user);
    if users.len() < k {
        return Err(fail(
            opts,
            format!(
                "--users {k} asked, but the file has only {} users with at least {} instances \
                 ({users_in_input} users in all, {} records, user key: {key_of_input})",
                users.len(),
                opts.min_per_user,
                recs.len()
            ),
        ));
    }
    let eligible = users.len();
    let most_k_hold: usize = {
        let mut sizes: Vec<usize> = users.iter().map(|u| u.recs.len()).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        sizes.iter().take(k).sum()
    };
    users
        .sort_by_cached_key(|u| keyed(opts.seed, "user", &format!("{}\0{}", u.key.name(), u.name)));
    users.truncate(k);
    let held: usize = users.iter().map(|u| u.recs.len()).sum();
    if held < n {
        return Err(shortfall(opts, held, most_k_hold, eligible));
    }
    for u in &mut users {
        u.recs.sort_by_key(|&r| (recs[r].order, recs[r].line));
    }
    let mut drawn_per_user = vec![0usize; users.len()];
    let mut drawn: Vec<usize> = Vec::with_capacity(n);
    'rounds: loop {
        for (i, u) in users.iter().enumerate() {
            if drawn.len() == n {
                break 'rounds;
            }
            if let Some(&r) = u.recs.get(drawn_per_user[i]) {
                drawn.push(r);
                drawn_per_user[i] += 1;
            }
        }
    }
    let mut counter = UserCounter::default();
    for (u, &d) in users.iter().zip(&drawn_per_user) {
        for &r in &u.recs[..d] {
            counter.add(&u.name, u.key, recs[r].label);
        }
    }
    drawn.sort_by_key(|&r| (recs[r].order, recs[r].line));
    let written = write_lines(opts, &recs, &drawn)?;
    let report = SampleReport {
        input: opts.input.clone(),
        output: opts.output.clone(),
        seed: opts.seed,
        size: n as u64,
        written,
        users_requested: k as u64,
        users_used: drawn_per_user.iter().filter(|&&d| d > 0).count() as u64,
        users_in_input: users_in_input as u64,
        users_eligible: eligible as u64,
        min_per_user: opts.min_per_user as u64,
        instances_in_input: recs.len() as u64,
        instances_held_by_chosen: held as u64,
        drawn: counter.finish(),
        per_user: users
            .iter()
            .zip(&drawn_per_user)
            .map(|(u, &d)| DrawnUser {
                user: u.name.clone(),
                user_key: u.key,
                available: u.recs.len() as u64,
                drawn: d as u64,
            })
            .collect(),
    };
    write_json_atomic(&report_path(opts), &report)?;
    Ok(report)
}

/// The error for K chosen users that hold fewer than N instances.
fn shortfall(opts: &SampleOptions, held: usize, most_k_hold: usize, eligible: usize) -> Error {
    let (k, n) = (opts.users, opts.size);
    let others = if most_k_hold >= n {
        format!(
            "other users would do (the {k} largest of the {eligible} eligible hold {most_k_hold}): \
             try --min-per-user {} to choose only users with enough instances each",
            n.div_ceil(k)
        )
    } else {
        format!(
            "no {k} users of this file hold {n} (the {k} largest of the {eligible} eligible hold \
             {most_k_hold}): ask for a smaller --size or more --users"
        )
    };
    fail(
        opts,
        format!(
            "the {k} users chosen with seed {} hold {held} instances, {} short of --size {n}; {others}",
            opts.seed,
            n - held,
        ),
    )
}

/// Where the report of a draw into `opts.output` goes.
pub fn report_path(opts: &SampleOptions) -> PathBuf {
    opts.report.clone().unwrap_or_else(|| {
        let mut p = opts.output.as_os_str().to_owned();
        p.push(".report.json");
        PathBuf::from(p)
    })
}

/// Copies the drawn lines, in `order`, from the input to the output.
fn write_lines(opts: &SampleOptions, recs: &[Rec], order: &[usize]) -> Result<u64> {
    let mut file = File::open(&opts.input).map_err(|e| Error::io(&opts.input, e))?;
    let mut out = AtomicWriter::create(&opts.output)?;
    let mut buf = Vec::new();
    for &r in order {
        let rec = &recs[r];
        buf.resize(rec.len, 0);
        file.seek(SeekFrom::Start(rec.offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| Error::io(&opts.input, e))?;
        if buf.last() != Some(&b'\n') {
            buf.push(b'\n');
        }
        out.write_raw(&buf)?;
    }
    out.commit()
}
