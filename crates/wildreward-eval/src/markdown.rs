//! `report.md`: the report for a person (the same numbers as `report.json`).

use crate::report::Report;
use std::fmt::Write;

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// Renders the report as Markdown.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# `wildreward eval`: {}\n", r.bench);
    let _ = writeln!(s, "- scorer: `{}`", r.scorer);
    let _ = writeln!(
        s,
        "- files: {}",
        r.files
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "- units: {} evaluated, {} dropped (unscored); max length {} tokens",
        r.units, r.dropped, r.max_length
    );
    let _ = writeln!(
        s,
        "- scoring: {} texts scored, {} from the cache, {} failed, {:.1} s\n",
        r.scoring.scored, r.scoring.from_cache, r.scoring.failed, r.scoring.seconds
    );
    let _ = writeln!(
        s,
        "**accuracy ({}) {}%** (95% bootstrap CI {}–{}){}\n",
        r.accuracy_kind,
        pct(r.accuracy),
        pct(r.accuracy_ci95[0]),
        pct(r.accuracy_ci95[1]),
        r.macro_accuracy
            .map(|m| format!("; macro-average over subsets {}%", pct(m)))
            .unwrap_or_default()
    );
    if let Some(auc) = r.consistency_auc {
        let _ = writeln!(s, "Cross-sample consistency (ROC-AUC of raw rewards, good vs bad, pooled across prompts): **{auc:.3}**\n");
    }
    if let Some(rm) = &r.rm_bench {
        let _ = writeln!(s, "## RM-Bench\n\n| domain | prompts | easy | normal | hard | average |\n|---|---:|---:|---:|---:|---:|");
        for (d, x) in rm
            .domains
            .iter()
            .chain(std::iter::once((&"**overall**".to_string(), &rm.overall)))
        {
            let _ = writeln!(
                s,
                "| {d} | {} | {} | {} | {} | {} |",
                x.prompts,
                pct(x.easy),
                pct(x.normal),
                pct(x.hard),
                pct(x.average)
            );
        }
        s.push('\n');
    }
    for (title, groups) in [("Subsets", &r.subsets), ("Sources", &r.sources)] {
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "## {title}\n\n| | n | accuracy | 95% CI |\n|---|---:|---:|---|"
        );
        for (k, g) in groups {
            let _ = writeln!(
                s,
                "| {k} | {} | {} | {}–{} |",
                g.n,
                pct(g.accuracy),
                pct(g.ci95[0]),
                pct(g.ci95[1])
            );
        }
        s.push('\n');
    }
    if r.threshold_curve.iter().any(|p| p.pairs > 0) {
        let _ = writeln!(s, "## Threshold curve (pairs with |Δr| ≥ t)\n\n| t | accuracy | coverage | pairs |\n|---:|---:|---:|---:|");
        for p in r.threshold_curve.iter().step_by(5) {
            let _ = writeln!(
                s,
                "| {:.2} | {} | {} | {} |",
                p.threshold,
                p.accuracy.map(pct).unwrap_or_else(|| "–".into()),
                pct(p.coverage),
                p.pairs
            );
        }
        s.push('\n');
    }
    if let Some(c) = &r.calibration {
        let _ = writeln!(s, "## Calibration\n\nECE (10 bins, every P(y > k) pooled): **{:.4}**; per threshold: {}; MAE of the expected level: {:.3}\n",
            c.ece,
            c.ece_per_threshold.iter().map(|e| e.map(|e| format!("{e:.4}")).unwrap_or_else(|| "–".into())).collect::<Vec<_>>().join(", "),
            c.mae);
        let k = c.confusion.len();
        let _ =
            writeln!(
            s,
            "Confusion matrix (rows: label, columns: rounded expected level)\n\n| | {} |\n|---|{}",
            (1..=k).map(|i| i.to_string()).collect::<Vec<_>>().join(" | "),
            "---:|".repeat(k)
        );
        for (i, row) in c.confusion.iter().enumerate() {
            let _ = writeln!(
                s,
                "| **{}** | {} |",
                i + 1,
                row.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        s.push('\n');
    }
    if !r.plots.is_empty() {
        let _ = writeln!(s, "## Plots\n");
        for p in &r.plots {
            let _ = writeln!(s, "![{p}]({p})");
        }
        s.push('\n');
    }
    if !r.notes.is_empty() {
        let _ = writeln!(s, "## Notes\n");
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}
