"""Does an exported model still do its job? Export a trained run (LoRA merged) to GGUF and compare greedy
answers on held-out prompts: the merged HF model, the GGUF read back by transformers, and the GGUF run by
llama.cpp itself (optional, through llama-cpp-python in a separate venv).

Run by hand (after `make demo`, which leaves a run and its prepared test split):
    python bench/export_roundtrip.py --run runs/support-json-<stamp> --data runs/support-json-prepared/test.jsonl
    # llama.cpp side (optional): a venv with llama-cpp-python built from PyPI's sdist, e.g.
    #   python3 -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install llama-cpp-python numpy
    python bench/export_roundtrip.py ... --llama-python /tmp/llvenv/bin/python
Writes bench/results/export_roundtrip-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def llamacpp_worker(spec_path: str) -> None:
    """Runs under the llama.cpp venv (no tuneforge there): tokenize each prompt, greedy-decode from the ids."""
    from llama_cpp import Llama

    spec = json.loads(Path(spec_path).read_text())
    llm = Llama(model_path=spec["gguf"], n_ctx=1024, n_threads=spec["threads"], verbose=False)
    out = []
    for prompt, want_ids in zip(spec["prompts"], spec["ids"]):
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        done = llm.create_completion(want_ids, max_tokens=spec["max_new_tokens"], temperature=0.0,
                                     stop=spec["stop"])
        out.append({"ids_equal": ids == want_ids, "text": done["choices"][0]["text"]})
    print(json.dumps(out))


def greedy(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    import torch

    from tuneforge.models.stopping import stop_token_ids

    stops = stop_token_ids(model, tokenizer)
    answers = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id)
        answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return answers


def score(answers: list[str], references: list[str]) -> dict[str, float]:
    def parsed(text):
        try:
            return json.loads(text)
        except ValueError:
            return None
    exact = [parsed(a) is not None and parsed(a) == parsed(r) for a, r in zip(answers, references)]
    return {"json_exact_match": sum(exact) / len(exact),
            "json_valid": sum(parsed(a) is not None for a in answers) / len(answers)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True, help="chat JSONL with the reference answer last")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--quant", nargs="+", default=["f16", "q8_0", "q4_0"])
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--llama-python", help="python of a venv with llama-cpp-python")
    parser.add_argument("--out", default=f"bench/results/export_roundtrip-{dt.date.today()}.json")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.export import export_model

    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()][:args.limit]
    work = Path(tempfile.mkdtemp(prefix="tf-export-"))
    started = time.time()
    hf = export_model(args.run, work / "hf", format="hf")
    report = {"run": args.run, "prompts": len(rows), "hf_export_s": round(time.time() - started, 1)}
    model = AutoModelForCausalLM.from_pretrained(hf.out_dir)
    tokenizer = AutoTokenizer.from_pretrained(hf.out_dir)
    prompts = [tokenizer.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
               for r in rows]
    references = [r["messages"][-1]["content"] for r in rows]
    base_answers = greedy(model, tokenizer, prompts, args.max_new_tokens)
    report["merged_hf"] = score(base_answers, references)
    for quant in args.quant:
        started = time.time()
        result = export_model(args.run, work / quant, format="ollama", quant=quant, name="support-json")
        entry = {"export_s": round(time.time() - started, 1), "size_mb": round(result.details["size_bytes"] / 1e6, 1)}
        gguf_path = result.files[0]
        back = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        answers = greedy(back, tokenizer, prompts, args.max_new_tokens)
        entry["transformers_readback"] = {**score(answers, references),
                                          "same_as_merged": sum(a == b for a, b in zip(answers, base_answers)) / len(rows)}
        if args.llama_python:
            entry["llama_cpp"] = run_llamacpp(args, gguf_path, tokenizer, prompts, references, base_answers)
        report[quant] = entry
        print(quant, json.dumps(entry), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def run_llamacpp(args, gguf_path: Path, tokenizer, prompts, references, base_answers) -> dict:
    spec = {"gguf": str(gguf_path), "prompts": prompts, "threads": args.threads,
            "ids": [tokenizer(p, add_special_tokens=False).input_ids for p in prompts],
            "max_new_tokens": args.max_new_tokens, "stop": ["<|im_end|>", "<|endoftext|>"]}
    spec_path = gguf_path.parent / "llamacpp_spec.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run([args.llama_python, __file__, "--worker", str(spec_path)], capture_output=True,
                          text=True, check=True)
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    answers = [r["text"].strip() for r in rows]
    return {**score(answers, references), "prompt_ids_equal": sum(r["ids_equal"] for r in rows) / len(rows),
            "same_as_merged": sum(a == b for a, b in zip(answers, base_answers)) / len(rows)}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        llamacpp_worker(sys.argv[2])
    else:
        main()
