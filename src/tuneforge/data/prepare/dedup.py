"""Step 4, deduplicate: exact (normalized-text hash) and near duplicates (MinHash LSH over word shingles,
candidate pairs verified by estimated Jaccard, clusters by union-find). Also used by split and leakage."""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass, field

from tuneforge.data.prepare.config import DedupConfig
from tuneforge.data.prepare.fields import compare_text
from tuneforge.data.prepare.ledger import Item, Ledger
from tuneforge.errors import UnsupportedHere

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def canonical(text: str) -> str:
    """Case, punctuation and whitespace do not make two examples different."""
    return _NON_WORD.sub(" ", text.casefold()).strip()


def exact_key(text: str) -> str:
    return hashlib.sha1(canonical(text).encode("utf-8")).hexdigest()


def shingles(text: str, size: int) -> set[bytes]:
    words = canonical(text).split()
    if len(words) <= size:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i:i + size]).encode("utf-8") for i in range(len(words) - size + 1)}


def _crc32(data: bytes) -> int:
    # zlib.crc32 is ~10x faster than datasketch's default sha1 and deterministic across processes
    # (unlike hash()); the MinHash permutations on top of it do the randomizing.
    return zlib.crc32(data)


class MinHasher:
    """MinHash signatures and an LSH index (datasketch), permutations shared by all signatures."""

    def __init__(self, threshold: float, num_perm: int, shingle_size: int) -> None:
        try:
            from datasketch import MinHash, MinHashLSH
        except ImportError:
            raise UnsupportedHere("near-duplicate detection needs datasketch: pip install 'tuneforge[data]'") from None
        self._minhash = MinHash
        self.template = MinHash(num_perm=num_perm, seed=1, hashfunc=_crc32)
        self.num_perm, self.shingle_size, self.threshold = num_perm, shingle_size, threshold
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.indexed: dict = {}

    def signature(self, text: str):
        m = self._minhash(num_perm=self.num_perm, hashfunc=_crc32, permutations=self.template.permutations,
                            scheme=self.template.scheme)
        m.update_batch(shingles(text, self.shingle_size))
        return m

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
        sigs = {uid: cache[uid] if uid in cache else hasher.signature(text) for uid, text in texts.items()}
        cache.update(sigs)
        hasher.index(sigs)
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
    return ledger.end([i for i in items if i.uid not in drop])
