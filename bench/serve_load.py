"""Load test of `tuneforge serve`: N concurrent clients on loopback, batched server vs one-at-a-time.

    python bench/serve_load.py                      # 50 clients x 60 s per server, smollm2-135m-instruct
    python bench/serve_load.py --duration 10 --clients 8 --model /path/to/tiny   # a quick look

Each client loops: chat completion (max_tokens 16, greedy) then a feedback row (+1/-1) for it.
Reports requests/s, p50/p95 latency, 5xx count (must be 0), 429s, and feedback rows in the database
vs feedback acknowledged (must be equal). Writes bench/results/serve_load-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
ALPACA = REPO.parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"


def prompts() -> list[str]:
    if ALPACA.is_file():
        rows = json.loads(ALPACA.read_text(encoding="utf-8"))
        return [(r["instruction"] + "\n" + r.get("input", "")).strip()[:400] for r in rows]
    return [f"Give me {i} tips for staying healthy." for i in range(100)]


def start_server(model: str, port: int, db: Path, max_batch: int, threads: int, queue: int,
                 scheduler: str) -> subprocess.Popen:
    args = ["serve", model, "--port", str(port), "--db", str(db), "--max-batch", str(max_batch),
            "--queue", str(queue), "--threads", str(threads), "--scheduler", scheduler]
    code = f"from tuneforge.cli import main; main({args!r})"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not become ready")


async def client_loop(client: httpx.AsyncClient, model: str, texts: list[str], max_tokens: tuple[int, int],
                      stop_at: float, stats: dict, rng: random.Random) -> None:
    while time.monotonic() < stop_at:
        body = {"model": model, "max_tokens": rng.randint(*max_tokens), "temperature": 0,
                "messages": [{"role": "user", "content": rng.choice(texts)}]}
        t0 = time.monotonic()
        try:
            r = await client.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            stats["transport_errors"].append(type(exc).__name__)
            continue
        stats["status"][r.status_code] = stats["status"].get(r.status_code, 0) + 1
        if r.status_code != 200:
            await asyncio.sleep(0.05)
            continue
        stats["latency"].append(time.monotonic() - t0)
        stats["completion_tokens"] += r.json()["usage"]["completion_tokens"]
        fb = await client.post("/v1/feedback", json={"response_id": r.json()["id"], "rating": rng.choice([1, -1])})
        stats["feedback_sent"] += 1
        stats["feedback_ok"] += fb.status_code == 200


async def load(url: str, model: str, clients: int, duration: float, max_tokens: tuple[int, int],
               texts: list[str]) -> dict:
    stats = {"status": {}, "latency": [], "feedback_sent": 0, "feedback_ok": 0, "completion_tokens": 0,
             "transport_errors": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        start = time.monotonic()
        await asyncio.gather(*(client_loop(client, model, texts, max_tokens, start + duration, stats,
                                           random.Random(i)) for i in range(clients)))
        stats["elapsed_s"] = time.monotonic() - start  # includes draining the last in-flight requests
    return stats


def summarize(stats: dict, db: Path) -> dict:
    lat = np.array(stats["latency"]) if stats["latency"] else np.array([float("nan")])
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        logged = conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
    ok = stats["status"].get(200, 0)
    return {
        "requests_ok": ok, "elapsed_s": round(stats["elapsed_s"], 2),
        "requests_per_s": round(ok / stats["elapsed_s"], 3),
        "tokens_per_s": round(stats["completion_tokens"] / stats["elapsed_s"], 2),
        "latency_p50_s": round(float(np.percentile(lat, 50)), 3),
        "latency_p95_s": round(float(np.percentile(lat, 95)), 3),
        "status_counts": {str(k): v for k, v in sorted(stats["status"].items())},
        "http_5xx": sum(v for k, v in stats["status"].items() if k >= 500),
        "transport_errors": len(stats["transport_errors"]),
        "feedback_sent": stats["feedback_sent"], "feedback_acknowledged": stats["feedback_ok"],
        "feedback_rows_in_db": rows, "completions_logged": logged,
    }


def run_one(args, max_batch: int, scheduler: str, texts: list[str], workdir: Path) -> dict:
    from tuneforge.serve.launch import free_port

    port, db = free_port(), workdir / f"feedback-{scheduler}-b{max_batch}.sqlite"
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args.model, port, db, max_batch, args.threads, args.queue, scheduler)
    try:
        wait_ready(proc, url)
        model = httpx.get(url + "/v1/models").json()["data"][0]["id"]
        httpx.post(url + "/v1/chat/completions", timeout=300, json={  # warm-up, not counted
            "model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
        load_before = os.getloadavg()[0]
        lo_hi = tuple(int(v) for v in args.max_tokens_mix.split(",")) if args.max_tokens_mix else (
            args.max_tokens, args.max_tokens)
        stats = asyncio.run(load(url, model, args.clients, args.duration, lo_hi, texts))
        result = summarize(stats, db)
        result["max_batch"], result["scheduler"] = max_batch, scheduler
        result["loadavg_1m_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        result["server_batches"] = httpx.get(url + "/health").json()
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--max-tokens-mix", default=None, metavar="LO,HI",
                        help="each request draws max_tokens uniformly from LO..HI (mixed output lengths)")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--queue", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--schedulers", default="continuous,static", help="batched servers to measure")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    texts = prompts()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {f"batched_{name}": run_one(args, args.max_batch, name, texts, Path(tmp))
                for name in args.schedulers.split(",")}
        if not args.no_baseline:
            runs["one_at_a_time"] = run_one(args, 1, "static", texts, Path(tmp))
    report = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/serve_load.py", *sys.argv[1:]]),
        "model": args.model, "clients": args.clients, "duration_s": args.duration,
        "max_tokens": args.max_tokens_mix or args.max_tokens, "threads": args.threads, "cpu_count": os.cpu_count(),
        "note": "shared 2-core machine, other engineers' jobs running; loopback; greedy decoding",
        **runs,
    }
    if "one_at_a_time" in runs and runs["one_at_a_time"]["requests_per_s"]:
        for name, r in runs.items():
            if name != "one_at_a_time":
                report[f"throughput_ratio_{name}_vs_one"] = round(
                    r["requests_per_s"] / runs["one_at_a_time"]["requests_per_s"], 2)
    out = Path(args.out or REPO / "bench" / "results" / f"serve_load-{dt.date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    print(f"written to {out}")
    ok = all(r["http_5xx"] == 0 and r["feedback_rows_in_db"] == r["feedback_acknowledged"] for r in runs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
