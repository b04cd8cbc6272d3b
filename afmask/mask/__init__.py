"""The experiment: learn the noise scale m over an utterance's interleaved FFT (Guan et al., ICML 2019, for speech)."""

from afmask.mask.config import MaskConfig
from afmask.mask.objective import Forward, MaskObjective
from afmask.mask.postprocess import letters, pitfall, postprocess, posteriors
from afmask.mask.run import LOG_COLUMNS, MaskResult, MaskRun, iteration_seed, run_mask

__all__ = [
    "Forward", "LOG_COLUMNS", "MaskConfig", "MaskObjective", "MaskResult", "MaskRun", "iteration_seed", "letters",
    "pitfall", "postprocess", "posteriors", "run_mask",
]
