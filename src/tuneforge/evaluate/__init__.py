"""tuneforge.evaluate: score models on a test set, compare candidates, calibrate, audit bias, report.

    from tuneforge.evaluate import evaluate_model, compare_models, write_eval_report
    result = evaluate_model(model, tokenizer, records, metrics=["auto", "calibration"], out_dir="eval-out")
    ranked = compare_models(["smollm2-135m-instruct", "path/to/hf-folder"], records, out_dir="compare-out")
"""

from tuneforge.evaluate.api import EvalResult, evaluate_model
from tuneforge.evaluate.calibration import load_calibration
from tuneforge.evaluate.compare import CompareResult, compare_models
from tuneforge.evaluate.judge import JudgeConfig
from tuneforge.evaluate.report import write_eval_report

__all__ = [
    "CompareResult",
    "EvalResult",
    "JudgeConfig",
    "compare_models",
    "evaluate_model",
    "load_calibration",
    "write_eval_report",
]
