//! Who wrote each instance: the **user key** carried from the parquet to the labelled output, and the
//! per-user statistics of a labelled set.
//!
//! The key is WildChat's `hashed_ip` when the conversation has one, else the conversation hash (one
//! "user" per conversation). Which of the two it is travels with the record (`user_key`), so nothing
//! downstream mistakes a conversation for a person: the ShareGPT import has no user id, so there every
//! user is a conversation and the statistics say so. No user is ever synthesised.
//!
//! On disk each record gains two fields, `"user"` and `"user_key"` (`"hashed_ip"` or `"conversation"`).
//! Both are optional when read: a file written before they existed reads as keyed by conversation.

use super::records::conversation_of;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use wildreward_types::{Instance, TrainingLabel, WildFbRecord};

/// Which identifier stands for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKey {
    /// WildChat's `hashed_ip` of the conversation.
    HashedIp,
    /// The conversation hash: the source recorded no user (ShareGPT), or this row had no `hashed_ip`.
    Conversation,
}

impl UserKey {
    /// The name written in records and `stats.json`.
    pub fn name(self) -> &'static str {
        match self {
            UserKey::HashedIp => "hashed_ip",
            UserKey::Conversation => "conversation",
        }
    }

    /// Parses [`UserKey::name`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hashed_ip" => Some(UserKey::HashedIp),
            "conversation" => Some(UserKey::Conversation),
            _ => None,
        }
    }
}

/// The user fields of a record (flattened into it: `"user"`, `"user_key"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTag {
    /// The user's identifier (a `hashed_ip` or a conversation hash); absent in files written before
    /// user keys existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What `user` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_key: Option<UserKey>,
}

impl UserTag {
    /// The tag of a conversation: its `hashed_ip` when it has a non-empty one, else its hash.
    pub fn of_conversation(hash: &str, hashed_ip: Option<&str>) -> Self {
        let (user, key) = match hashed_ip.map(str::trim).filter(|ip| !ip.is_empty()) {
            Some(ip) => (ip, UserKey::HashedIp),
            None => (hash, UserKey::Conversation),
        };
        Self {
            user: Some(user.to_string()),
            user_key: Some(key),
        }
    }

    /// The user of the record with instance id `id`: the tag's own, or (for a record without one) the
    /// conversation of the id. A `user` without its `user_key` is an error, named by field.
    pub fn resolve<'a>(
        &'a self,
        id: &'a str,
    ) -> std::result::Result<(&'a str, UserKey), &'static str> {
        match (&self.user, self.user_key) {
            (Some(user), Some(key)) => Ok((user, key)),
            (None, None) => Ok((conversation_of(id), UserKey::Conversation)),
            (Some(_), None) => Err("`user` is set but `user_key` is missing"),
            (None, Some(_)) => Err("`user_key` is set but `user` is missing"),
        }
    }

    /// [`UserTag::resolve`] for the record on `line` of `path`: a half tag is an error naming the
    /// field that is missing.
    pub fn resolve_at<'a>(
        &'a self,
        id: &'a str,
        path: &std::path::Path,
        line: usize,
    ) -> crate::error::Result<(&'a str, UserKey)> {
        self.resolve(id)
            .map_err(|message| crate::error::Error::Field {
                path: path.to_path_buf(),
                line,
                field: if self.user.is_some() {
                    "user_key"
                } else {
                    "user"
                }
                .into(),
                message: message.to_string(),
            })
    }

    /// A complete tag for a resolved user.
    pub fn resolved(user: &str, key: UserKey) -> Self {
        Self {
            user: Some(user.to_string()),
            user_key: Some(key),
        }
    }
}

/// A line of `instances.jsonl`: the instance and its user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyedInstance {
    /// The turn.
    #[serde(flatten)]
    pub instance: Instance,
    /// Its user.
    #[serde(flatten)]
    pub user: UserTag,
}

/// A line of `train.jsonl` / `test.jsonl`: the released WildFB record plus its user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledRecord {
    /// The record, field for field as the released dataset.
    #[serde(flatten)]
    pub record: WildFbRecord,
    /// Its user (always written; absent only in files written before user keys existed).
    #[serde(flatten)]
    pub user: UserTag,
}

/// Minimum, median, mean and maximum of a count over users.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Smallest.
    pub min: u64,
    /// Median (the mean of the two middle values for an even number of users).
    pub median: f64,
    /// Mean.
    pub mean: f64,
    /// Largest.
    pub max: u64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(mut values: Vec<u64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2] as f64
        } else {
            (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0
        };
        Self {
            min: values[0],
            median,
            mean: values.iter().sum::<u64>() as f64 / n as f64,
            max: values[n - 1],
        }
    }
}

