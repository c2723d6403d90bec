"""Learned baselines of beam prediction (3GPP TR 38.843 BM-Case1/Case2), trained like the selector.

:mod:`.models` (MLP, LSTM, the selector's score network as a classifier), :mod:`.train`
(:func:`train_learned` on the selector's drops and budget), :mod:`.checkpoint` (safetensors + JSON
metadata). The policies are in :mod:`beamattn.wireless.policies.learned`.
"""

from .models import LEARNED_MODELS, MODEL_SPECS, LearnedConfig, build_model, count_parameters

__all__ = ["LEARNED_MODELS", "MODEL_SPECS", "LearnedConfig", "build_model", "count_parameters", "train_learned"]


def __getattr__(name: str):
    # train_learned pulls in the runner (channels, policies): imported on first use, so that the policy
    # module can import this package without a cycle.
    if name == "train_learned":
        from .train import train_learned

        return train_learned
    raise AttributeError(name)
