"""Training throughput: tuneforge's data path vs TRL's SFTTrainer on the same model, data and hyperparameters.

    .venv/bin/python bench/train_throughput.py [--rows 64] [--full] [--skip-trl] [--profile]

Each side runs in its own subprocess (clean peak RSS, no shared caches): SmolLM2-135M-Instruct in fp32,
LoRA r=16 alpha=32 on all linear layers (or --full), AdamW lr 2e-4 with linear decay and grad-norm clip 1.0
(the Trainer defaults), batch 4, cutoff 512, 1 epoch over the first --rows Alpaca rows; validation loss on
the next --val-rows rows, computed by the same function for both. Tokens are the rendered, truncated
training sequences (the same count for both sides). Results go to bench/results/<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALPACA = REPO.parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"
MODEL = "smollm2-135m-instruct"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


# -- shared helpers (run inside each worker) --------------------------------------------------------
def load_rows(start: int, count: int) -> list[dict]:
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    return rows[start : start + count]


def to_conversation(row: dict):
    from tuneforge.data.records import Conversation, Turn

    prompt = "\n".join(part for part in (row["instruction"], row.get("input", "")) if part)
    return Conversation(turns=[Turn("user", prompt), Turn("assistant", row["output"])])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best observed fp32 GEMM rate with the current thread settings: the MFU denominator."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def build_model(full: bool):
    from peft import get_peft_model

    from tuneforge.models import load_model

    model, tokenizer = load_model(MODEL)
    model.config.use_cache = False
    if full:
        return model, tokenizer
    return get_peft_model(model, lora_config()), tokenizer


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def rendered(rows, tokenizer, cutoff: int):
    from tuneforge.train.tokcache import tokenize_dataset

    return tokenize_dataset([to_conversation(r) for r in rows], tokenizer, cutoff, "answer", None)


def validation_loss(model, tokenizer, args) -> float:
    """Token-weighted mean answer loss on the validation rows (same code for both sides)."""
    import torch

    from tuneforge.train.batching import LengthGroupedBatcher
    from tuneforge.train.loss import causal_lm_loss

    val = rendered(load_rows(args.rows, args.val_rows), tokenizer, args.cutoff).examples
    batcher = LengthGroupedBatcher(val, args.batch, seed=0, pad_id=tokenizer.pad_token_id)
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in batcher.batches(0):
            out = causal_lm_loss(model, batch)
            total, n = total + float(out.loss_sum), n + out.n_tokens
    return total / n


def model_flops(model, tokens: int, label_tokens: int, full: bool, seq_len: float) -> dict[str, float]:
    """FLOPs of one epoch, see docs/throughput.md.

    standard_6N: 6 * N * T with N = every weight a token's forward multiplies by (layers + lm_head, tied
    embeddings counted once as lm_head) -- the usual MFU convention. executed: what the path needs:
    frozen weights cost 2 (forward) + 2 (input gradient) per token, trainable ones 6; lm_head only at
    labelled positions; attention scores 4 * layers * d_model * seq per token forward, x3 with backward.
    """
    cfg = model.config
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings().weight.numel()
    body = sum(p.numel() for n, p in base.model.named_parameters() if p.dim() == 2 and "embed" not in n)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    attention = 3 * 4 * cfg.num_hidden_layers * cfg.hidden_size * seq_len * tokens
    if full:
        executed = 6 * body * tokens + 6 * head * label_tokens + attention
    else:
        frozen_body = body  # LoRA matrices are counted separately, at 6 flops per weight per token
        executed = 4 * frozen_body * tokens + 6 * trainable * tokens + 4 * head * label_tokens + attention
    return {"standard_6N": 6 * (body + head) * tokens, "executed": executed, "n_params_path": body + head}


# -- workers ----------------------------------------------------------------------------------------
def worker_tuneforge(args) -> dict:
    import torch

    from tuneforge.train.batching import LengthGroupedBatcher
    from tuneforge.train.loss import causal_lm_loss
    from tuneforge.train.threads import configure_threads

    threads = configure_threads(args.threads)
    peak = matmul_peak_flops()
    torch.manual_seed(0)
    model, tokenizer = build_model(args.full)
    rss_loaded = peak_rss_mb()
    data = rendered(load_rows(0, args.rows), tokenizer, args.cutoff)
    batcher = LengthGroupedBatcher(data.examples, args.batch, seed=0, pad_id=tokenizer.pad_token_id)
    batches = batcher.batches(0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / len(batches)))
    model.train()
    losses, profile = [], None
    t0, cpu0 = time.perf_counter(), time.process_time()
    for batch in batches:
        losses.append(train_step(model, batch, params, optimizer, schedule, args.micro_tokens))
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    rss_trained = peak_rss_mb()
    val_loss = validation_loss(model, tokenizer, args)
    if args.profile:  # after the measured epoch and validation: it changes none of the reported numbers
        model.train()
        profile = profiled_step(model, batches[min(1, len(batches) - 1)], params, optimizer, schedule,
                                args.micro_tokens)
    flops = model_flops(model, data.stats["tokens"], data.stats["label_tokens"], args.full,
                        seq_len=data.stats["tokens"] / max(len(data.examples), 1))
    return {
        "threads": threads,
        "train_s": train_s,
        "train_cpu_s": cpu_s,  # all threads' CPU time: less sensitive than wall time to a shared machine
        "steps": len(batches),
        "train_loss_mean": sum(losses) / len(losses),
        "train_loss_last": losses[-1],
        "val_loss": val_loss,
        "peak_rss_mb": rss_trained,
        "rss_after_load_mb": rss_loaded,
        "matmul_peak_gflops": peak / 1e9,
        "mfu_standard_6N": flops["standard_6N"] / train_s / peak,
        "mfu_executed": flops["executed"] / train_s / peak,
        "n_params_path": flops["n_params_path"],
        "profile": profile,
        **data.stats,
    }


def train_step(model, batch, params, optimizer, schedule, micro_tokens: int) -> float:
    """One optimizer step over the batch, run as token-budget micro-batches (exactly the batch gradient)."""
    import torch

    from tuneforge.train.loss import causal_lm_loss

    total = 0.0
    for part in batch.split(micro_tokens):
        out = causal_lm_loss(model, part)
        (out.loss_sum / batch.n_label_tokens).backward()
        total += out.loss_sum.item()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return total / batch.n_label_tokens


def profiled_step(model, batch, params, optimizer, schedule, micro_tokens: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss = train_step(model, batch, params, optimizer, schedule, micro_tokens)
    step_s = time.perf_counter() - t0
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40)
    return {"loss": loss, "step_s_profiled": step_s, "batch_tokens": batch.n_tokens,
            "batch_shape": list(batch.input_ids.shape), "top_ops": table}


def worker_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from tuneforge.train.threads import configure_threads

    threads = configure_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer = build_model(full=True)  # SFTTrainer applies the LoRA config itself
    rss_loaded = peak_rss_mb()
    rows = load_rows(0, args.rows)
    data = rendered(rows, tokenizer, args.cutoff)
    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": c.turns[0].content}],
         "completion": [{"role": "assistant", "content": c.turns[1].content}]}
        for c in map(to_conversation, rows)
    ])
    with tempfile.TemporaryDirectory() as out_dir:
        config = SFTConfig(
            output_dir=out_dir, per_device_train_batch_size=args.batch, num_train_epochs=1,
            learning_rate=args.lr, max_length=args.cutoff, bf16=False, report_to="none",
            save_strategy="no", logging_steps=1, seed=0, use_cpu=True, disable_tqdm=True,
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=None if args.full else lora_config())
        t0, cpu0 = time.perf_counter(), time.process_time()
        result = trainer.train()
        train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    rss_trained = peak_rss_mb()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "threads": threads,
        "train_s": train_s,
        "train_cpu_s": cpu_s,  # all threads' CPU time: less sensitive than wall time to a shared machine
        "steps": result.global_step,
        "train_loss_mean": result.training_loss,
        "train_loss_last": losses[-1] if losses else None,
        "val_loss": validation_loss(trainer.model, tokenizer, args),
        "peak_rss_mb": rss_trained,
        "rss_after_load_mb": rss_loaded,
        **data.stats,
    }


# -- driver -----------------------------------------------------------------------------------------
def run_worker(name: str, argv: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = f.name
    cmd = [sys.executable, __file__, "--worker", name, "--result", result_path, *argv]
    print(f"[bench] {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO)
    if proc.returncode != 0:
        return {"error": f"worker exited with {proc.returncode}"}
    result = json.loads(Path(result_path).read_text())
    os.unlink(result_path)
    result["wall_s"] = time.perf_counter() - t0
    print(f"[bench] {name}: " + json.dumps({k: v for k, v in result.items() if k != "profile"}), flush=True)
    return result


def summarize(results: dict) -> dict:
    tf, trl = results.get("tuneforge", {}), results.get("trl", {})
    for side in (tf, trl):
        if "train_s" in side:
            side["tokens_per_s"] = side["tokens"] / side["train_s"]
            side["tokens_per_cpu_s"] = side["tokens"] / side["train_cpu_s"]
    if "tokens_per_s" in tf and "tokens_per_s" in trl:
        return {
            "speedup_tokens_per_s": tf["tokens_per_s"] / trl["tokens_per_s"],
            "speedup_tokens_per_cpu_s": tf["tokens_per_cpu_s"] / trl["tokens_per_cpu_s"],
            "rss_ratio": tf["peak_rss_mb"] / trl["peak_rss_mb"],
            "val_loss_rel_diff": (tf["val_loss"] - trl["val_loss"]) / trl["val_loss"],
        }
    return {}


def print_table(results: dict) -> None:
    keys = ["tokens_per_s", "tokens_per_cpu_s", "train_s", "train_cpu_s", "steps", "peak_rss_mb", "train_loss_mean", "val_loss", "mfu_standard_6N",
            "mfu_executed", "matmul_peak_gflops"]
    print(f"{'':22}" + "".join(f"{name:>14}" for name in ("tuneforge", "trl")))
    for key in keys:
        cells = []
        for name in ("tuneforge", "trl"):
            value = results.get(name, {}).get(key)
            cells.append(f"{value:>14.4g}" if isinstance(value, (int, float)) else f"{'-':>14}")
        print(f"{key:22}" + "".join(cells))
    print(json.dumps(results.get("comparison", {}), indent=1))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=64, help="training rows (the first N of alpaca_en_demo)")
    p.add_argument("--val-rows", type=int, default=32, help="validation rows (the next N)")
    p.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    p.add_argument("--skip-trl", action="store_true", help="only run tuneforge's path")
    p.add_argument("--profile", action="store_true", help="torch.profiler on one extra tuneforge step, after the run")
    p.add_argument("--cutoff", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--micro-tokens", type=int, default=512,
                   help="tuneforge: padded tokens per micro-batch (same gradient, lower peak memory)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: physical cores)")
    p.add_argument("--out", type=Path, default=None, help="results file (default bench/results/<date>.json)")
    p.add_argument("--worker", choices=["tuneforge", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        sys.path.insert(0, str(REPO / "src"))
        result = (worker_tuneforge if args.worker == "tuneforge" else worker_trl)(args)
        args.result.write_text(json.dumps(result))
        return
    from tuneforge.models import hf_folder

    hf_folder(MODEL)  # convert the GGUF once, outside the timed and measured workers
    passthrough = [f"--rows={args.rows}", f"--val-rows={args.val_rows}", f"--cutoff={args.cutoff}",
                   f"--batch={args.batch}", f"--lr={args.lr}", f"--micro-tokens={args.micro_tokens}"]
    passthrough += ["--full"] * args.full + ["--profile"] * args.profile
    passthrough += [f"--threads={args.threads}"] if args.threads else []
    results: dict = {"tuneforge": run_worker("tuneforge", passthrough)}
    if not args.skip_trl:
        results["trl"] = run_worker("trl", passthrough)
    results["comparison"] = summarize(results)
    results["conditions"] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
        "model": MODEL,
        "rows": args.rows, "val_rows": args.val_rows, "cutoff": args.cutoff, "batch": args.batch,
        "lr": args.lr, "micro_tokens": args.micro_tokens, "method": "full" if args.full else "lora r16 a32 all-linear",
    }
    out = args.out or REPO / "bench" / "results" / f"{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"[bench] wrote {out}")


if __name__ == "__main__":
    main()
