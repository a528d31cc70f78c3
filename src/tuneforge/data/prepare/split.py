"""Step 5, split: seeded train/val/test by ratio or count, stratified by label for labelled data.

The unit of assignment is a near-duplicate cluster, so two near-identical examples never straddle splits
(clusters are recomputed here when dedup was off or kept members)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from tuneforge.data.prepare.config import DedupConfig, SplitConfig
from tuneforge.data.prepare.dedup import Clusters, find_clusters
from tuneforge.data.prepare.fields import compare_text, label_of
from tuneforge.data.prepare.ledger import Item, Ledger

SPLITS = ("train", "val", "test")


def _target(value: int | float, n: int, share: float) -> int:
    """Examples wanted from a stratum holding `share` of all examples (`n` in the stratum)."""
    if isinstance(value, float) and value < 1:
        return int(round(value * n))
    return int(round(value * share))


def _groups(items: list[Item], clusters: Clusters) -> dict[int, list[Item]]:
    groups: dict[int, list[Item]] = defaultdict(list)
    for item in items:
        groups[clusters.root.get(item.uid, item.uid)].append(item)
    return groups


def _cluster_items(items: list[Item], dedup: DedupConfig, state: dict) -> Clusters:
    known: Clusters | None = state.get("clusters")
    uids = {i.uid for i in items}
    if known is not None and state.get("clusters_near") and uids <= set(known.root):
        return known
    texts = {i.uid: compare_text(i.record, dedup.on) for i in items}
    clusters = find_clusters(texts, dedup, exact=True, near=True, signatures=state.setdefault("signatures", {}))
    state["clusters"], state["clusters_near"] = clusters, True
    return clusters


def assign_splits(items: list[Item], cfg: SplitConfig, val: int | float, test: int | float,
                  clusters: Clusters, seed: int) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    auto_groups: list[list[Item]] = []
    for root, members in sorted(_groups(items, clusters).items()):
        fixed = [m.split for m in members if m.split in SPLITS] if cfg.keep_source_splits else []
        if fixed:
            # a cluster touching a split the user brought follows it (leakage reports any conflict)
            for m in members:
                out[m.split if (m.split in SPLITS and cfg.keep_source_splits) else fixed[0]].append(m)
        else:
            auto_groups.append(members)
    labelled = bool(items) and all(label_of(i.record) is not None for i in items)
    stratify = cfg.stratify == "label" or (cfg.stratify == "auto" and labelled)
    strata: dict[str, list[list[Item]]] = defaultdict(list)
    for group in auto_groups:
        strata[str(label_of(group[0].record)) if stratify else ""].append(group)
    n_auto = sum(len(g) for g in auto_groups)
    rng = random.Random(seed)
    for key in sorted(strata):
        groups = strata[key]
        rng.shuffle(groups)
        n = sum(len(g) for g in groups)
        share = n / n_auto if n_auto else 0.0
        want = {"val": _target(val, n, share), "test": _target(test, n, share)}
        have = Counter()
        for group in groups:
            split = next((s for s in ("val", "test") if have[s] < want[s]), "train")
            have[split] += len(group)
            out[split].extend(group)
    for split in SPLITS:
        out[split].sort(key=lambda i: i.uid)
    return out


def run_split(items: list[Item], cfg: SplitConfig, dedup: DedupConfig, ledger: Ledger, state: dict,
              report: dict, val: int | float, test: int | float, seed: int) -> dict[str, list[Item]]:
    ledger.begin("split", items)
    if not cfg.enabled:
        ledger.steps[-1].skipped = "disabled: everything not assigned by its source goes to train"
        val, test = 0, 0
    clusters = _cluster_items(items, dedup, state)
    splits = assign_splits(items, cfg, val, test, clusters, seed)
    ledger.end(items)
    report.update({
        "counts": {s: len(v) for s, v in splits.items()},
        "requested": {"val": val, "test": test},
        "stratified": cfg.stratify == "label" or (
            cfg.stratify == "auto" and bool(items) and all(label_of(i.record) is not None for i in items)),
        "user_splits": sorted({i.split for i in items if i.split in SPLITS}),
        "label_balance": {s: dict(Counter(str(label_of(i.record)) for i in v))
                          for s, v in splits.items() if v and label_of(v[0].record) is not None},
    })
    return splits
