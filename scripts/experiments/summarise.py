#!/usr/bin/env python3
"""The table of scripts/experiments/powered.sh, from the reports it wrote (nothing else).

usage: summarise.py OUT [SECONDS]

Per model and benchmark: the headline accuracy and its 95% bootstrap interval (report.json), AUC, ECE.
Per arm (the seeds of one recipe): the mean over seeds, the spread of the seeds, the mean interval
half-width, and the difference from the untrained head with a 95% interval from the two models' own
bootstrap standard errors (a conservative interval: both are scored on the same units, so the paired one
is narrower). Writes OUT/summary.json and OUT/summary.md and prints the markdown.
"""
import json
import math
import os
import re
import statistics
import sys

out = sys.argv[1]
seconds = int(sys.argv[2]) if len(sys.argv) > 2 else None
benches = [b for b in ["hh", "wildfb", "rm-bench", "judgebench", "rm-bench-full", "judgebench-full"]
           if os.path.isdir(f"{out}/eval/{b}")]


def reports(bench):
    d = f"{out}/eval/{bench}"
    for label in sorted(os.listdir(d)):
        p = f"{d}/{label}/report.json"
        if os.path.exists(p):
            yield label, json.load(open(p))


def arm_of(label):
    m = re.fullmatch(r"(.+)-s(\d+)", label)
    return (m.group(1), int(m.group(2))) if m else ("untrained", 0)


def half(r):
    lo, hi = r["accuracy_ci95"]
    return (hi - lo) / 2


models = {}
for bench in benches:
    for label, r in reports(bench):
        arm, seed = arm_of(label)
        cal = r.get("calibration") or {}
        models.setdefault(label, {"arm": arm, "seed": seed, "benches": {}})["benches"][bench] = {
            "accuracy": r["accuracy"],
            "accuracy_kind": r["accuracy_kind"],
            "ci95": r["accuracy_ci95"],
            "half_width": half(r),
            "units": r["units"],
            "auc": r.get("consistency_auc"),
            "ece": cal.get("ece"),
            "rm_bench": (r.get("rm_bench") or {}).get("overall"),
            "threshold_curve": r.get("threshold_curve"),
        }

arms = {}
for label, m in models.items():
    arms.setdefault(m["arm"], []).append(label)
order = [a for a in ["untrained", "ordinal", "bt", "oracle", "ordinal-matched"] if a in arms]
order += sorted(a for a in arms if a not in order)

summary = {"seconds": seconds, "models": models, "arms": {}}
for arm in order:
    s = {}
    for bench in benches:
        every = [models[l]["benches"][bench] for l in arms[arm] if bench in models[l]["benches"]]
        aucs = [r["auc"] for r in every if r["auc"] is not None]
        eces = [r["ece"] for r in every if r["ece"] is not None]
        rows = every
        # A scalar (BT) head has no levels: its WildFB headline is a ROC-AUC, not comparable with
        # the others' level accuracy (its AUC is in the AUC column).
        rows = [r for r in rows if r["accuracy_kind"] != "roc_auc"]
        if not rows:
            s[bench] = {"seeds": len(every), "auc": statistics.mean(aucs) if aucs else None,
                        "ece": statistics.mean(eces) if eces else None}
            continue
        accs = [r["accuracy"] for r in rows]
        se = statistics.mean(r["half_width"] for r in rows) / 1.96
        s[bench] = {
            "seeds": len(rows),
            "mean": statistics.mean(accs),
            "seed_sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "mean_half_width": se * 1.96,
            "se": se,
            "units": rows[0]["units"],
            "auc": statistics.mean(aucs) if aucs else None,
            "ece": statistics.mean(eces) if eces else None,
        }
    summary["arms"][arm] = s

base = summary["arms"].get("untrained", {})
for arm in order:
    for bench, s in summary["arms"][arm].items():
        if arm != "untrained" and "mean" in s and "mean" in base.get(bench, {}):
            b = base[bench]
            # The arm's mean over seeds varies with the seeds (their spread, / seeds) and with the
            # units (each model's bootstrap error; the seeds share the units, so not divided); the
            # untrained head's with the units only. Summed as if independent: conservative.
            se = math.sqrt(s["seed_sd"] ** 2 / s["seeds"] + s["se"] ** 2 + b["se"] ** 2)
            d = s["mean"] - b["mean"]
            s["vs_untrained"] = {"diff": d, "ci95": [d - 1.96 * se, d + 1.96 * se],
                                 "beyond_noise": abs(d) > 1.96 * se}


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}"


