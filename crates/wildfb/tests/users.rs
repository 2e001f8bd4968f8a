//! User diversity end to end: a small WildChat-shaped parquet whose `hashed_ip` values are spread over
//! several conversations each (and one conversation without one) goes through `wildfb collect
//! --annotator rules`; the user key must survive to `train.jsonl` / `test.jsonl`, the `users` section
//! of `stats.json` must match figures counted here independently, and `wildfb sample-users` must draw
//! exactly N instances from K users only, the same for a seed and different across seeds. The ShareGPT
//! import, which has no user key, must say that its users are conversations.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use support::{import_sample, read_jsonl, s, scratch, stats, wildfb};
use wildreward_types::wildchat::{WildChatConversation, WildChatMessage};

fn conversation(id: &str) -> &str {
    wildreward_types::record::parse_instance_id(id).unwrap().0
}

fn hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn msg(role: &str, content: String, ip: Option<&str>) -> WildChatMessage {
    WildChatMessage {
        content,
        role: role.into(),
        language: Some("English".into()),
        turn_identifier: None,
        timestamp: None,
        toxic: Some(false),
        redacted: Some(false),
        country: Some("Canada".into()),
        state: None,
        hashed_ip: ip.map(str::to_string),
        header: None,
    }
}

/// Reactions the offline rules read as every category (and some neutral ones, which the split drops).
const REACTIONS: [&str; 6] = [
    "Thanks, that works perfectly!",
    "That is wrong, the year was 1969 and not 1970 as you wrote.",
    "This is useless, not what I asked for at all.",
    "Great, that helps. Can you now expand on the second point with an example?",
    "Okay. What about the next step after that one?",
    "No, you forgot the part about the budget I mentioned.",
];

