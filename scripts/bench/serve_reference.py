#!/usr/bin/env python3
"""The reference deployment (THU-KEG/WildReward deploy_rm/), rebuilt for the serving benchmark:

  worker  -- serve_rank.py: FastAPI + transformers, model loaded at start, POST /get_reward scores the
             request's texts in sequential chunks of BATCH_SIZE=16 in input order (no length sorting),
             padded to each chunk's longest, reward = 1 + sum(sigmoid(logits)) for 3 or 4 logits. The
             handler is `async` but runs the blocking forward, so a worker serves one request at a time.
  router  -- router.py: FastAPI, itertools.cycle round-robin over the backends, a new httpx.AsyncClient
             per request, 200 s timeout, the backend's JSON returned as is (errors as HTTP 200 bodies).

    python serve_reference.py worker --model <hf dir> --port P [--threads T] [--max-length N]
    python serve_reference.py router --backends http://127.0.0.1:P1,... --port P
"""
import argparse
import itertools

import uvicorn
from fastapi import FastAPI, Request


def worker_app(model_path, threads, max_length, batch_size=16):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, torch_dtype=torch.float32).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    app = FastAPI()

    @app.get("/")
    async def root():
        return {"message": "Reward Model API is running", "device": "cpu", "model_path": model_path,
                "batch_size": batch_size, "fp16": False}

    @app.post("/get_reward")
    async def get_reward(request: Request):
        data = await request.json()
        queries = data.get("query")
        if queries is None:
            return {"error": "Missing 'query' field in request body"}
        rewards = []
        for i in range(0, len(queries), batch_size):
            batch = queries[i:i + batch_size]
            enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            with torch.no_grad():
                logits = model(**enc).logits
            if logits.shape[-1] == 1:
                rewards += logits.squeeze(-1).tolist()
            elif logits.shape[-1] in (3, 4):
                rewards += (1 + torch.sigmoid(logits).sum(-1)).tolist()
            else:
                rewards += (logits.argmax(-1) + 1).tolist()
        return {"rewards": rewards}

    return app


def router_app(backends, timeout=200.0):
    import httpx

    cycle = itertools.cycle(backends)
    app = FastAPI()

    @app.get("/")
    async def root():
        return {"message": "Reward Router is running", "backends": backends, "timeout": timeout}

    @app.post("/get_reward")
    async def get_reward(request: Request):
        backend = next(cycle)
        body = await request.json()
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                r = await client.post(backend, json=body)
                r.raise_for_status()
                return r.json()
        except httpx.HTTPError as e:
            return {"error": f"Backend request failed: {e}", "backend": backend}

    return app


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="role", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--model", required=True)
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--threads", type=int, default=1)
    w.add_argument("--max-length", type=int, default=4096)
    r = sub.add_parser("router")
    r.add_argument("--backends", required=True)
    r.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    if a.role == "worker":
        app = worker_app(a.model, a.threads, a.max_length)
    else:
        app = router_app([b.rstrip("/") + "/get_reward" for b in a.backends.split(",")])
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
