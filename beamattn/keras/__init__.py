"""``beamattn.keras``: the attention beam selector as a Keras layer, for TensorFlow pipelines.

Needs TensorFlow (Keras 2 or 3), NumPy and ``safetensors`` — never torch or Sionna 2.x,
which cannot share an environment with TensorFlow. ::

    from beamattn.keras import AttentionSelectorLayer

    layer = AttentionSelectorLayer.from_file("selector.keras.safetensors")  # beamattn export --format keras
    out = layer(rsrp_db)              # rsrp_db [..., L, M] dB -> out["beams"] [..., N] complex64, unit norm
    out["weights"], out["index"]      # [..., M] attention weights, [...] beam of the largest weight
    out = layer(rsrp_db, phase, phase_history=history)  # co-phased; history [..., T, M] with phase_predict
    out = layer(rsrp_db, report_phase=report_phase)  # csi_keys: the reports' phases [..., L, M] (rad)

Modules: :mod:`.selector` (the layer), :mod:`.normalizers` (softmax, sparsemax, 1.5-entmax in TF),
:mod:`.selector_file` (the exported file: NumPy + safetensors only, shared with the torch exporter).
The layer and the normalizers are imported on first use, so ``beamattn.keras.selector_file`` imports
without TensorFlow.
"""

from __future__ import annotations

from .selector_file import FORMAT_NAME, FORMAT_VERSION, SelectorFileError, read_selector_file

__all__ = ["AttentionSelectorLayer", "relative_rsrp_features", "predict_phase", "softmax", "sparsemax", "entmax15",
           "FORMAT_NAME", "FORMAT_VERSION", "SelectorFileError", "read_selector_file"]

_LAZY = {"AttentionSelectorLayer": "selector", "relative_rsrp_features": "selector", "predict_phase": "selector",
         "softmax": "normalizers", "sparsemax": "normalizers", "entmax15": "normalizers"}


def __getattr__(name: str):
    # TensorFlow is imported here, on first use, not when beamattn.keras.selector_file is imported.
    if name not in _LAZY:
        raise AttributeError(f"module 'beamattn.keras' has no attribute {name!r}")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise ImportError(f"beamattn.keras.{name} needs TensorFlow, which is not installed here; install the "
                          "layer into a TensorFlow environment (see docs/guide/keras.md)") from None
    from importlib import import_module

    return getattr(import_module(f".{_LAZY[name]}", __name__), name)