/// Conversations per user: five `hashed_ip` users with 6, 4, 3, 2, 1 conversations, and one
/// conversation without `hashed_ip`. Returns the rows and the expected user of each conversation.
fn wildchat_rows() -> (
    Vec<WildChatConversation>,
    HashMap<String, (String, &'static str)>,
) {
    let spread = [
        ("alice", 6),
        ("bob", 4),
        ("carol", 3),
        ("dave", 2),
        ("erin", 1),
    ];
    let mut owners: Vec<Option<String>> = Vec::new();
    for (name, n) in spread {
        owners.extend(std::iter::repeat_n(Some(hex(&format!("ip of {name}"))), n));
    }
    owners.insert(7, None);
    let mut rows = Vec::new();
    let mut expected = HashMap::new();
    for (c, ip) in owners.iter().enumerate() {
        let hash = hex(&format!("conversation {c}"))[..32].to_string();
        let mut conversation = Vec::new();
        for t in 0..4 {
            let topic = ["tides", "volcanoes", "budgets", "migration"][(c + t) % 4];
            conversation.push(msg(
                "user",
                if t == 0 {
                    format!("Please explain {topic} to me in simple words, case {c}.")
                } else {
                    REACTIONS[(c * 3 + t) % REACTIONS.len()].to_string()
                },
                ip.as_deref(),
            ));
            conversation.push(msg(
                "assistant",
                format!(
                    "Here is an explanation of {topic}, part {t} of conversation {c}: it comes \
                     down to a few simple causes that are easy to follow once they are named."
                ),
                ip.as_deref(),
            ));
        }
        conversation.push(msg(
            "user",
            REACTIONS[(c + 1) % REACTIONS.len()].to_string(),
            ip.as_deref(),
        ));
        expected.insert(
            hash.clone(),
            match ip {
                Some(ip) => (ip.clone(), "hashed_ip"),
                None => (hash.clone(), "conversation"),
            },
        );
        rows.push(WildChatConversation {
            conversation_hash: hash,
            model: "gpt-4".into(),
            timestamp: Some("2024-01-02T03:04:05Z".into()),
            conversation,
            turn: 5,
            language: "English".into(),
            toxic: Some(false),
            redacted: Some(false),
            state: None,
            country: Some("Canada".into()),
            hashed_ip: ip.clone(),
            header: None,
            adapted_from: None,
            source_id: None,
        });
    }
    (rows, expected)
}

fn collect(input: &Path, out: &Path) {
    let o = wildfb(&[
        "collect",
        "--input",
        s(input),
        "--out",
        s(out),
        "--quiet",
        "--annotator",
        "rules",
        "--test-count",
        "6",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn sample(input: &Path, out: &Path, users: usize, size: usize, seed: u64) -> std::process::Output {
    let (users, size, seed) = (users.to_string(), size.to_string(), seed.to_string());
    wildfb(&[
        "sample-users",
        "--input",
        s(input),
        "--users",
        &users,
        "--size",
        &size,
        "--seed",
        &seed,
        "--output",
        s(out),
    ])
}

fn sample_ok(input: &Path, out: &Path, users: usize, size: usize, seed: u64) -> Value {
    let o = sample(input, out, users, size, seed);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut file = out.as_os_str().to_owned();
    file.push(".report.json");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(report, written);
    report
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn close(a: &Value, b: f64) {
    let a = a.as_f64().unwrap();
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

/// Counts the per-user figures of `records` here, from the expected owners, and checks `users`.
fn check_user_stats(users: &Value, records: &[(Value, bool)], owner: &dyn Fn(&str) -> String) {
    let mut per_user: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    let (mut train, mut test) = (BTreeSet::new(), BTreeSet::new());
    for (r, is_test) in records {
        let user = owner(r["id"].as_str().unwrap());
        per_user.entry(user.clone()).or_default()[n(&r["label"]) as usize - 1] += 1;
        if *is_test { &mut test } else { &mut train }.insert(user);
    }
    let mut counts: Vec<u64> = per_user.values().map(|l| l.iter().sum()).collect();
    counts.sort_unstable();
    let total: u64 = counts.iter().sum();
    assert_eq!(n(&users["users"]), per_user.len() as u64);
    assert_eq!(n(&users["instances"]), total);
    let spread = &users["instances_per_user"];
    assert_eq!(n(&spread["min"]), counts[0]);
    assert_eq!(n(&spread["max"]), *counts.last().unwrap());
    close(&spread["mean"], total as f64 / counts.len() as f64);
    let m = counts.len();
    let median = if m % 2 == 1 {
        counts[m / 2] as f64
    } else {
        (counts[m / 2 - 1] + counts[m / 2]) as f64 / 2.0
    };
    close(&spread["median"], median);
    for label in 0..4 {
        let mix = &users["label_mix"][(label + 1).to_string()];
        let instances: u64 = per_user.values().map(|l| l[label]).sum();
        assert_eq!(n(&mix["instances"]), instances);
        assert_eq!(
            n(&mix["users"]),
            per_user.values().filter(|l| l[label] > 0).count() as u64
        );
        let mean_share = per_user
            .values()
            .map(|l| l[label] as f64 / l.iter().sum::<u64>() as f64)
            .sum::<f64>()
            / m as f64;
        close(&mix["mean_user_share"], mean_share);
    }
    let desc: Vec<u64> = counts.iter().rev().copied().collect();
    for k in [1usize, 10, 100] {
        let top: u64 = desc.iter().take(k).sum();
        close(
            &users["top_share"][k.to_string()],
            top as f64 / total as f64,
        );
    }
    if !train.is_empty() {
        let split = &users["split"];
        assert_eq!(n(&split["train"]), train.len() as u64);
        assert_eq!(n(&split["test"]), test.len() as u64);
        assert_eq!(n(&split["both"]), train.intersection(&test).count() as u64);
    }
}

/// train.jsonl and test.jsonl of an output directory, each line marked test or not.
fn labelled(out: &Path) -> Vec<(Value, bool)> {
    let mut all: Vec<(Value, bool)> = read_jsonl(&out.join("train.jsonl"))
        .into_iter()
        .map(|r| (r, false))
        .collect();
    all.extend(
        read_jsonl(&out.join("test.jsonl"))
            .into_iter()
            .map(|r| (r, true)),
    );
    all
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

struct Fixture {
    dir: PathBuf,
    out: PathBuf,
    expected: HashMap<String, (String, &'static str)>,
}

fn fixture(name: &str) -> Fixture {
    let dir = scratch(name);
    let (rows, expected) = wildchat_rows();
    let parquet = dir.join("wildchat.parquet");
    wildfb::parquet::write_wildchat(&parquet, &rows).unwrap();
    let out = dir.join("out");
    collect(&parquet, &out);
    Fixture { dir, out, expected }
}

#[test]
fn the_user_key_survives_to_the_labelled_set_and_its_statistics_are_right() {
    let f = fixture("users-collect");
    // Every instance, every intermediate turn and every labelled record carries its user.
    for file in [
        "instances.jsonl",
        "classified.jsonl",
        "hindsight.jsonl",
        "refusal.jsonl",
        "train.jsonl",
        "test.jsonl",
    ] {
        let records = read_jsonl(&f.out.join(file));
        assert!(!records.is_empty(), "{file}");
        for r in records {
            let (user, key) = &f.expected[conversation(r["id"].as_str().unwrap())];
            assert_eq!(r["user"], user.as_str(), "{file}: {r}");
            assert_eq!(r["user_key"], *key, "{file}: {r}");
        }
    }
    let records = labelled(&f.out);
    let users: BTreeSet<String> = records
        .iter()
        .map(|(r, _)| r["user"].as_str().unwrap().to_string())
        .collect();
    assert!(users.len() >= 5, "{users:?}");

    let st = stats(&f.out);
    assert_eq!(
        n(&st["steps"]["preprocess"]["details"]["conversations_with_hashed_ip"]),
        16
    );
    let u = &st["steps"]["split"]["users"];
    // One conversation has no hashed_ip: the key is mixed, and the note says what that means.
    assert_eq!(u["key"], "mixed");
    assert!(u["note"]
        .as_str()
        .unwrap()
        .contains("1 conversation had no `hashed_ip`"));
    let no_ip = records
        .iter()
        .filter(|(r, _)| r["user_key"] == "conversation")
        .count() as u64;
    assert!(no_ip > 0);
    assert_eq!(n(&u["instances_by_key"]["conversation"]), no_ip);
    assert_eq!(n(&u["users_by_key"]["conversation"]), 1);
    assert_eq!(n(&u["users_by_key"]["hashed_ip"]), users.len() as u64 - 1);
    let owner = |id: &str| f.expected[conversation(id)].0.clone();
    check_user_stats(u, &records, &owner);
    assert_eq!(n(&u["instances"]), n(&st["steps"]["split"]["rows_out"]));
}

#[test]
fn sample_users_draws_exactly_n_from_k_users_deterministically() {
    let f = fixture("users-sample");
    let train = f.out.join("train.jsonl");
    let train_lines = lines(&train);
    let mut per_user: BTreeMap<String, usize> = BTreeMap::new();
    for l in &train_lines {
        let v: Value = serde_json::from_str(l).unwrap();
        *per_user
            .entry(v["user"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let mut sizes: Vec<usize> = per_user.values().copied().collect();
    sizes.sort_unstable();
    // Any 3 users hold at least this many, so every seed's draw fits.
    let (k, size) = (3, sizes[..3].iter().sum::<usize>());
    assert!(size >= 3, "{sizes:?}");

    let draw = |seed: u64, k: usize, size: usize| {
        let out = f.dir.join(format!("k{k}-n{size}-s{seed}.jsonl"));
        let report = sample_ok(&train, &out, k, size, seed);
        (out, report)
    };
    let mut user_sets = BTreeSet::new();
    let mut outputs = BTreeSet::new();
    for seed in 0..6 {
        let (out, report) = draw(seed, k, size);
        let got = lines(&out);
        assert_eq!(got.len(), size);
        // Only whole input lines, each at most once.
        assert!(got.iter().all(|l| train_lines.contains(l)));
        assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), size);
        let mut drawn: BTreeMap<String, u64> = BTreeMap::new();
        let mut labels: BTreeMap<String, u64> = BTreeMap::new();
        for l in &got {
            let v: Value = serde_json::from_str(l).unwrap();
            *drawn.entry(v["user"].as_str().unwrap().into()).or_default() += 1;
            *labels.entry(v["label"].to_string()).or_default() += 1;
        }
        assert_eq!(drawn.len(), k, "drawn from {drawn:?}");
        assert_eq!(n(&report["users_requested"]), k as u64);
        assert_eq!(n(&report["users_used"]), k as u64);
        assert_eq!(n(&report["written"]), size as u64);
        assert_eq!(n(&report["users_in_input"]), per_user.len() as u64);
        // The report's users are the drawn ones, with their counts; round-robin keeps them level
        // (no user gives two more than another unless that one ran out).
        let listed: BTreeMap<String, u64> = report["per_user"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| (u["user"].as_str().unwrap().to_string(), n(&u["drawn"])))
            .collect();
        assert_eq!(listed, drawn);
        for u in report["per_user"].as_array().unwrap() {
            assert_eq!(
                n(&u["available"]),
                per_user[u["user"].as_str().unwrap()] as u64
            );
            let max = drawn.values().max().unwrap();
            assert!(n(&u["drawn"]) + 1 >= *max || n(&u["drawn"]) == n(&u["available"]));
        }
        for (label, count) in &labels {
            assert_eq!(n(&report["drawn"]["label_mix"][label]["instances"]), *count);
        }
        let key = report["drawn"]["key"].as_str().unwrap();
        assert!(["hashed_ip", "mixed", "conversation"].contains(&key));
        // The same seed gives the same bytes.
        let again = f.dir.join("again.jsonl");
        sample_ok(&train, &again, k, size, seed);
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
        user_sets.insert(drawn.keys().cloned().collect::<Vec<_>>());
        outputs.insert(std::fs::read(&out).unwrap());
    }
    assert!(user_sets.len() > 1, "every seed chose the same users");
    assert_eq!(outputs.len(), 6, "two seeds gave the same set");

    // For one seed, the users of a smaller K are among those of a larger K.
    let users_of = |report: &Value| -> BTreeSet<String> {
        report["per_user"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["user"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, two) = draw(9, 2, 2);
    let (_, four) = draw(9, 4, 4);
    assert!(users_of(&two).is_subset(&users_of(&four)));

    // The input's line order does not change the draw.
    let mut reversed = train_lines.clone();
    reversed.reverse();
    let shuffled = f.dir.join("reversed.jsonl");
    std::fs::write(&shuffled, reversed.join("\n") + "\n").unwrap();
    let (a, b) = (f.dir.join("a.jsonl"), f.dir.join("b.jsonl"));
    sample_ok(&train, &a, k, size, 3);
    sample_ok(&shuffled, &b, k, size, 3);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    // A file written before user keys existed reads as keyed by conversation.
    let old = f.dir.join("old.jsonl");
    let stripped: Vec<String> = train_lines
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("user");
            o.remove("user_key");
            v.to_string()
        })
        .collect();
    std::fs::write(&old, stripped.join("\n") + "\n").unwrap();
    let report = sample_ok(&old, &f.dir.join("old-out.jsonl"), 2, 2, 1);
    assert_eq!(report["drawn"]["key"], "conversation");
    let conversations: BTreeSet<String> = stripped
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| conversation(v["id"].as_str().unwrap()).to_string())
        .collect();
    assert_eq!(n(&report["users_in_input"]), conversations.len() as u64);
}

#[test]
fn sample_users_names_shortfalls_and_bad_lines() {
    let f = fixture("users-shortfall");
    let train = f.out.join("train.jsonl");
    let total = lines(&train).len();
    let out = f.dir.join("x.jsonl");
    let err = |o: std::process::Output| {
        assert_eq!(
            o.status.code(),
            Some(65),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    // All users together hold `total`: one more is short by one, whatever the seed.
    let users = lines(&train)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["user"].to_string())
        .collect::<BTreeSet<_>>()
        .len();
    let e = err(sample(&train, &out, users, total + 1, 1));
    assert!(
        e.contains(&format!(
            "hold {total} instances, 1 short of --size {}",
            total + 1
        )) && e.contains("train.jsonl"),
        "{e}"
    );
    assert!(!out.exists());
    // More users than the file has.
    let e = err(sample(&train, &out, users + 1, total, 1));
    assert!(
        e.contains(&format!(
            "--users {} asked, but the file has only {users} users",
            users + 1
        )),
        "{e}"
    );
    // Fewer instances than users, and zero.
    let e = err(sample(&train, &out, 3, 2, 1));
    assert!(e.contains("--size 2 is smaller than --users 3"), "{e}");
    let e = err(sample(&train, &out, 0, 2, 1));
    assert!(e.contains("must be at least 1"), "{e}");

    // Bad lines are named by file, line and field.
    let good = lines(&train);
    let bad = f.dir.join("bad.jsonl");
    for (edit, field) in [
        (r#""label":9"#, "label"),
        (r#""label":"high""#, "label"),
        (r#""user_key":"email""#, "user_key"),
        (r#""user":7"#, "user"),
    ] {
        let mut v: Value = serde_json::from_str(&good[1]).unwrap();
        let (k, val) = edit.split_once(':').unwrap();
        v[k.trim_matches('"')] = serde_json::from_str(val).unwrap();
        let text = [good[0].clone(), v.to_string()].join("\n");
        std::fs::write(&bad, text).unwrap();
        let e = err(sample(&bad, &out, 1, 1, 1));
        assert!(
            e.contains("bad.jsonl:2: field `") && e.contains(&format!("`{field}`")),
            "{edit}: {e}"
        );
    }
    let mut v: Value = serde_json::from_str(&good[0]).unwrap();
    v.as_object_mut().unwrap().remove("user_key");
    std::fs::write(&bad, format!("\n{v}\n")).unwrap();
    let e = err(sample(&bad, &out, 1, 1, 1));
    assert!(e.contains("bad.jsonl:2: field `user_key`"), "{e}");
    std::fs::write(&bad, format!("{}\n{}\n", good[0], good[0])).unwrap();
    let e = err(sample(&bad, &out, 1, 1, 1));
    assert!(
        e.contains("bad.jsonl:2: field `id`") && e.contains("line 1"),
        "{e}"
    );
    std::fs::write(&bad, "{\"id\": \"x_turn0\", \"label\": 2}\nnot json\n").unwrap();
    let e = err(sample(&bad, &out, 1, 1, 1));
    assert!(e.contains("bad.jsonl:2:"), "{e}");
    let e = err(sample(&f.dir.join("missing.jsonl"), &out, 1, 1, 1));
    assert!(e.contains("missing.jsonl"), "{e}");
}

#[test]
fn the_sharegpt_import_has_no_user_key_and_says_so() {
    let dir = scratch("users-sharegpt");
    let parquet = import_sample(&dir, Some(40));
    let mut report = parquet.as_os_str().to_owned();
    report.push(".report.json");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(report["user_key"], "conversation");
    assert_eq!(report["rows_with_hashed_ip"], 0);
    assert!(report["user_note"]
        .as_str()
        .unwrap()
        .contains("records no user"));

    let out = dir.join("out");
    collect(&parquet, &out);
    let records = labelled(&out);
    assert!(!records.is_empty());
    for (r, _) in &records {
        let id = r["id"].as_str().unwrap();
        assert_eq!(r["user"], conversation(id), "{r}");
        assert_eq!(r["user_key"], "conversation", "{r}");
    }
    let u = &stats(&out)["steps"]["split"]["users"];
    assert_eq!(u["key"], "conversation");
    assert!(u["note"]
        .as_str()
        .unwrap()
        .contains("per-conversation figures"));
    assert!(u["users_by_key"].get("hashed_ip").is_none());
    let owner = |id: &str| conversation(id).to_string();
    check_user_stats(u, &records, &owner);

    // The sampler's "users" are then conversations, and its report says so.
    let sampled = sample_ok(&out.join("train.jsonl"), &dir.join("s.jsonl"), 2, 2, 5);
    assert_eq!(sampled["drawn"]["key"], "conversation");
}
