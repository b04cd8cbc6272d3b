"""The field's attribution methods in the mask's shape: ``Method(model, ...).attribute(utterance) -> Attribution``.

Every method returns importance per time-frequency point (K, T), larger =
more important, the orientation of ``afmask.evaluate.importance.importance(m)``,
so the evaluation and the report take any of them:

| class | ``--method`` | what |
|---|---|---|
| :class:`Saliency` | saliency | ``|d score / d x|`` (Captum) |
| :class:`InputXGradient` | ixg | ``x * d score / d x`` (Captum) |
| :class:`SmoothGrad` | smoothgrad | mean |gradient| over noisy inputs (Captum's NoiseTunnel, smoothgrad) |
| :class:`IntegratedGradients` | ig | path integral from a zero baseline, with the completeness check (Captum) |
| :class:`RISE` | rise | random smooth occlusion masks weighted by output preservation (RISE / SPES) |
| :class:`NoiseMask` | mask | afmask's own noise-scale mask (afmask.mask) |
| :class:`Extremal` | extremal | fixed-area preserving masks, importance = mean over areas (Fong et al. 2019) |

The score explained and the space attributed are in :mod:`afmask.attribute.target`.
"""

from __future__ import annotations

from afmask.attribute.base import ATTRIBUTION_FILE, IMPORTANCE_FILE, Attribution, Attributor, Progress, batches
from afmask.attribute.extremal import Extremal
from afmask.attribute.gradient import InputXGradient, IntegratedGradients, Saliency, SmoothGrad, integration_rule
from afmask.attribute.noise_mask import NoiseMask
from afmask.attribute.occlusion import RISE, random_masks
from afmask.attribute.target import SCORES, SPACES, Target, utterance_arrays

#: Every method by its short name (the CLI's --method).
METHODS = {cls.name: cls for cls in (Saliency, InputXGradient, SmoothGrad, IntegratedGradients, RISE, NoiseMask, Extremal)}


def make_method(name: str, model, **options) -> Attributor:
    """The method called ``name`` (a key of METHODS) for ``model``, with its constructor ``options``."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown attribution method {name!r}; expected one of {', '.join(METHODS)}") from None
    return cls(model, **options)


__all__ = [
    "ATTRIBUTION_FILE", "IMPORTANCE_FILE", "METHODS", "RISE", "Extremal", "SCORES", "SPACES", "Attribution", "Attributor",
    "InputXGradient", "IntegratedGradients", "NoiseMask", "Progress", "Saliency", "SmoothGrad", "Target", "batches",
    "integration_rule", "make_method", "random_masks", "utterance_arrays",
]
