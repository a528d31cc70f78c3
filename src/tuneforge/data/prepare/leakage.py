"""Step 6, leakage check: exact and near-duplicate overlap between splits (the user's own or ours) and
against an eval file. Reported with the pairs; nothing is removed."""

from __future__ import annotations

from collections import Counter, defaultdict

from tuneforge.data.prepare.config import DedupConfig, LeakageConfig
from tuneforge.data.prepare.dedup import MinHasher, exact_key
from tuneforge.data.prepare.fields import compare_text
from tuneforge.data.prepare.ledger import Item, where
from tuneforge.data.records import Record

ORDER = {"train": 0, "val": 1, "test": 2, "eval": 3}


def _describe(item: Item, text: str, max_chars: int) -> dict:
    return {**where(item), "text": text[:max_chars]}


def find_leaks(splits: dict[str, list[Item]], dedup: DedupConfig, threshold: float,
               signatures: dict | None = None, max_chars: int = 300) -> list[dict]:
    """Every (a, b) pair from two different splits that is an exact or near duplicate."""
    keyed: dict[tuple[str, int], tuple[Item, str]] = {}
    for split, items in splits.items():
        for item in items:
            keyed[(split, item.uid)] = (item, compare_text(item.record, dedup.on))
    pairs: dict[tuple, dict] = {}

    def add(a: tuple, b: tuple, kind: str, sim: float) -> None:
        if a[0] == b[0]:
            return
        a, b = sorted((a, b), key=lambda k: (ORDER.get(k[0], 9), k[1]))
        if (a, b) not in pairs or kind == "exact":
            pairs[(a, b)] = {"splits": f"{a[0]}/{b[0]}", "kind": kind, "similarity": round(sim, 3),
                             "a": _describe(keyed[a][0], keyed[a][1], max_chars),
                             "b": _describe(keyed[b][0], keyed[b][1], max_chars)}

    by_hash: dict[str, list[tuple]] = defaultdict(list)
    for key, (_, text) in keyed.items():
        by_hash[exact_key(text)].append(key)
    for keys in by_hash.values():
        for n, a in enumerate(keys):
            for b in keys[n + 1:]:
                add(a, b, "exact", 1.0)
    hasher = MinHasher(threshold, dedup.num_perm, dedup.shingle_size)
    cache = signatures if signatures is not None else {}
    sigs = {}
    for key, (item, text) in keyed.items():
        # the signature cache is keyed by uid and only valid for pipeline items (eval items use negative uids)
        sigs[key] = cache.get(item.uid) if item.uid >= 0 and item.uid in cache else hasher.signature(text)
    hasher.index(sigs)
    for key, sig in sigs.items():
        if key[0] == "train":
            continue  # every cross-split pair has a non-train side; query from there
        for other, sim in hasher.similar(sig, exclude=key):
            add(key, other, "near", sim)
    return sorted(pairs.values(), key=lambda p: (p["splits"], -p["similarity"], p["a"]["uid"], p["b"]["uid"]))


def eval_items(records: list[Record], source: str) -> list[Item]:
    return [Item(uid=-(n + 1), record=r, split="eval", source=source) for n, r in enumerate(records)]


def run_leakage(splits: dict[str, list[Item]], cfg: LeakageConfig, dedup: DedupConfig, state: dict,
                report: dict, eval_records: list[Record] | None, eval_source: str | None,
                max_chars: int = 300) -> None:
    if not cfg.enabled:
        report["skipped"] = "disabled"
        return
    checked = {s: v for s, v in splits.items() if v}
    if eval_records:
        checked["eval"] = eval_items(eval_records, eval_source or "eval")
    threshold = cfg.threshold or dedup.threshold
    leaks = find_leaks(checked, dedup, threshold, state.get("signatures"), max_chars)
    counts = Counter((p["splits"], p["kind"]) for p in leaks)
    by_pair: dict[str, list[dict]] = defaultdict(list)
    for p in leaks:
        if len(by_pair[p["splits"]]) < cfg.max_pairs:
            by_pair[p["splits"]].append(p)
    report.update({
        "threshold": threshold, "eval_data": eval_source, "checked": {s: len(v) for s, v in checked.items()},
        "user_splits": sorted({i.split for v in splits.values() for i in v if i.split in ORDER}),
        "counts": {f"{s} {k}": n for (s, k), n in sorted(counts.items())},
        "total": len(leaks), "pairs": dict(by_pair),
    })
