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


def _describe(item: Item, text: str, max_chars: int, removed: set[int]) -> dict:
    return {**where(item), "text": text[:max_chars], "removed_by_dedup": item.uid in removed}


def find_leaks(splits: dict[str, list[Item]], dedup: DedupConfig, threshold: float,
               index: MinHasher | None = None, max_chars: int = 300,
               removed: set[int] = frozenset()) -> list[dict]:
    """Every (a, b) pair from two different splits that is an exact or near duplicate.

    `index`: an LSH index (keyed by uid) that already holds every non-eval item at this threshold, e.g.
    the dedup step's; without one, the items are indexed here. Eval items (negative uids) only query."""
    split_of: dict[int, str] = {}
    texts: dict[int, str] = {}
    items: dict[int, Item] = {}
    for split, members in splits.items():
        for item in members:
            split_of[item.uid], items[item.uid] = split, item
            texts[item.uid] = compare_text(item.record, dedup.on)
    pairs: dict[tuple, dict] = {}

    def add(a: int, b: int, kind: str, sim: float) -> None:
        if split_of[a] == split_of[b]:
            return
        a, b = sorted((a, b), key=lambda u: (ORDER.get(split_of[u], 9), u))
        if (a, b) not in pairs or kind == "exact":
            pairs[(a, b)] = {"splits": f"{split_of[a]}/{split_of[b]}", "kind": kind, "similarity": round(sim, 3),
                             "a": _describe(items[a], texts[a], max_chars, removed),
                             "b": _describe(items[b], texts[b], max_chars, removed)}

    by_hash: dict[str, list[int]] = defaultdict(list)
    for uid, text in texts.items():
        by_hash[exact_key(text)].append(uid)
    for uids in by_hash.values():
        for n, a in enumerate(uids):
            for b in uids[n + 1:]:
                add(a, b, "exact", 1.0)
    pipeline = [u for u in texts if u >= 0]
    if index is None or index.threshold != threshold or any(u not in index.indexed for u in pipeline):
        index = MinHasher(threshold, dedup.num_perm, dedup.shingle_size)
        index.index(index.signatures({u: texts[u] for u in pipeline}))
    queries = {u: index.indexed[u] for u in pipeline if split_of[u] != "train"}
    queries.update(index.signatures({u: t for u, t in texts.items() if u < 0}))
    for uid, sig in queries.items():
        # every cross-split pair has a non-train side, so querying from val/test/eval finds them all
        for other, sim in index.similar(sig, exclude=uid):
            if other in split_of:  # the dedup index also holds examples removed as duplicates
                add(uid, other, "near", sim)
    return sorted(pairs.values(), key=lambda p: (p["splits"], -p["similarity"], p["a"]["uid"], p["b"]["uid"]))


def eval_items(records: list[Record], source: str) -> list[Item]:
    return [Item(uid=-(n + 1), record=r, split="eval", source=source) for n, r in enumerate(records)]


def run_leakage(splits: dict[str, list[Item]], cfg: LeakageConfig, dedup: DedupConfig, state: dict,
                report: dict, eval_records: list[Record] | None, eval_source: str | None,
                max_chars: int = 300) -> None:
    if not cfg.enabled:
        report["skipped"] = "disabled"
        return
    checked = {s: list(v) for s, v in splits.items() if v}
    # a split the user brought is checked as given: examples dedup removed from it still count as leaks
    removed = [i for i in state.get("dedup_removed", []) if i.split in ("train", "val", "test")]
    for item in removed:
        checked.setdefault(item.split, []).append(item)
    if eval_records:
        checked["eval"] = eval_items(eval_records, eval_source or "eval")
    threshold = cfg.threshold or dedup.threshold
    clusters = state.get("clusters")
    leaks = find_leaks(checked, dedup, threshold, getattr(clusters, "hasher", None), max_chars,
                       {i.uid for i in removed})
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
