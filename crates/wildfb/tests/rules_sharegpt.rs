//! The offline rules on real user reactions: each case below is a follow-up message found verbatim (by
//! its start) in the shipped ShareGPT sample, so the rules are checked against what people actually
//! write, not against made-up sentences.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::BufRead;
use wildfb::collect::config::CollectConfig;
use wildfb::collect::rules::Rules;

/// Every user message after the first of each conversation in the sample.
fn reactions() -> Vec<String> {
    let file = std::fs::File::open(support::sample()).unwrap();
    let mut out = Vec::new();
    for line in std::io::BufReader::new(flate2::read::GzDecoder::new(file)).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        for (i, m) in v["conversations"].as_array().unwrap().iter().enumerate() {
            if i > 0 && m["from"] == "human" {
                out.push(m["value"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

#[test]
fn real_reactions_get_the_expected_category() {
    let rules = Rules::from_config(&CollectConfig::embedded().unwrap().rules).unwrap();
    let all = reactions();
    let cases: &[(&str, u8)] = &[
        // Satisfaction: thanks and praise, even when a new request follows.
        ("perfect any other information i should know about", 5),
        (
            "Thanks! Can you help me better understand the regulations regarding OSHA",
            5,
        ),
        ("that works. let's try it again", 5),
        ("thanks! The filters should be material and robot-state.", 5),
        // Error correction: disputes, failures, pasted errors.
        ("Msg 207, Level 16, State 1, Line 17", 2),
        ("I get the exact same error.", 2),
        ("It's not correct. If we create a public channel", 2),
        ("That's an old link that no longer exists", 2),
        ("In example 3, I think there is an error in your code", 2),
        ("I've gone with this option but still getting errors", 2),
        ("incorrect. you are calculating what percentage", 2),
        ("no he isn't.", 2),
        ("No, Gaston should've just said", 2),
        ("You've told me that one before, how about a new one?", 2),
        (
            "But it didn't actually render until I used an extra parenthesis.",
            2,
        ),
        (
            "chromedriver --version is coming back as no such command",
            2,
        ),
        ("我说的是ev录屏软件", 2),
        // Positive engagement: the answer is accepted and built on.
        ("Great. Now I want to make v2.", 4),
        ("nice. Let's work on the opening.", 4),
        ("These are nice, propose similar ones", 4),
        ("continue", 4),
        // Neutral: no signal about the answer ("对不对" asks "right?", it is no correction).
        ("What kinds of data can be stored as CRDTs?", 3),
        ("Too high!", 3),
        ("所以一只猫可以同时是狸花猫和橘猫，对不对", 3),
        ("what is ubuntu operating system", 3),
    ];
    for (start, want) in cases {
        let found = all
            .iter()
            .find(|r| r.starts_with(start))
            .unwrap_or_else(|| panic!("{start:?} is not in the sample"));
        let got = rules.classify(found);
        assert_eq!(got.category.value(), *want, "{found:?} → {got:?}");
    }
}

#[test]
fn the_rules_spread_the_sample_over_all_five_categories() {
    let rules = Rules::from_config(&CollectConfig::embedded().unwrap().rules).unwrap();
    let mut hist = [0usize; 6];
    let all = reactions();
    for r in &all {
        hist[usize::from(rules.classify(r).category.value())] += 1;
    }
    eprintln!(
        "raw categories over {} reactions: {:?}",
        all.len(),
        &hist[1..]
    );
    // Neutral dominates, as in the reference's 76 %; each other category is present but smaller.
    assert!(hist[3] * 2 > all.len(), "{hist:?}");
    for c in [1, 2, 4, 5] {
        assert!(hist[c] > 0 && hist[c] < hist[3], "{hist:?}");
    }
}