def num(x):
    return "–" if x is None else f"{x:.3f}"


kinds = {b: next((m["benches"][b]["accuracy_kind"] for m in models.values() if b in m["benches"]), "")
         for b in benches}
md = []
if seconds is not None:
    md.append(f"Wall time of the run that wrote this: {seconds} s.")
md.append("")
md.append("Per arm (mean over seeds; ± the seeds' standard deviation; [mean 95% half-width of one model]; "
          "Δ vs untrained with its 95% interval (seeds' spread, units and the untrained head's units, "
          "summed as if independent: conservative), * where it excludes 0; a BT head has no levels, so no "
          "WildFB level accuracy):")
md.append("")
md.append("| arm | seeds | " + " | ".join(f"{b} ({kinds[b]}, {base.get(b, {}).get('units', '?')} units)" for b in benches)
          + " | HH AUC | WildFB AUC | WildFB ECE |")
md.append("|---|---:|" + "---:|" * len(benches) + "---:|---:|---:|")
for arm in order:
    s = summary["arms"][arm]
    cells = []
    for b in benches:
        if "mean" not in s.get(b, {}):
            cells.append("–")
            continue
        c = f"{pct(s[b]['mean'])} ± {pct(s[b]['seed_sd'])} [±{pct(s[b]['mean_half_width'])}]"
        v = s[b].get("vs_untrained")
        if v:
            c += f"; Δ {100 * v['diff']:+.1f} ({100 * v['ci95'][0]:+.1f}, {100 * v['ci95'][1]:+.1f}){'*' if v['beyond_noise'] else ''}"
        cells.append(c)
    seeds = max((x["seeds"] for x in s.values()), default=0)
    md.append(f"| {arm} | {seeds} | " + " | ".join(cells) + f" | {num(s.get('hh', {}).get('auc'))} | "
              f"{num(s.get('wildfb', {}).get('auc'))} | {num(s.get('wildfb', {}).get('ece'))} |")
md.append("")
md.append("Per model (accuracy, 95% bootstrap interval):")
md.append("")
md.append("| model | " + " | ".join(benches) + " |")
md.append("|---|" + "---:|" * len(benches))
for arm in order:
    for label in sorted(arms[arm], key=lambda l: models[l]["seed"]):
        m = models[label]["benches"]
        def cell(b):
            if b not in m:
                return "–"
            if m[b]["accuracy_kind"] == "roc_auc":
                return f"AUC {num(m[b]['accuracy'])}"
            return f"{pct(m[b]['accuracy'])} ({pct(m[b]['ci95'][0])}–{pct(m[b]['ci95'][1])})"
        md.append(f"| {label} | " + " | ".join(cell(b) for b in benches) + " |")


def wilson(p, n):
    """95% Wilson interval of a proportion p over n units."""
    if not n or p is None:
        return None
    z = 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


# The paper's calibration curve on the held-out HH pairs: accuracy (95% Wilson interval) and coverage
# of the pairs whose reward gap is at least t, for each arm's first seed. Ordinal rewards live on the
# 1..4 scale; a BT reward is an unbounded logit, so its thresholds do not compare with the others'.
if "hh" in benches:
    ts = [0.0, 0.02, 0.04, 0.1, 0.2]
    md += ["", "Calibration curve on the held-out HH pairs (first seed of each arm): accuracy (95% Wilson "
           "interval) / coverage of the pairs with |Δr| ≥ t:", "",
           "| model | " + " | ".join(f"t = {t}" for t in ts) + " |", "|---|" + "---:|" * len(ts)]
    curves = {}
    for arm in order:
        label = min(arms[arm], key=lambda l: models[l]["seed"])
        curve = models[label]["benches"].get("hh", {}).get("threshold_curve") or []
        cells = []
        for t in ts:
            p = next((p for p in curve if abs(p["threshold"] - t) < 1e-9), None)
            if p is None or p["accuracy"] is None:
                cells.append("– / 0.0")
                continue
            lo, hi = wilson(p["accuracy"], p["pairs"])
            cells.append(f"{pct(p['accuracy'])} ({pct(lo)}–{pct(hi)}) / {pct(p['coverage'])}")
        curves[label] = curve
        md.append(f"| {label} | " + " | ".join(cells) + " |")
    summary["hh_threshold_curves"] = curves
open(f"{out}/summary.md", "w").write("\n".join(md) + "\n")
for m in models.values():  # the curves of the table above are kept; the rest are in the reports
    for b in m["benches"].values():
        b.pop("threshold_curve", None)
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print("\n".join(md))