/// One training label over the users.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelOverUsers {
    /// Instances with this label.
    pub instances: u64,
    /// Their share of all instances.
    pub share: f64,
    /// Users with at least one instance with this label.
    pub users: u64,
    /// The mean over users of the share of each user's instances with this label (every user
    /// weighs the same, however many instances they have).
    pub mean_user_share: f64,
}

/// The per-user statistics of a labelled set (`users` of the `split` step in `stats.json`, and of a
/// `wildfb sample-users` report).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserStats {
    /// The key used: `hashed_ip`, `conversation` (no user key in the input: per-conversation figures),
    /// or `mixed` (some conversations had no `hashed_ip`); `none` for an empty set.
    pub key: String,
    /// What the key means for these figures, when it is not `hashed_ip` throughout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Distinct users.
    pub users: u64,
    /// Distinct users by key (`hashed_ip`, `conversation`).
    pub users_by_key: BTreeMap<String, u64>,
    /// Instances.
    pub instances: u64,
    /// Instances by the key of their user.
    pub instances_by_key: BTreeMap<String, u64>,
    /// Instances per user.
    pub instances_per_user: Spread,
    /// Each training label (1..4) over the users.
    pub label_mix: BTreeMap<String, LabelOverUsers>,
    /// The share of all instances held by the k users with the most (k = 1, 10, 100).
    pub top_share: BTreeMap<String, f64>,
    /// Users in train, in test, and in both (the split is by conversation, so one user's
    /// conversations can fall on either side); set by the `split` step only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitUsers>,
}

/// How the users fall across the train/test split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitUsers {
    /// Users with an instance in `train.jsonl`.
    pub train: u64,
    /// Users with an instance in `test.jsonl`.
    pub test: u64,
    /// Users with instances in both.
    pub both: u64,
}

/// The k of [`UserStats::top_share`].
pub const TOP_K: [usize; 3] = [1, 10, 100];

#[derive(Default)]
struct PerUser {
    labels: [u64; TrainingLabel::NUM_LEVELS],
    parts: u8,
}

/// Counts instances per user as they go by; [`UserCounter::finish`] gives the [`UserStats`].
#[derive(Default)]
pub struct UserCounter {
    users: HashMap<UserKey, HashMap<String, PerUser>>,
}

/// Marks an instance as in `train.jsonl` for [`UserCounter::add_in`].
pub const PART_TRAIN: u8 = 1;
/// Marks an instance as in `test.jsonl` for [`UserCounter::add_in`].
pub const PART_TEST: u8 = 2;

impl UserCounter {
    /// Counts one instance of `user` with `label`.
    pub fn add(&mut self, user: &str, key: UserKey, label: TrainingLabel) {
        self.add_in(user, key, label, 0);
    }

    /// Counts one instance, in split part `part` ([`PART_TRAIN`] or [`PART_TEST`]).
    pub fn add_in(&mut self, user: &str, key: UserKey, label: TrainingLabel, part: u8) {
        let users = self.users.entry(key).or_default();
        let entry = match users.get_mut(user) {
            Some(e) => e,
            None => users.entry(user.to_string()).or_default(),
        };
        entry.labels[usize::from(label.value()) - 1] += 1;
        entry.parts |= part;
    }

