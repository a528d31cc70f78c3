"""Step 4, deduplicate: exact (normalized-text hash) and near duplicates (MinHash LSH over word shingles,
candidate pairs verified by estimated Jaccard, clusters by union-find). Also used by split and leakage."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from tuneforge.data.prepare.config import DedupConfig
from tuneforge.data.prepare.fields import compare_text
from tuneforge.data.prepare.ledger import Item, Ledger
from tuneforge.errors import UnsupportedHere

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
# ASCII punctuation -> space: str.translate is ~10x faster than the \W regex; non-ASCII text uses the regex.
_ASCII_PUNCT = str.maketrans({c: " " for c in map(chr, range(128)) if not c.isalnum() and not c.isspace()})


def canonical(text: str) -> str:
    """Case, punctuation and whitespace do not make two examples different."""
    text = text.casefold()
    if text.isascii():
        return " ".join(text.translate(_ASCII_PUNCT).split())
    return _NON_WORD.sub(" ", text).strip()


def exact_key(text: str) -> str:
    return hashlib.sha1(canonical(text).encode("utf-8")).hexdigest()


_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5],
                dtype=np.uint64)


def shingle_hashes(texts: list[str], size: int) -> list[np.ndarray]:
    """Per text, the 64-bit hashes of its word `size`-shingles (canonical text).

    Hand-written instead of feeding shingle strings to datasketch's hashfunc (a Python join + encode +
    sha1 per shingle): all words of a batch of texts are hashed in one vectorized, process-independent
    call (pandas' siphash, unlike hash()), and shingle hashes are combined from word hashes with numpy."""
    import pandas as pd

    words = [canonical(t).split() or [""] for t in texts]
    flat = pd.util.hash_array(np.array(list(chain.from_iterable(words)), dtype=object))
    out, start = [], 0
    for ws in words:
        ids = flat[start:start + len(ws)]
        start += len(ws)
        k = min(size, len(ws))
        n = len(ws) - k + 1
        combined = ids[:n].copy()
        for offset in range(1, k):
            combined = combined * _MIX[offset % len(_MIX)] + ids[offset:n + offset]
        out.append(combined)
    return out


class MinHasher:
    """MinHash signatures and an LSH index (datasketch).

    The signature values are computed here with numpy (multiply-shift hashing: the top 32 bits of
    a*h+b mod 2^64 for odd random a, a universal family) straight from the 64-bit shingle hashes, then
    wrapped in datasketch MinHash objects for its LSH index and Jaccard estimate. This skips datasketch's
    per-shingle Python hashfunc call, the largest cost of the dedup step on 52k rows."""

    def __init__(self, threshold: float, num_perm: int, shingle_size: int, seed: int = 1) -> None:
        try:
            from datasketch import MinHash, MinHashLSH
        except ImportError:
            raise UnsupportedHere("near-duplicate detection needs datasketch: pip install 'tuneforge[data]'") from None
        self._minhash = MinHash
        rng = np.random.default_rng(seed)
        self._a = rng.integers(0, 1 << 63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._b = rng.integers(0, 1 << 63, num_perm, dtype=np.uint64)
        self.num_perm, self.shingle_size, self.threshold = num_perm, shingle_size, threshold
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.indexed: dict = {}
        # datasketch builds permutations per MinHash unless given; ours are unused but sharing them is free
        self._perms = MinHash(num_perm=num_perm, seed=seed).permutations

    def signatures(self, texts: dict) -> dict:
        """key -> MinHash for every text."""
        out = {}
        keys, values = list(texts), list(texts.values())
        for start in range(0, len(keys), 2048):  # chunks bound the memory of the word arrays
            hashes = shingle_hashes(values[start:start + 2048], self.shingle_size)
            for key, row in zip(keys[start:start + 2048], self._min_values(hashes)):
                out[key] = self._minhash(hashvalues=row, permutations=self._perms, scheme="affine32")
        return out

    def _min_values(self, hashes: list[np.ndarray]) -> list[np.ndarray]:
        # One small (shingles x num_perm) product per text stays in cache: measured 4x faster than
        # np.minimum.reduceat over blocks of concatenated texts.
        shift = np.uint64(32)
        return [((h[:, None] * self._a + self._b) >> shift).min(axis=0).astype(np.uint32) for h in hashes]

    def index(self, signatures: dict) -> None:
        self.indexed.update(signatures)
        with self.lsh.insertion_session() as session:
            for key, sig in signatures.items():
                session.insert(key, sig, check_duplication=False)

    def similar(self, signature, exclude=None) -> list[tuple[object, float]]:
        """Indexed keys whose estimated Jaccard with `signature` is >= threshold (LSH candidates, verified)."""
        return [(key, j) for key in self.lsh.query(signature) if key != exclude
                for j in [signature.jaccard(self.indexed[key])] if j >= self.threshold]


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the smallest uid is the root: deterministic


@dataclass
class Clusters:
    """Duplicate clusters over item uids: `root[uid]` is the cluster id (its smallest uid)."""

    root: dict[int, int] = field(default_factory=dict)
    similarity: dict[tuple[int, int], float] = field(default_factory=dict)  # verified pairs
    exact_pairs: int = 0
    hasher: "MinHasher | None" = None  # the LSH index over all clustered uids (reused by leakage)

    def members(self) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = defaultdict(list)
        for uid, root in self.root.items():
            groups[root].append(uid)
        return {r: sorted(m) for r, m in groups.items() if len(m) > 1}


def find_clusters(texts: dict[int, str], cfg: DedupConfig, exact: bool = True, near: bool = True,
                  signatures: dict | None = None) -> Clusters:
    """`signatures` (uid -> MinHash) is filled and reused, so split and leakage do not hash twice."""
    uf = UnionFind()
    out = Clusters()
    for uid in texts:
        uf.find(uid)
    if exact:
        first_of: dict[str, int] = {}
        for uid, text in texts.items():
            key = exact_key(text)
            if key in first_of:
                uf.union(first_of[key], uid)
                out.similarity[(first_of[key], uid)] = 1.0
                out.exact_pairs += 1
            else:
                first_of[key] = uid
    if near and len(texts) > 1:
        hasher = MinHasher(cfg.threshold, cfg.num_perm, cfg.shingle_size)
        cache = signatures if signatures is not None else {}
        cache.update(hasher.signatures({uid: t for uid, t in texts.items() if uid not in cache}))
        sigs = {uid: cache[uid] for uid in texts}
        hasher.index(sigs)
        out.hasher = hasher
        for uid, sig in sigs.items():
            for other, j in hasher.similar(sig, exclude=uid):
                if other > uid:
                    out.similarity.setdefault((uid, other), j)
                    uf.union(uid, other)
    out.root = {uid: uf.find(uid) for uid in texts}
    return out


def _representative(members: list[int], texts: dict[int, str], keep: str) -> int:
    if keep == "longest":
        return max(members, key=lambda u: (len(texts[u]), -u))
    return members[0]


def run_dedup(items: list[Item], cfg: DedupConfig, ledger: Ledger, state: dict, report: dict,
              max_clusters: int = 10, max_chars: int = 300) -> list[Item]:
    if not cfg.enabled or not (cfg.exact or cfg.near):
        return ledger.skip("dedup", items, "disabled")
    ledger.begin("dedup", items)
    texts = {i.uid: compare_text(i.record, cfg.on) for i in items}
    clusters = find_clusters(texts, cfg, exact=cfg.exact, near=cfg.near, signatures=state.setdefault("signatures", {}))
    state["clusters"], state["clusters_near"] = clusters, cfg.near
    by_uid = {i.uid: i for i in items}
    drop: set[int] = set()
    summary = []
    for root, members in clusters.members().items():
        keep = _representative(members, texts, cfg.keep)
        keep_key = exact_key(texts[keep])
        for uid in members:
            if uid == keep:
                continue
            drop.add(uid)
            reason = "exact_duplicate" if exact_key(texts[uid]) == keep_key else "near_duplicate"
            ledger.remove(by_uid[uid], reason, detail=f"duplicate of uid {keep}", kept_uid=keep, cluster=root)
        summary.append({"cluster": root, "size": len(members), "kept_uid": keep,
                        "texts": [texts[u][:max_chars] for u in members[:5]]})
    summary.sort(key=lambda c: (-c["size"], c["cluster"]))
    report.update({"clusters": len(summary), "in_clusters": sum(c["size"] for c in summary),
                   "biggest_clusters": summary[:max_clusters], "threshold": cfg.threshold,
                   "shingle_size": cfg.shingle_size, "num_perm": cfg.num_perm, "compared": cfg.on})
    state["dedup_removed"] = [by_uid[u] for u in sorted(drop)]  # leakage still checks the user's splits
    return ledger.end([i for i in items if i.uid not in drop])
