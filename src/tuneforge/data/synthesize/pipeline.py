"""`synthesize`: grow a few seed tasks into `n` accepted examples (Self-Instruct / Stanford Alpaca, adapted).

Each round: sample seed (and accepted) tasks into few-shot prompts -> the generator writes new tasks ->
parse -> task filters (length, blocklist, garbage, language, duplicate, ROUGE-L novelty) -> outputs for the
survivors (a second, chat-template call, or inline in the same completion) -> output filters -> accept.
Every rejected candidate is kept with its reason. A seeded `random.Random` per round picks the examples
and a per-round torch seed drives sampling, so the same inputs give the same rows.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tuneforge.config.synthesize import SynthesizeConfig
from tuneforge.data.synthesize import filters as F
from tuneforge.data.synthesize.generators import Completion, Generator, as_completion, as_generator, build_generator
from tuneforge.data.synthesize.prompts import (
    Example,
    ParsedTask,
    output_prompt,
    parse_task,
    stop_strings,
    task_prompt,
    task_tokens,
)
from tuneforge.data.synthesize.report import build_report
from tuneforge.data.synthesize.seeds import Seed, load_seeds
from tuneforge.data.synthesize.store import Store


@dataclass
class SynthesisResult:
    accepted: list[dict[str, Any]]  # Alpaca rows (instruction, input, output, meta), earlier ones included
    rejected: list[dict[str, Any]]  # every rejected candidate: stage, reason, detail, texts, raw generation
    report: dict[str, Any]
    out_dir: Path | None = None

    @property
    def path(self) -> Path | None:
        return self.out_dir / "synthetic.jsonl" if self.out_dir else None


@dataclass
class _Candidate:
    number: int
    shown: list[str]
    raw: str
    finished: bool | None = None  # the task completion stopped by itself
    task: ParsedTask | None = None
    checked_upto: int = 0  # pool size when the task filters ran (later entries are checked at acceptance)
    output: Completion | None = None


@dataclass
class _Run:
    cfg: SynthesizeConfig
    seeds: list[Seed]
    generator: Generator
    store: Store
    pool: F.InstructionPool
    detect: Callable[[str], str | None] | None
    seed: int
    timing: dict[str, float] = field(default_factory=lambda: {"generation_s": 0.0})
    tokens: int | None = 0

    def generate(self, kind: str, prompts: list[str], **kwargs: Any) -> list[Completion]:
        start = time.perf_counter()
        call = self.generator.complete if kind == "complete" else self.generator.chat
        out = [as_completion(c) for c in call(prompts, **kwargs)]
        self.timing["generation_s"] += time.perf_counter() - start
        counted = [c.tokens for c in out]
        self.tokens = None if self.tokens is None or None in counted else self.tokens + sum(counted)
        return out


def synthesize(
    seeds: str | Path | Sequence[Any] | None = None,
    generator: Generator | Callable[[list[str]], Sequence[Any]] | None = None,
    n: int | None = None,
    *,
    config: SynthesizeConfig | None = None,
    out: str | Path | None = None,
    seed: int = 42,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> SynthesisResult:
    """Generate until `n` candidates are accepted (or `max_candidates` were tried).

    `seeds`: a file (Self-Instruct seed_tasks.jsonl, Alpaca, ShareGPT, OpenAI), dicts, records or `Seed`s
    (default `config.seeds`). `generator`: a `LocalGenerator`/`EndpointGenerator`, any callable
    `list[str] -> list[str]`, or None to build `config.generator`. `out`: a folder for synthetic.jsonl,
    rejected.jsonl and report.json (default `config.out`; None with neither keeps everything in memory)."""
    cfg = config or SynthesizeConfig()
    if n is not None:
        cfg = cfg.model_copy(update={"n": n})
    started = time.perf_counter()
    seed_list = load_seeds(seeds if seeds is not None else _required(cfg.seeds), cfg.max_seeds)
    store = Store(out if out is not None else cfg.out, cfg.if_exists)
    gen = as_generator(generator) if generator is not None else build_generator(cfg.generator)
    run = _Run(cfg, seed_list, gen, store, _pool(seed_list, store.accepted),
               F.language_detector(cfg.filter.languages, seed), seed)
    previous = store.previous
    rounds = max(int(previous.get("rounds", 0)), store.last_round)
    run.timing["generation_s"] += previous.get("time_s", {}).get("generation_s", 0.0)
    run.tokens = previous.get("generated_tokens", 0) if previous or not store.accepted else None
    budget = cfg.max_candidates or 10 * cfg.n
    stopped = "reached n"
    while len(store.accepted) < cfg.n:
        room = min(cfg.generator.batch_size, cfg.n - len(store.accepted), budget - store.candidates)
        if room <= 0:
            stopped = f"candidate budget spent ({budget}; raise synthesize.max_candidates)"
            break
        rounds += 1
        accepted, rejected = _round(run, rounds, room)
        store.add(accepted, rejected)
        report = _report(run, rounds, stopped if len(store.accepted) >= cfg.n else "running", started, previous)
        store.write_report(report)  # after every round, so a stopped run can be resumed
        if progress:
            progress({"round": rounds, "candidates": store.candidates, "accepted": len(store.accepted),
                      "target": cfg.n, "round_accepted": len(accepted), "round_candidates": room,
                      "elapsed_s": time.perf_counter() - started})
    report = _report(run, rounds, stopped, started, previous)
    store.write_report(report)
    return SynthesisResult(store.accepted, store.rejected, report, store.out_dir)


def _required(path: str | None) -> str:
    if not path:
        from tuneforge.errors import ConfigError

        raise ConfigError("no seed file: pass --seeds FILE or set synthesize.seeds")
    return path


def _pool(seeds: list[Seed], accepted: list[dict[str, Any]]) -> F.InstructionPool:
    pool = F.InstructionPool()
    for s in seeds:
        pool.add(s.instruction, s.input, s.id)
    for row in accepted:
        pool.add(row["instruction"], row.get("input", ""), row.get("meta", {}).get("id", "synthetic"))
    return pool


def _examples(run: _Run, rng: random.Random) -> list[Example]:
    """Self-Instruct's mix: mostly seed tasks, a few accepted machine tasks once there are some, shuffled."""
    p = run.cfg.prompt
    machine = min(p.machine_examples, len(run.store.accepted))
    shown = [Example(s.id, s.instruction, s.input, s.output)
             for s in rng.sample(run.seeds, min(p.num_examples - machine, len(run.seeds)))]
    for row in rng.sample(run.store.accepted, machine):
        shown.append(Example(row["meta"]["id"], row["instruction"], row["input"], row["output"]))
    rng.shuffle(shown)
    return shown