    /// The statistics of everything counted.
    pub fn finish(self) -> UserStats {
        let mut s = UserStats::default();
        // In a fixed order, so the float sums (and stats.json) are the same on every run.
        let mut all: Vec<((UserKey, String), PerUser)> = self
            .users
            .into_iter()
            .flat_map(|(key, users)| users.into_iter().map(move |(u, p)| ((key, u), p)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut counts = Vec::with_capacity(all.len());
        let mut user_share = [0f64; TrainingLabel::NUM_LEVELS];
        let mut label_users = [0u64; TrainingLabel::NUM_LEVELS];
        let mut label_instances = [0u64; TrainingLabel::NUM_LEVELS];
        let mut split = SplitUsers::default();
        for ((key, _), u) in &all {
            let n: u64 = u.labels.iter().sum();
            counts.push(n);
            *s.users_by_key.entry(key.name().into()).or_default() += 1;
            *s.instances_by_key.entry(key.name().into()).or_default() += n;
            for (i, &c) in u.labels.iter().enumerate() {
                label_instances[i] += c;
                label_users[i] += u64::from(c > 0);
                user_share[i] += c as f64 / n as f64;
            }
            split.train += u64::from(u.parts & PART_TRAIN != 0);
            split.test += u64::from(u.parts & PART_TEST != 0);
            split.both += u64::from(u.parts == PART_TRAIN | PART_TEST);
        }
        s.users = counts.len() as u64;
        s.instances = counts.iter().sum();
        let share = |x: f64, of: f64| if of > 0.0 { x / of } else { 0.0 };
        for i in 0..TrainingLabel::NUM_LEVELS {
            s.label_mix.insert(
                (i + 1).to_string(),
                LabelOverUsers {
                    instances: label_instances[i],
                    share: share(label_instances[i] as f64, s.instances as f64),
                    users: label_users[i],
                    mean_user_share: share(user_share[i], s.users as f64),
                },
            );
        }
        let mut desc = counts.clone();
        desc.sort_unstable_by(|a, b| b.cmp(a));
        for k in TOP_K {
            let top: u64 = desc.iter().take(k).sum();
            s.top_share
                .insert(k.to_string(), share(top as f64, s.instances as f64));
        }
        s.instances_per_user = Spread::of(counts);
        if split.train + split.test > 0 {
            s.split = Some(split);
        }
        let by_ip = s.users_by_key.get("hashed_ip").copied().unwrap_or(0);
        let by_conv = s.users_by_key.get("conversation").copied().unwrap_or(0);
        (s.key, s.note) = match (by_ip, by_conv) {
            (0, 0) => ("none".into(), None),
            (_, 0) => ("hashed_ip".into(), None),
            (0, _) => (
                "conversation".into(),
                Some(
                    "the input carries no user key (no `hashed_ip`; e.g. a ShareGPT import): every \
                     conversation is counted as its own user, so these are per-conversation figures"
                        .into(),
                ),
            ),
            (_, c) => (
                "mixed".into(),
                Some(if c == 1 {
                    "1 conversation had no `hashed_ip`; it is counted as its own user".to_string()
                } else {
                    format!(
                        "{c} conversations had no `hashed_ip`; each of them is counted as its own \
                         user"
                    )
                }),
            ),
        };
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn label(v: i64) -> TrainingLabel {
        TrainingLabel::try_from(v).unwrap()
    }

    #[test]
    fn tags_fall_back_to_the_conversation_and_resolve() {
        let t = UserTag::of_conversation("h1", Some("ip9"));
        assert_eq!(t.resolve("h1_turn0").unwrap(), ("ip9", UserKey::HashedIp));
        let t = UserTag::of_conversation("h1", Some("  "));
        assert_eq!(
            t.resolve("h1_turn0").unwrap(),
            ("h1", UserKey::Conversation)
        );
        let old = UserTag::default();
        assert_eq!(
            old.resolve("ab_turn3").unwrap(),
            ("ab", UserKey::Conversation)
        );
        let half = UserTag {
            user: Some("x".into()),
            user_key: None,
        };
        assert!(half.resolve("ab_turn3").unwrap_err().contains("user_key"));
        let json = serde_json::to_string(&UserTag::of_conversation("h", None)).unwrap();
        assert_eq!(json, r#"{"user":"h","user_key":"conversation"}"#);
    }

    #[test]
    fn statistics_count_users_labels_and_top_shares() {
        let mut c = UserCounter::default();
        for _ in 0..3 {
            c.add_in("a", UserKey::HashedIp, label(4), PART_TRAIN);
        }
        c.add_in("a", UserKey::HashedIp, label(1), PART_TEST);
        c.add_in("b", UserKey::HashedIp, label(4), PART_TRAIN);
        c.add_in("c", UserKey::Conversation, label(2), PART_TEST);
        let s = c.finish();
        assert_eq!((s.users, s.instances, s.key.as_str()), (3, 6, "mixed"));
        assert_eq!(s.instances_per_user.min, 1);
        assert_eq!(s.instances_per_user.median, 1.0);
        assert_eq!(s.instances_per_user.mean, 2.0);
        assert_eq!(s.instances_per_user.max, 4);
        assert_eq!(s.top_share["1"], 4.0 / 6.0);
        assert_eq!(s.top_share["10"], 1.0);
        let four = &s.label_mix["4"];
        assert_eq!((four.instances, four.users), (4, 2));
        assert!((four.mean_user_share - (0.75 + 1.0) / 3.0).abs() < 1e-12);
        assert_eq!(
            s.split,
            Some(SplitUsers {
                train: 2,
                test: 2,
                both: 1
            })
        );
        assert_eq!(UserCounter::default().finish().key, "none");
    }
}
