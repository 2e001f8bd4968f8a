#!/usr/bin/env python3
"""Concurrent load on a /get_reward endpoint (standard library only): `--concurrency` clients each send
requests of `--batch` texts back to back, `--requests` in all, as the reference's DPO client does
(`{"query": [...]}`, JSON `rewards` back). One warm-up request first, not timed. Prints one JSON line:
texts/s, requests/s, latency p50/p99, errors, and the rewards by text (to check both sides agree).

    python serve_load.py --url http://127.0.0.1:9000/get_reward --texts texts.jsonl \
        --concurrency 8 --batch 4 --requests 32 --label rust-2
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def post(url, body, timeout=600):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("POST", u.path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--label", default="")
    a = p.parse_args()
    texts = [json.loads(l)["text"] for l in open(a.texts)]
    batches = [[(k * a.batch + j) % len(texts) for j in range(a.batch)] for k in range(a.requests)]

    status, body = post(a.url, json.dumps({"query": [texts[i] for i in batches[0]]}))
    if status != 200 or "rewards" not in json.loads(body):
        raise SystemExit(f"warm-up failed: {status} {body[:300]!r}")

    lock = threading.Lock()
    next_request = [0]
    latencies, errors, rewards = [], [], {}

    def client():
        while True:
            with lock:
                k = next_request[0]
                next_request[0] += 1
            if k >= len(batches):
                return
            ids = batches[k]
            t = time.perf_counter()
            try:
                status, body = post(a.url, json.dumps({"query": [texts[i] for i in ids]}))
                answer = json.loads(body)
            except Exception as e:  # a failed request is counted, not fatal
                status, answer = None, {"error": repr(e)}
            dt = time.perf_counter() - t
            with lock:
                if status == 200 and "rewards" in answer and len(answer["rewards"]) == len(ids):
                    latencies.append(dt)
                    for i, r in zip(ids, answer["rewards"]):
                        rewards[i] = r
                else:
                    errors.append(f"{status}: {str(answer)[:200]}")

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - start
    done = len(latencies)
    print(json.dumps({
        "label": a.label, "concurrency": a.concurrency, "batch": a.batch, "requests": a.requests,
        "ok": done, "errors": len(errors), "error_samples": errors[:3], "seconds": secs,
        "texts_per_s": done * a.batch / secs, "requests_per_s": done / secs,
        "p50_ms": 1000 * percentile(latencies, 0.50) if latencies else None,
        "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else None,
        "mean_reward": sum(rewards.values()) / max(1, len(rewards)),
        "rewards": {str(k): v for k, v in sorted(rewards.items())},
    }))


if __name__ == "__main__":
    main()
