"""Learned beam predictors: Set B report history → logits over the ``M`` beams of Set A.

The baselines the attention selector must beat (design notes §4; 3GPP TR 38.843
beam management, BM-Case1 spatial and BM-Case2 temporal prediction). Each model
reads only the reports of Set B — the last ``L`` of them, as the selector does —
and outputs one logit per beam of Set A; the policy picks the argmax and ranks
the Top-K by logit. Inputs are the selector's own features
(:func:`~beamattn.wireless.selector.relative_rsrp_features`: RSRP relative to the
best reported beam of the latest report, in units of 10 dB, floored at -40 dB),
so every model sees exactly what the selector sees. When the selector's keys read the complex reports
(``csi_keys``), every model reads them too (``csi``): each report's reconstructed gain of every beam of Set A
(:func:`~beamattn.wireless.selector.reconstructed_gain_features`) after the Set B features.

- :class:`MLPPredictor` — the TR 38.843 fully connected predictor: the ``L x |Set B|``
  reports flattened, one hidden GELU layer, ``M`` logits.
- :class:`LSTMPredictor` — BM-Case2: an LSTM over the ``L`` reports (one step = the
  ``|Set B|`` reports of one instant), the last hidden state → ``M`` logits.
- :class:`ScoreClassifier` — the ablation that isolates attention: the selector's
  own score network (:class:`~beamattn.wireless.selector.AttentionSelector`'s keys,
  query and per-beam bias, the very modules, not a copy) used as a plain classifier,
  ``argmax`` over its scores; no normaliser, no soft combination of beams.

Sizes: ``hidden`` is the MLP/LSTM width or the score network's ``d_model``;
:func:`matched_hidden` picks the width whose parameter count is closest to a target
(the selector's, or a multiple of it for the larger variants).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..selector import (AttentionSelector, SelectorConfig, conv_config, reconstructed_gain_features,
                        reconstruction_matrix, relative_rsrp_features)

__all__ = ["ARCHS", "LOSSES", "LARGE_FACTOR", "ModelSpec", "MODEL_SPECS", "LEARNED_MODELS", "LearnedConfig", "LearnedModel", "MLPPredictor", "LSTMPredictor", "ScoreClassifier",
           "build_model", "count_parameters", "parameter_count", "matched_hidden"]

ARCHS = ("mlp", "lstm", "score")
LOSSES = ("hard", "soft")


@dataclass(frozen=True)
class LearnedConfig:
    """What a learned baseline is: enough to rebuild it from a checkpoint.

    Args:
        kind: the policy / model name (e.g. ``"mlp-soft"``), see :data:`~beamattn.wireless.learned.LEARNED_MODELS`.
        arch: ``"mlp"``, ``"lstm"`` or ``"score"`` (the selector's score network as a classifier).
        hidden: MLP hidden width, LSTM hidden size, or the score network's ``d_model``.
        history: reports per beam read by the model (``L``).
        loss: ``"hard"`` (cross-entropy to the genie beam) or ``"soft"`` (cross-entropy to
            ``softmax(gain_dB / temperature_db)`` over the use-interval gains).
        temperature_db: the soft labels' temperature in dB (beams within about this many dB of the
            best share the target mass).
        selector: for ``arch = "score"``: the selector config (as :meth:`SelectorConfig.to_dict`) whose
            score network is used (``d_model`` = ``hidden``, ``history`` = ``history``); else None.
        csi: the model also reads each report's reconstructed gains of all ``M`` beams (the selector's
            ``csi_keys``; needs the reports' phases). For ``arch = "score"`` it is the selector config's
            ``csi_keys``. Absent in checkpoints written before the field existed: False.
    """

    kind: str
    arch: str
    hidden: int
    history: int
    loss: str = "soft"
    temperature_db: float = 1.0
    selector: dict | None = None
    csi: bool = False

    def __post_init__(self) -> None:
        checks = (
            ("kind", isinstance(self.kind, str) and bool(self.kind), "a model name"),
            ("arch", self.arch in ARCHS, f"one of {list(ARCHS)}"),
            ("hidden", isinstance(self.hidden, int) and not isinstance(self.hidden, bool) and self.hidden >= 1,
             "an integer >= 1"),
            ("history", isinstance(self.history, int) and not isinstance(self.history, bool) and self.history >= 1,
             "an integer >= 1"),
            ("loss", self.loss in LOSSES, f"one of {list(LOSSES)}"),
            ("temperature_db", isinstance(self.temperature_db, (int, float)) and self.temperature_db > 0,
             "a temperature in dB > 0"),
            ("selector", (self.selector is None) == (self.arch != "score")
             and (self.selector is None or isinstance(self.selector, dict)),
             "a selector config table for arch 'score' only"),
            ("csi", isinstance(self.csi, bool) and (self.selector is None
                                                    or self.csi == bool(self.selector.get("csi_keys", False))),
             "true or false (for arch 'score': the selector's csi_keys)"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"learned model: field '{name}' = {getattr(self, name)!r}; expected {expected}")

    def to_dict(self) -> dict:
        return asdict(self)


class LearnedModel(nn.Module):
    """Base: holds Set B (``measured [M]`` bool, ``set_b [Mb]`` long) and the feature map.

    ``forward(rsrp_db [..., L', M], report_phase [..., L', M] or None) -> logits [..., M]`` reads the last
    ``history`` reports, Set B only (``report_phase``: their phases, read with ``config.csi``).
    """

    def __init__(self, config: LearnedConfig, measured: Tensor, beams: Tensor | None = None) -> None:
        super().__init__()
        if measured.dim() != 1 or measured.dtype != torch.bool or not bool(measured.any()):
            raise ValueError(f"learned model: argument 'measured' must be a bool mask [M] with at least one True, got "
                             f"shape {tuple(measured.shape)}, dtype {measured.dtype}")
        self.config = config
        self.num_beams = int(measured.numel())
        self.register_buffer("measured", measured.clone(), persistent=False)  # [M] bool
        self.register_buffer("set_b", measured.nonzero().flatten(), persistent=False)  # [Mb] long
        if config.csi and config.arch != "score":  # the score network's selector holds its own
            if beams is None:
                raise ValueError(f"learned model {config.kind!r}: field 'csi' = true needs the codebook 'beams'")
            self.register_buffer("recon", reconstruction_matrix(beams.cpu().to(torch.complex64), measured),
                                 persistent=False)  # [M, Mb]

    def _check(self, rsrp_db: Tensor, report_phase: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if rsrp_db.dim() < 2 or rsrp_db.shape[-1] != self.num_beams or rsrp_db.shape[-2] < self.config.history:
            raise ValueError(f"learned model {self.config.kind!r}: argument 'rsrp_db' has shape "
                             f"{tuple(rsrp_db.shape)}; expected [..., L>={self.config.history}, M={self.num_beams}]")
        if not self.config.csi:
            return rsrp_db[..., -self.config.history:, :].float(), None  # [..., L, M]
        if report_phase is None or report_phase.shape != rsrp_db.shape:
            got = None if report_phase is None else tuple(report_phase.shape)
            raise ValueError(f"learned model {self.config.kind!r}: argument 'report_phase' = {got}; expected the "
                             f"reports' phases, shape {tuple(rsrp_db.shape)} (the model reads the complex reports)")
        length = self.config.history
        return rsrp_db[..., -length:, :].float(), report_phase[..., -length:, :].float()  # [..., L, M] each

    def features(self, rsrp_db: Tensor, report_phase: Tensor | None = None) -> Tensor:
        """``[..., L, Mb]``: the selector's relative RSRP (10 dB units) of the measured beams; with ``csi``
        ``[..., L, Mb + M]``: then every beam's reconstructed gain of each report (the selector's csi_keys)."""
        rsrp, phase = self._check(rsrp_db, report_phase)
        rel = relative_rsrp_features(rsrp, self.measured)[..., self.set_b]  # [..., L, Mb]: unmeasured never read
        if not self.config.csi:
            return rel
        gains = reconstructed_gain_features(rsrp, phase, self.recon, self.measured)  # [..., L, M]
        return torch.cat([rel, gains], dim=-1)  # [..., L, Mb + M]


class MLPPredictor(LearnedModel):
    """TR 38.843-style fully connected predictor: ``[L·Mb] -> hidden (GELU) -> M`` logits."""

    def __init__(self, config: LearnedConfig, measured: Tensor, beams: Tensor | None = None) -> None:
        super().__init__(config, measured, beams)
        inputs = config.history * _inputs_per_report(int(measured.sum()), int(measured.numel()), config.csi)
        self.net = nn.Sequential(nn.Linear(inputs, config.hidden), nn.GELU(), nn.Linear(config.hidden, self.num_beams))

    def forward(self, rsrp_db: Tensor, report_phase: Tensor | None = None) -> Tensor:
        x = self.features(rsrp_db, report_phase).flatten(-2)  # [..., L·Mb] (csi: [..., L·(Mb + M)])
        return self.net(x)  # [..., M]


class LSTMPredictor(LearnedModel):
    """BM-Case2 temporal predictor: an LSTM over the ``L`` reports, last hidden state -> ``M`` logits."""

    def __init__(self, config: LearnedConfig, measured: Tensor, beams: Tensor | None = None) -> None:
        super().__init__(config, measured, beams)
        inputs = _inputs_per_report(int(measured.sum()), int(measured.numel()), config.csi)
        self.lstm = nn.LSTM(inputs, config.hidden, batch_first=True)
        self.head = nn.Linear(config.hidden, self.num_beams)

    def forward(self, rsrp_db: Tensor, report_phase: Tensor | None = None) -> Tensor:
        x = self.features(rsrp_db, report_phase)  # [..., L, Mb] (csi: Mb + M), oldest first
        batch = x.shape[:-2]
        _, (h, _) = self.lstm(x.reshape(-1, *x.shape[-2:]))  # h: [1, S, hidden]
        return self.head(h[-1]).reshape(*batch, self.num_beams)  # [..., M]


class ScoreClassifier(LearnedModel):
    """The attention selector's score network as a plain classifier (no attention, no combination).

    ``self.selector`` IS an :class:`AttentionSelector` (its ``key_net``, ``query`` and ``beam_bias``);
    the logits are exactly the scores its attention normalises: ``(k_i · q) / (sqrt(d) · temperature)
    + bias_i`` (:func:`beamattn.core.attend`'s dot-product score with the selector's scale), so loading
    these weights into an :class:`AttentionSelector` in ``"hard"`` mode picks the same beam.
    """

    def __init__(self, config: LearnedConfig, measured: Tensor, beams: Tensor) -> None:
        super().__init__(config, measured)
        cfg = SelectorConfig(**{**config.selector, "d_model": config.hidden, "history": config.history,
                                "learned": True, "mode": "hard"})
        self.selector = AttentionSelector(cfg, beams, measured)

    def forward(self, rsrp_db: Tensor, report_phase: Tensor | None = None) -> Tensor:
        sel = self.selector
        real = sel.beams.real.dtype
        rsrp, phase = self._check(rsrp_db, report_phase)  # [..., L, M] each (phase None without csi)
        k = sel.keys(rsrp.to(real), None if phase is None else phase.to(real))  # [..., M, d]
        q = sel.query * (1 / math.sqrt(sel.config.d_model) / sel.config.temperature)  # [d], attend's scale
        return torch.matmul(k, q) + sel.beam_bias  # [..., M]


def build_model(config: LearnedConfig, beams: Tensor, measured: Tensor) -> LearnedModel:
    """The model of ``config`` for codebook ``beams [M, N]`` (the score network's values) and Set B ``measured [M]``.

    Weights are initialised on the CPU from torch's global generator, then moved to ``beams``' device.
    """
    if measured.shape != beams.shape[:1]:
        raise ValueError(f"learned model: argument 'measured' has shape {tuple(measured.shape)}; expected "
                         f"[M={beams.shape[0]}] (one flag per codebook beam)")
    if config.arch == "mlp":
        model: LearnedModel = MLPPredictor(config, measured.cpu(), beams.cpu())
    elif config.arch == "lstm":
        model = LSTMPredictor(config, measured.cpu(), beams.cpu())
    else:
        model = ScoreClassifier(config, measured.cpu(), beams.cpu())
    return model.to(beams.device)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _inputs_per_report(set_b: int, num_beams: int, csi: bool) -> int:
    """Features per report of the MLP/LSTM: the Set B RSRPs, plus every beam's reconstructed gain with csi."""
    return set_b + (num_beams if csi else 0)


def parameter_count(arch: str, hidden: int, history: int, set_b: int, num_beams: int,
                    selector: SelectorConfig | None = None, csi: bool = False) -> int:
    """Closed-form parameter count of a model (checked against :func:`count_parameters` in the tests).
    ``csi``: the MLP/LSTM read the reconstructed gains too (the score network follows its selector's csi_keys)."""
    per_report = _inputs_per_report(set_b, num_beams, csi)
    if arch == "mlp":
        return (history * per_report + 1) * hidden + (hidden + 1) * num_beams
    if arch == "lstm":
        return 4 * hidden * (per_report + hidden + 2) + (hidden + 1) * num_beams  # PyTorch's LSTM: two bias vectors
    if arch == "score":
        if selector is None:
            raise ValueError("parameter_count: arch 'score' needs the selector config")
        # The conv score network (a contextual selector's config counts as its conv_config).
        cfg = SelectorConfig(**{**conv_config(selector).to_dict(), "d_model": hidden, "history": history})
        n_v, n_h = cfg.kernel_radii()
        kernel = (2 * n_v + 1) * (2 * n_h + 1)
        channels = history + 1 + (history if cfg.csi_keys else 0)  # the selector's key inputs per beam
        return channels * hidden * kernel + hidden + num_beams + hidden  # conv + its bias, beam bias, query
    raise ValueError(f"parameter_count: arch = {arch!r}; expected one of {list(ARCHS)}")


def matched_hidden(arch: str, target: int, history: int, set_b: int, num_beams: int,
                   selector: SelectorConfig | None = None, limit: int = 4096, csi: bool = False) -> int:
    """The width ``hidden`` (1..limit) whose parameter count is closest to ``target``."""
    return min(range(1, limit + 1),
               key=lambda h: (abs(parameter_count(arch, h, history, set_b, num_beams, selector, csi) - target), h))


# --------------------------------------------------------------------------- the named baselines

LARGE_FACTOR = 10  # the larger variants: about this many times the selector's parameters


@dataclass(frozen=True)
class ModelSpec:
    """A named learned baseline: architecture, size (``"matched"`` to the selector, or ``"large"``), loss."""

    arch: str
    size: str
    loss: str
    description: str


MODEL_SPECS: dict[str, ModelSpec] = {
    "mlp": ModelSpec("mlp", "matched", "hard", "MLP, hard-label CE to the genie beam (TR 38.843 BM-Case1/2 style)"),
    "mlp-soft": ModelSpec("mlp", "matched", "soft", "MLP, soft-label CE"),
    "mlp-large": ModelSpec("mlp", "large", "soft", f"MLP ~{LARGE_FACTOR}x the selector's parameters, soft-label CE"),
    "lstm": ModelSpec("lstm", "matched", "soft", "LSTM over the report history (BM-Case2), soft-label CE"),
    "lstm-large": ModelSpec("lstm", "large", "soft", f"LSTM ~{LARGE_FACTOR}x the selector's parameters, soft CE"),
    "score-classifier": ModelSpec("score", "matched", "soft",
                                  "the selector's score network as argmax classifier (no attention), soft CE"),
    "score-classifier-hard": ModelSpec("score", "matched", "hard",
                                       "the selector's score network as argmax classifier, hard-label CE"),
    "score-classifier-large": ModelSpec("score", "large", "soft",
                                        f"the score network with ~{LARGE_FACTOR}x d_model's parameters, soft CE"),
}
LEARNED_MODELS: tuple[str, ...] = tuple(MODEL_SPECS)
