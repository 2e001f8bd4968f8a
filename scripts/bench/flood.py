#!/usr/bin/env python3
"""Flood a `wildreward serve` router (standard library only): `--clients` threads each send
`/get_reward` requests of `--batch` templated ShareGPT texts (answers cut to MIN..MAX words) back to
back for `--duration` seconds. A 429 is honoured: the client sleeps its Retry-After, then sends the
same request again. Writes a JSON report and prints a markdown row: requests admitted, 429s, 5xx,
other failures, admitted latency p50 / p99 (the try that got 200, from send to answer) against the
bound, Retry-After values seen, texts/s, and the workers' measured seconds per token.

    python3 flood.py --url http://127.0.0.1:9000 --clients 96 --batch 16 --duration 120 --bound 4
"""
import argparse
import collections
import gzip
import http.client
import json
import platform
import random
import subprocess
import threading
import time
import urllib.parse

# The reference's build_text (crates/wildreward-types/src/template.rs), first turn.
HEADER = ("# Task Description\nYou are an expert conversation evaluator. Your task is to judge the **User's "
          "Satisfaction** with the Assistant's response based on the conversation context.\nPlease rate the "
          "response on a scale of 1 to 5 integers.\n\n# Scoring Criteria\n[1] CLEARLY NEGATIVE / REJECTION\n"
          "[2] CORRECTION / ERROR POINTER (Negative)\n[3] NEUTRAL\n[4] POSITIVE ENGAGEMENT\n[5] CLEAR "
          "SATISFACTION\n\n# Input Data\n## Context (History)\n")
FOOTER = "# Output\nBased on the criteria above, please output ONLY the integer score (1, 2, 3, 4, or 5)."


def build_text(query, response):
    return (HEADER + "No previous context." + "\n\n## User Query\n" + query + "\n\n## Assistant Response\n"
            + response + "\n\n" + FOOTER)


def texts(lo, hi, n=1024):
    rng = random.Random(0)
    out = []
    for line in gzip.open("data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz", "rt"):
        turns = json.loads(line)["conversations"]
        for q, a in zip(turns, turns[1:]):
            if q["from"] == "human" and a["from"] == "gpt" and q["value"].strip() and len(a["value"].split()) > hi:
                words = a["value"].split()[: rng.randint(lo, hi)]
                out.append(build_text(" ".join(q["value"].split()[:40]), " ".join(words)))
        if len(out) >= n:
            return out[:n]
    return out


def post(base, path, body, timeout=600):
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.getheader("Retry-After"), r.read()
    finally:
        conn.close()


def get(base, path):
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))] if s else float("nan")


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--clients", type=int, default=96)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--duration", type=float, default=120)
    p.add_argument("--min-words", type=int, default=40)
    p.add_argument("--max-words", type=int, default=120)
    p.add_argument("--bound", type=float, required=True, help="the server's --max-queue-seconds")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="flood.json")
    a = p.parse_args()
    pool = texts(a.min_words, a.max_words)
    lock = threading.Lock()
    latencies, retry_after, statuses = [], collections.Counter(), collections.Counter()
    failures, texts_done = [], [0]
    stop_at = time.monotonic() + a.duration

    def client(c):
        rng = random.Random(c)
        while time.monotonic() < stop_at:
            body = json.dumps({"query": [pool[rng.randrange(len(pool))] for _ in range(a.batch)]})
            while time.monotonic() < stop_at:
                t0 = time.monotonic()
                try:
                    status, retry, raw = post(a.url, "/get_reward", body)
                except OSError as e:
                    with lock:
                        failures.append(f"connection: {e}")
                    break
                took = time.monotonic() - t0
                with lock:
                    statuses[status] += 1
                if status == 429:
                    wait = float(retry or 1)
                    with lock:
                        retry_after[int(wait)] += 1
                    time.sleep(wait)
                    continue
                with lock:
                    if status == 200:
                        latencies.append(took)
                        texts_done[0] += a.batch
                    else:
                        failures.append(f"{status}: {raw[:200]!r}")
                break

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    info = get(a.url, "/")
    spt = []
    for w in info.get("workers", []):
        try:
            spt.append(get(w["url"], "/")["backlog"]["seconds_per_token"])
        except (OSError, KeyError, TypeError, ValueError):
            pass
    five = sum(v for k, v in statuses.items() if 500 <= k < 600)
    report = {
        "cpu": cpu_name(), "clients": a.clients, "texts_per_request": a.batch, "duration_s": a.duration,
        "workers": a.workers, "bound_s": a.bound, "words": [a.min_words, a.max_words],
        "statuses": dict(statuses), "admitted": len(latencies), "too_many_requests": statuses.get(429, 0),
        "server_errors": five, "other_failures": failures[:20], "failures": len(failures),
        "p50_s": percentile(latencies, 0.50), "p99_s": percentile(latencies, 0.99),
        "max_s": max(latencies, default=float("nan")), "retry_after_s": dict(sorted(retry_after.items())),
        "texts_per_s": texts_done[0] / elapsed, "seconds_per_token": spt,
    }
    try:
        report["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                          text=True).stdout.strip()
    except OSError:
        pass
    json.dump(report, open(a.out, "w"), indent=2)
    print("| CPU | clients × texts | workers | bound | admitted | 429 | 5xx | p50 / p99 / max s | Retry-After s (count) | texts/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ra = ", ".join(f"{k} ({v})" for k, v in sorted(retry_after.items()))
    print(f"| {report['cpu']} | {a.clients} × {a.batch} | {a.workers} | {a.bound:g} s | {len(latencies)} | "
          f"{report['too_many_requests']} | {five} | {report['p50_s']:.2f} / {report['p99_s']:.2f} / "
          f"{report['max_s']:.2f} | {ra} | {report['texts_per_s']:.1f} |")


if __name__ == "__main__":
    main()
