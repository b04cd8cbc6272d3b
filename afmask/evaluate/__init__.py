"""Evaluation of an explanation: renditions, re-decoding, deletion/insertion curves, sanity checks.

Importance per time-frequency point comes from m over its (Re, Im) pair: the
bin's noise scale is ``sqrt((m_re^2 + m_im^2) / 2)`` and importance is minus
its log, so small noise scale = important (:mod:`afmask.evaluate.importance`).
"""

from afmask.evaluate.controls import (
    blind_test,
    energy_strata,
    evaluate_map,
    plausibility,
    stratified_deletion,
    tie_broken_order,
    ties,
)
from afmask.evaluate.curves import (
    Curve,
    apply_mask,
    auc,
    compute_curves,
    percent_grid,
    removal_mask,
)
from afmask.evaluate.evaluation import (
    CURVES_FILE,
    EVALUATION_FILE,
    RENDITIONS_DIR,
    EvaluationResult,
    EvaluationSettings,
    evaluate,
    evaluate_into,
    find_transcript,
    find_words,
    half_verdict,
    read_evaluation,
)
from afmask.evaluate.importance import bin_scale, importance, ranking
from afmask.evaluate.renditions import (
    Rendition,
    render,
    rendition_magnitudes,
    rendition_plan,
)
from afmask.evaluate.sanity import (
    cascade,
    parameter_layers,
    randomisation_check,
    randomised,
    sanity_check,
    spearman,
)
from afmask.evaluate.scoring import Score, Scorer, normalise, safe_cer

__all__ = [
    "CURVES_FILE", "EVALUATION_FILE", "RENDITIONS_DIR", "Curve", "EvaluationResult", "EvaluationSettings", "Rendition",
    "Score", "Scorer", "apply_mask", "auc", "bin_scale", "cascade", "compute_curves", "evaluate", "evaluate_into",
    "find_transcript", "find_words", "half_verdict", "importance", "normalise", "parameter_layers", "percent_grid",
    "randomised", "ranking", "read_evaluation", "removal_mask", "render", "rendition_magnitudes", "rendition_plan",
    "safe_cer", "sanity_check", "spearman",
    "blind_test", "energy_strata", "evaluate_map", "plausibility", "randomisation_check", "stratified_deletion",
    "tie_broken_order", "ties",
]