def _round(run: _Run, number: int, size: int) -> tuple[list[dict], list[dict]]:
    """One round: `size` task prompts -> task filters -> outputs for the survivors -> output filters."""
    torch_seed = (run.seed * 100_003 + number * 2) % (2**31)
    candidates = _new_tasks(run, number, size, torch_seed)
    rejected: list[dict] = []
    survivors = []
    for cand, why in ((c, _check_task(run, c)) for c in candidates):
        if why is None:
            survivors.append(cand)
        else:
            rejected.append(_rejected_row(run, cand, number, "task", why))
    _add_outputs(run, survivors, torch_seed + 1)
    accepted: list[dict] = []
    for cand, why in ((c, _check_final(run, c)) for c in survivors):
        if why is None:
            accepted.append(_accept(run, cand, number))  # in the pool at once: later survivors meet it
        else:
            rejected.append(_rejected_row(run, cand, number, "output", why))
    rejected.sort(key=lambda r: r["candidate"])
    return accepted, rejected


def _new_tasks(run: _Run, number: int, size: int, torch_seed: int) -> list[_Candidate]:
    cfg = run.cfg
    rng = random.Random(f"{run.seed}:{number}")
    shown = [_examples(run, rng) for _ in range(size)]
    raw = run.generate("complete", [task_prompt(ex, cfg.prompt) for ex in shown],
                       max_new_tokens=task_tokens(cfg.prompt), temperature=cfg.generator.temperature,
                       stop=stop_strings(cfg.prompt), seed=torch_seed)
    first = run.store.candidates
    return [_Candidate(first + i, [e.id for e in ex], c.text, finished=c.finished)
            for i, (ex, c) in enumerate(zip(shown, raw))]


def _add_outputs(run: _Run, survivors: list[_Candidate], seed: int) -> None:
    if run.cfg.prompt.output_mode == "inline":
        for cand in survivors:
            cand.output = Completion(cand.task.output or "", None, None)  # its cut-off was judged with the task
        return
    if not survivors:
        return
    outputs = run.generate("chat", [output_prompt(c.task.instruction, c.task.input) for c in survivors],
                           max_new_tokens=run.cfg.prompt.max_output_tokens,
                           temperature=run.cfg.generator.output_temperature, seed=seed)
    for cand, completion in zip(survivors, outputs):
        cand.output = completion


def _check_task(run: _Run, cand: _Candidate) -> F.Rejection | None:
    parsed = parse_task(cand.raw, run.cfg.prompt.output_mode == "inline", cand.finished)
    if isinstance(parsed, str):
        return F.Rejection("unparseable", parsed)
    cand.task = parsed
    if not parsed.complete:
        return F.Rejection("truncated", f"the task was cut off at max_task_tokens ({task_tokens(run.cfg.prompt)})")
    cand.checked_upto = len(run.pool)
    why, _, _ = F.check_task(parsed.instruction, parsed.input, run.cfg.filter, run.pool, run.detect)
    return why


def _check_final(run: _Run, cand: _Candidate) -> F.Rejection | None:
    task, out = cand.task, cand.output
    why = F.check_output(task.instruction, task.input, out.text, out.finished, run.cfg.filter, run.detect)
    if why is not None:
        return why
    # Tasks accepted earlier in this round were not in the pool when this one was checked.
    dup = run.pool.duplicate_of(task.instruction, task.input)
    if dup is not None:
        return F.Rejection("duplicate", f"same instruction and input as {dup}")
    score, where = run.pool.nearest(task.instruction, start=cand.checked_upto)
    return F.similar_rejection(score, where, run.cfg.filter, run.pool)


def _accept(run: _Run, cand: _Candidate, number: int) -> dict[str, Any]:
    task = cand.task
    to_seeds, nearest_seed = run.pool.nearest(task.instruction, 0, len(run.seeds))
    overall, nearest = run.pool.nearest(task.instruction)
    synthetic_id = f"synth-{len(run.pool) - len(run.seeds):05d}"  # the pool holds seeds + every accepted task
    row = {
        "instruction": task.instruction,
        "input": task.input,
        "output": cand.output.text.strip(),
        "meta": {
            "id": synthetic_id,
            "generator": run.generator.name,
            "seed_ids": cand.shown,
            "round": number,
            "candidate": cand.number,
            "rouge_l_to_seeds": round(to_seeds, 4),
            "nearest_seed": run.pool.origins[nearest_seed] if nearest_seed >= 0 else None,
            "rouge_l_to_pool": round(overall, 4),
        },
    }
    run.pool.add(task.instruction, task.input, synthetic_id)
    return row


def _rejected_row(run: _Run, cand: _Candidate, number: int, stage: str, why: F.Rejection) -> dict[str, Any]:
    task = cand.task
    return {
        "candidate": cand.number, "round": number, "stage": stage, "reason": why.reason, "detail": why.detail,
        "instruction": task.instruction if task else None, "input": task.input if task else None,
        "output": cand.output.text if cand.output else (task.output if task else None),
        "raw": cand.raw, "seed_ids": cand.shown, "generator": run.generator.name,
    }


def _report(run: _Run, rounds: int, stopped: str, started: float, previous: dict[str, Any]) -> dict[str, Any]:
    total = time.perf_counter() - started + previous.get("time_s", {}).get("total_s", 0.0)
    return build_report(
        accepted=run.store.accepted, rejected=run.store.rejected, seeds=run.seeds, target=run.cfg.n,
        stopped=stopped, generator=run.generator.name, timing={**run.timing, "total_s": total},
        tokens=run.tokens, rounds=rounds, tokenize=run.pool.tokenize,
        config=run.cfg.model_dump(mode="json"), seed=run.seed)


def synthesize_recipe(recipe: Any, *, generator: Any = None,
                      progress: Callable[[dict[str, Any]], None] | None = None) -> SynthesisResult:
    """A recipe's `synthesize:` section with its `seed`; the output folder defaults to
    <output_dir>/<name>-synth. `load_recipe` has made a relative seed path relative to the recipe's folder,
    as data paths are; `out`, like output_dir, is relative to the working directory."""
    cfg = recipe.synthesize
    out = cfg.out or str(Path(recipe.output_dir) / f"{recipe.name}-synth")
    return synthesize(_required(cfg.seeds), generator, config=cfg, out=out, seed=recipe.seed, progress=progress)
