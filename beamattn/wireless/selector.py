"""The attention beam selector: measurements → keys, codebook beams → values.

For every decision the selector attends over the ``M`` beams of Set A:

- **keys**: per-beam features from the last ``L`` reports — the RSRP relative to
  the best reported beam (dB/10, floored at -40 dB) and whether the beam was
  measured (Set B) — for the beam and its angular neighbours (the codebook index
  is the angle order of a DFT codebook, circular in spatial frequency), through
  a circular convolution over the codebook index and a GELU (a learned per-beam
  score bias adds a prior over beams). For a UPA's DFT grid of beams (``grid =
  (M_v, M_h)``, beam ``m = m_v·M_h + m_h``) the convolution is a circular 2-D one
  over ``(m_v, m_h)``, so the neighbours are the beams next to it in both angles;
- **values**: the beam vectors ``v_i`` (as real ``[2N]`` vectors), optionally
  co-phased with the latest reported phase, ``v_i e^{-j φ_i}``, so that a
  combination adds coherently at the user;
- **query**: a learned goal vector; the *untrained* selector uses the fixed goal
  "more RSRP is better": its key is the reported RSRP (dB) of each measured beam
  and its scale is ``1 / temperature`` (temperature in dB).

The normaliser (softmax or sparsemax, with a temperature) gives weights ``α``;
``mode="soft"`` transmits the unit-norm ``Σ α_i v_i``, ``"hard"`` the beam of the
largest weight, ``"topk"`` the combination of the ``topk`` largest weights
(renormalised). All attention goes through :func:`beamattn.core.attend`.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..core import attend
from ..core.diagnostics import attention_entropy
from .selector_context import BeamSelfAttention, grid_positions, predict_phase

__all__ = ["SelectorConfig", "SelectorOutput", "AttentionSelector", "relative_rsrp_features",
           "reconstructed_gain_features", "reconstruction_matrix", "selector_forward", "conv_config"]

_FLOOR_DB = -40.0  # reports this far below the best beam carry no information
_INFERENCE_CHUNK = 1024  # decisions per chunk when selecting without gradients, on the CPU
# On a GPU, small chunks only add kernel launches and host syncs (sparsemax's convergence test): use big ones.
_INFERENCE_CHUNK_GPU = 1 << 16


@dataclass(frozen=True)
class SelectorConfig:
    """Configuration of :class:`AttentionSelector`.

    Args:
        normalizer: ``"softmax"``, ``"sparsemax"`` or ``"entmax15"``.
        mode: ``"soft"`` (combination), ``"hard"`` (argmax) or ``"topk"``.
        topk: beams combined in ``"topk"`` mode.
        temperature: divides the scores before normalising; for the untrained selector it is
            in dB (beams within about ``temperature`` dB of the best share the weight).
        history: reports per beam in the keys (``L``).
        neighbours: angular neighbours (codebook indices) on each side whose reports enter a beam's key.
            With a ``grid``, the same count on each grid axis, clipped so that the kernel is not larger
            than the grid: kernel ``(2 n_v + 1, 2 n_h + 1)`` with ``n_v = min(neighbours, (M_v - 1) // 2)``
            and ``n_h = min(neighbours, (M_h - 1) // 2)`` (see :meth:`kernel_radii`).
        d_model: key/query size (the width of the key network).
        cophase: co-phase the values with the reported phases (needs ``with_phase`` reports).
        learned: learned keys and query (trainable); False = the untrained RSRP selector.
        grid: ``(M_v, M_h)``, the codebook as a UPA DFT grid of beams (beam ``m = m_v·M_h + m_h``,
            as :func:`~beamattn.wireless.codebooks.dft_codebook`): the key network is then a circular
            2-D convolution over ``(m_v, m_h)``. ``None`` (or ``M_v == 1``, stored as ``None``) = a
            circular 1-D convolution over the codebook index (ULA DFT codebooks, user codebooks).
            Scenarios set it from a UPA's DFT codebook; ``M_v·M_h`` must equal the codebook size.
        arch: ``"conv"`` (keys = the convolution above, one fixed learned query: the selector of checkpoints
            without the field) or ``"transformer"`` (contextual keys and query, the fields below; see
            :mod:`beamattn.wireless.selector_context`).
        layers: self-attention blocks among the beam tokens (0 = off: the convolution's keys).
        heads: attention heads of each block (must divide ``d_model``).
        query: ``"fixed"`` (one learned goal vector) or ``"context"`` (the goal plus a projection of the
            measured beams' mean token and the serving beam's token: the link's state enters the query).
        phase_predict: co-phase with each beam's phase predicted at the use interval from its phase history
            (least-squares Doppler per beam, :func:`~beamattn.wireless.selector_context.predict_phase`)
            instead of the latest reported phase.
        phase_lead: how far ahead the phase is predicted, in units of the phase samples' spacing (report
            periods): (reporting delay + half the use interval) / period, 0.75 for 5 ms + 10 ms over 20 ms.
            Scenarios set it from the measurement timeline unless ``[selector]`` gives it.
        csi_keys: the keys also read the complex reports (needs ``with_phase`` reports, either arch): for each of
            the ``L`` reports, the gain ``|ĥᵀ v_m|²`` of *every* beam of Set A on the channel ``ĥ`` reconstructed
            from that report's complex Set B values (minimum-norm least squares, as ``type1-oversampled``), in dB
            relative to the latest report's best, ``L`` more input channels (:func:`reconstructed_gain_features`).
            An RSRP-only key sees the unmeasured beams only through their neighbours; these see them directly.
    """

    normalizer: str = "sparsemax"
    mode: str = "soft"
    topk: int = 4
    temperature: float = 1.0
    history: int = 4
    neighbours: int = 4
    d_model: int = 32
    cophase: bool = False
    learned: bool = True
    grid: tuple[int, int] | None = None
    arch: str = "conv"
    layers: int = 1
    heads: int = 4
    query: str = "fixed"
    phase_predict: bool = False
    phase_lead: float = 0.75
    csi_keys: bool = False

    def __post_init__(self) -> None:
        grid = self.grid
        if grid is not None:
            ok = (isinstance(grid, (tuple, list)) and len(grid) == 2
                  and all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid))
            if not ok:
                raise ValueError(f"selector: field 'grid' = {grid!r}; expected [M_v, M_h], two integers >= 1, "
                                 "or none")
            # (1, M) is the 1-D path: stored as None, so that it has one representation (checkpoints, files).
            object.__setattr__(self, "grid", None if grid[0] == 1 else (int(grid[0]), int(grid[1])))
        checks = (
            ("normalizer", self.normalizer in ("softmax", "sparsemax", "entmax15"),
             "'softmax', 'sparsemax' or 'entmax15'"),
            ("mode", self.mode in ("soft", "hard", "topk"), "'soft', 'hard' or 'topk'"),
            ("topk", isinstance(self.topk, int) and self.topk >= 1, "an integer >= 1"),
            ("temperature", isinstance(self.temperature, (int, float)) and self.temperature > 0, "a number > 0"),
            ("history", isinstance(self.history, int) and self.history >= 1, "an integer >= 1"),
            ("neighbours", isinstance(self.neighbours, int) and self.neighbours >= 0, "an integer >= 0"),
            ("d_model", isinstance(self.d_model, int) and self.d_model >= 1, "an integer >= 1"),
            ("arch", self.arch in ARCHS, "'conv' or 'transformer'"),
            ("layers", isinstance(self.layers, int) and not isinstance(self.layers, bool) and 0 <= self.layers <= 8,
             "an integer in [0, 8] (self-attention layers among beams)"),
            ("heads", isinstance(self.heads, int) and not isinstance(self.heads, bool) and self.heads >= 1
             and (self.arch != "transformer" or self.d_model % self.heads == 0),
             f"an integer >= 1 that divides d_model = {self.d_model}"),
            ("query", self.query in ("fixed", "context"), "'fixed' or 'context'"),
            ("phase_predict", isinstance(self.phase_predict, bool), "true or false"),
            ("csi_keys", isinstance(self.csi_keys, bool), "true or false"),
            ("phase_lead", isinstance(self.phase_lead, (int, float)) and not isinstance(self.phase_lead, bool)
             and math.isfinite(self.phase_lead) and 0 <= self.phase_lead <= 100, "a number in [0, 100] (periods)"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"selector: field '{name}' = {getattr(self, name)!r}; expected {expected}")
        if self.arch == "conv":
            # Today's selector has none of these parts: a value other than the default would be silently unused.
            for name in TRANSFORMER_FIELDS:
                if getattr(self, name) != _DEFAULTS[name]:
                    raise ValueError(f"selector: field '{name}' = {getattr(self, name)!r} applies to arch = "
                                     f"'transformer'; expected arch = 'transformer', or the field left out")

    def kernel_radii(self) -> tuple[int, int]:
        """``(n_v, n_h)``: the key convolution's reach on each grid axis (``(0, neighbours)`` without a grid)."""
        if self.grid is None:
            return 0, self.neighbours
        m_v, m_h = self.grid
        return min(self.neighbours, (m_v - 1) // 2), min(self.neighbours, (m_h - 1) // 2)

    def to_dict(self) -> dict:
        """The fields as plain JSON types; ``grid`` as a list, and left out when None (so 1-D configs,
        checkpoints and Keras files are the same as before the field existed)."""
        d = asdict(self)
        if self.arch == "conv":  # today's selector: the same dict (checkpoints, Keras files) as before arch existed
            for name in ("arch", *TRANSFORMER_FIELDS):
                del d[name]
        if not self.csi_keys:  # RSRP-only keys: the dict (checkpoints, Keras files) of before the field existed
            del d["csi_keys"]
        if self.grid is None:
            del d["grid"]
        else:
            d["grid"] = list(self.grid)
        return d


ARCHS = ("conv", "transformer")
# Fields used only by arch = "transformer" (left out of a conv config's dict).
TRANSFORMER_FIELDS = ("layers", "heads", "query", "phase_predict", "phase_lead")
_DEFAULTS = {name: SelectorConfig.__dataclass_fields__[name].default for name in TRANSFORMER_FIELDS}


def conv_config(cfg: SelectorConfig) -> SelectorConfig:
    """``cfg`` as today's convolution-key selector: ``arch = "conv"``, the transformer-only fields at their
    defaults (the score network the learned baselines reuse)."""
    return dataclasses.replace(cfg, arch="conv", **_DEFAULTS)


@dataclass
class SelectorOutput:
    """Per decision: ``beams [..., N]`` complex unit norm, ``weights [..., M]``, ``index [...]`` (largest
    weight), ``entropy [...]`` (nats), ``active [...]`` (non-zero weights)."""

    beams: Tensor
    weights: Tensor
    index: Tensor
    entropy: Tensor
    active: Tensor


def relative_rsrp_features(rsrp_db: Tensor, measured: Tensor) -> Tensor:
    """RSRP relative to the best measured beam of the latest report, in units of 10 dB.

    Args:
        rsrp_db: ``[..., L, M]`` reports (dB), oldest first.
        measured: ``[M]`` bool, the beams that are measured (Set B).

    Returns:
        ``[..., L, M]`` in ``[-4, 0.5]``; unmeasured beams are 0 (the flag tells them apart).
    """
    latest = rsrp_db[..., -1, :].masked_fill(~measured, float("-inf"))  # [..., M]
    ref = latest.amax(-1, keepdim=True).unsqueeze(-2)  # [..., 1, 1]
    rel = ((rsrp_db - ref) / 10).clamp(_FLOOR_DB / 10, 0.5)  # [..., L, M]
    return rel.masked_fill(~measured, 0.0)


def reconstruction_matrix(beams: Tensor, measured: Tensor) -> Tensor:
    """``T [M, J]`` complex: the reports ``y [J]`` of Set B map to every beam's response ``T y`` on the channel
    they give.

    A report is ``y_b = hᵀ v_b`` (no conjugate, :mod:`.policies.csi_codebooks`), so ``y = V_B h`` with
    ``V_B = beams[measured] [J, N]``; ``ĥ = V_B⁺ y`` is the minimum-norm least-squares channel (``h`` itself when
    Set B is an orthogonal basis and the reports are exact) and ``ĥᵀ v_m = (V_A V_B⁺ y)_m``: ``T = V_A V_B⁺``.
    Computed in float64, returned in the codebook's dtype.
    """
    v = beams.to(torch.complex128)  # [M, N]
    return (v @ torch.linalg.pinv(v[measured])).to(beams.dtype)  # [M, J]


def reconstructed_gain_features(rsrp_db: Tensor, phase: Tensor, recon: Tensor, measured: Tensor) -> Tensor:
    """Every beam's gain on the channel reconstructed from each complex report, relative to the latest best.

    Args:
        rsrp_db: ``[..., L, M]`` reports (dB), oldest first; only Set B entries are read.
        phase: ``[..., L, M]`` the same reports' phases (rad); only Set B entries are read.
        recon: ``[M, J]`` :func:`reconstruction_matrix`.
        measured: ``[M]`` bool, Set B (``J`` True entries).

    Returns:
        ``[..., L, M]`` real in ``[-4, 0.5]``: ``10 log10 |T y(t)|²`` of every beam, minus the largest of the
        latest report, in units of 10 dB, floored at -40 dB. The complex report of beam ``b`` is
        ``y_b = 10^{rsrp_b/20} e^{jφ_b}`` (the noisy, quantised RSRP as the amplitude).
    """
    amp = torch.pow(10.0, rsrp_db[..., measured] / 20)  # [..., L, J]
    y = torch.polar(amp, phase[..., measured])  # [..., L, J] complex
    gain = (y.to(recon.dtype) @ recon.transpose(-2, -1)).abs().square()  # [..., L, M] |ĥ(t)ᵀ v_m|²
    gain_db = 10 * torch.log10(gain.clamp_min(1e-30))  # [..., L, M]
    ref = gain_db[..., -1:, :].amax(-1, keepdim=True)  # [..., 1, 1] the latest report's best beam
    return ((gain_db - ref) / 10).clamp(_FLOOR_DB / 10, 0.5)  # [..., L, M]


class AttentionSelector(nn.Module):
    """Attention over the codebook's beams; see the module docstring.

    Args:
        config: :class:`SelectorConfig`.
        beams: the codebook ``[M, N]`` complex (values).
        measured: ``[M]`` bool: Set B (the beams that are measured).

    The module is built on the device of ``beams`` (weights are initialised on the CPU, from torch's
    global generator, and moved: the same initial weights on every device); ``.to(device)`` moves it.
    """

    def __init__(self, config: SelectorConfig, beams: Tensor, measured: Tensor) -> None:
        super().__init__()
        if beams.dim() != 2 or not beams.is_complex():
            raise ValueError(f"selector: argument 'beams' has shape {tuple(beams.shape)} and dtype {beams.dtype}; "
                             "expected a complex codebook [M, N]")
        if measured.shape != beams.shape[:1] or measured.dtype != torch.bool or not bool(measured.any()):
            raise ValueError(f"selector: argument 'measured' must be a bool mask [M={beams.shape[0]}] with at least "
                             f"one True, got shape {tuple(measured.shape)}, dtype {measured.dtype}")
        if config.grid is not None and config.grid[0] * config.grid[1] != beams.shape[0]:
            raise ValueError(f"selector: field 'grid' = {list(config.grid)} has {config.grid[0] * config.grid[1]} "
                             f"beams; expected M_v·M_h = the codebook size M = {beams.shape[0]}")
        self.config = config
        self.num_beams, self.num_ant = beams.shape
        self.register_buffer("beams", beams.clone(), persistent=False)  # [M, N] complex
        self.register_buffer("measured", measured.clone(), persistent=False)  # [M] bool
        if config.learned:
            # Keys: a circular convolution along the codebook index — over spatial frequency for a
            # DFT codebook, whose index order is the angle order and wraps around — so each key
            # sees its beam's reports and those of its angular neighbours, then a GELU; plus a
            # learned per-beam score bias (a prior over beams). The score q·k is then a one-hidden-layer
            # network of the neighbourhood's reports: cheap enough for >100k decisions/s on a CPU.
            # For a UPA grid of beams the convolution is 2-D over (m_v, m_h), circular on both axes (each is
            # a DFT index, circular in spatial frequency): the neighbours are the adjacent beams in both angles.
            # Input channels per beam: L relative RSRPs and the measured flag (+ L reconstructed gains, csi_keys).
            channels = config.history + 1 + (config.history if config.csi_keys else 0)
            if config.csi_keys:
                self.register_buffer("recon", reconstruction_matrix(beams, measured), persistent=False)  # [M, J]
            if config.grid is None:
                conv: nn.Module = nn.Conv1d(channels, config.d_model, 2 * config.neighbours + 1,
                                            padding=config.neighbours, padding_mode="circular")
            else:
                n_v, n_h = config.kernel_radii()
                conv = nn.Conv2d(channels, config.d_model, (2 * n_v + 1, 2 * n_h + 1),
                                 padding=(n_v, n_h), padding_mode="circular")
            self.key_net = nn.Sequential(conv, nn.GELU())
            # Weights in the codebook's precision (float32 for complex64 beams, float64 for complex128) and on
            # its device; random initial values are drawn on the CPU first, so they are the same on every device.
            real, dev = beams.real.dtype, beams.device
            self.key_net.to(device=dev, dtype=real)
            # With one fixed query, a learned per-beam key offset e_i only adds q·e_i to beam i's
            # score: it is kept as that scalar, an additive score bias (a prior over beams).
            self.beam_bias = nn.Parameter(torch.zeros(self.num_beams, dtype=real, device=dev))  # [M]
            query = torch.randn(config.d_model) / math.sqrt(config.d_model)  # [d]
            self.query = nn.Parameter(query.to(device=dev, dtype=real))
            if config.arch == "transformer":
                self._build_context(config, dev, real)

    def _build_context(self, config: SelectorConfig, dev: torch.device, real: torch.dtype) -> None:
        """The contextual parts: self-attention among beams, a query from the link's state."""
        grid = config.grid or (1, self.num_beams)
        self.register_buffer("positions", grid_positions(self.num_beams, config.grid, device=dev),
                             persistent=False)  # [M, 2] (m_v, m_h)
        self.blocks = nn.ModuleList(BeamSelfAttention(config.d_model, config.heads, grid)
                                    for _ in range(config.layers))
        self.blocks.to(device=dev, dtype=real)
        if config.query == "context":
            # [mean token of the measured beams, token of the serving beam] -> a query offset. The output layer
            # starts at zero: a fresh contextual query is the fixed one, and training adds what the context buys.
            self.query_norm = nn.LayerNorm(2 * config.d_model)
            self.query_net = nn.Linear(2 * config.d_model, config.d_model)
            nn.init.zeros_(self.query_net.weight)
            nn.init.zeros_(self.query_net.bias)
            self.query_norm.to(device=dev, dtype=real)
            self.query_net.to(device=dev, dtype=real)

    # ------------------------------------------------------------------ keys and values

    def keys(self, rsrp_db: Tensor, report_phase: Tensor | None = None) -> Tensor:
        """Keys ``[..., M, d]`` from reports ``rsrp_db [..., L, M]`` (and, with ``csi_keys``, their phases
        ``report_phase [..., L, M]``) (learned selector), in beam order."""
        rel = relative_rsrp_features(rsrp_db, self.measured)  # [..., L, M]
        flag = self.measured.to(rel.dtype).expand(*rel.shape[:-2], 1, -1)  # [..., 1, M]
        parts = [rel, flag]
        if self.config.csi_keys:
            parts.append(reconstructed_gain_features(rsrp_db, report_phase, self.recon, self.measured))  # [..., L, M]
        feat = torch.cat(parts, dim=-2)  # [..., L+1 (+L), M]
        batch = feat.shape[:-2]
        feat = feat.reshape(-1, *feat.shape[-2:])  # [S, L+1, M]
        if self.config.grid is None:
            k = self.key_net(feat)  # [S, d, M]
        else:
            m_v, m_h = self.config.grid
            k = self.key_net(feat.unflatten(-1, (m_v, m_h))).flatten(-2)  # [S, L+1, Mv, Mh] -> [S, d, M]
        k = k.reshape(*batch, *k.shape[1:]).transpose(-2, -1)  # [..., M, d] (a view: attend uses [d, M])
        if self.config.arch == "transformer" and self.config.layers > 0:
            x = k.reshape(-1, *k.shape[-2:])  # [S, M, d]
            for block in self.blocks:
                x = block(x, self.positions, self.measured)  # [S, M, d]: each beam's key knows the measured beams
            k = x.reshape(k.shape)  # [..., M, d]
        return k

    def queries(self, k: Tensor, rsrp_db: Tensor) -> Tensor:
        """The query ``[..., 1, d]`` for keys ``k [..., M, d]`` (learned selector)."""
        batch = k.shape[:-2]
        q = self.query.expand(*batch, 1, -1)  # [..., 1, d]
        if self.config.arch != "transformer" or self.config.query != "context":
            return q
        w = self.measured.to(k.dtype) / self.measured.sum()  # [M] mean over the measured beams
        pooled = torch.einsum("...md,m->...d", k, w)  # [..., d]
        latest = rsrp_db[..., -1, :].masked_fill(~self.measured, float("-inf"))  # [..., M]
        serving = latest.argmax(-1)  # [...] the strongest reported beam: the one the link is on
        own = k.gather(-2, serving[..., None, None].expand(*batch, 1, k.shape[-1])).squeeze(-2)  # [..., d]
        ctx = self.query_net(self.query_norm(torch.cat([pooled, own], -1)))  # [..., d]
        return q + ctx.unsqueeze(-2)  # [..., 1, d]

    def values(self, phase: Tensor | None) -> Tensor:
        """Values ``[..., M, 2N]`` real: beams, co-phased by ``-phase [..., M]`` when given."""
        v = self.beams  # [M, N]
        if phase is not None:
            rot = torch.polar(torch.ones_like(phase), -phase)  # [..., M]
            rot = torch.where(self.measured, rot, torch.ones_like(rot))  # unmeasured beams have no phase report
            v = v * rot.unsqueeze(-1).to(v.dtype)  # [..., M, N]
        return torch.view_as_real(v).flatten(-2)  # [..., M, 2N] (re, im interleaved)

    # ------------------------------------------------------------------ forward

    def forward(self, rsrp_db: Tensor, phase: Tensor | None = None, phase_history: Tensor | None = None,
                phase_lead: float | None = None, report_phase: Tensor | None = None) -> SelectorOutput:
        """Select beams.

        Args:
            rsrp_db: ``[..., L, M]`` reports in dB (oldest first; only Set B entries are read).
            phase: ``[..., M]`` latest reported phases (rad), used when ``cophase``.
            phase_history: ``[..., T, M]`` equally spaced phases (rad), oldest first, the last one at the latest
                report: read when ``phase_predict`` (then ``phase`` may be omitted). E.g. the last ``T`` reports,
                or a CSI-RS burst of ``T`` instances within the latest period.
            phase_lead: the prediction horizon in units of ``phase_history``'s spacing (default
                ``config.phase_lead``, which counts report periods).
            report_phase: ``[..., L', M]`` the phases of the reports ``rsrp_db`` (same shape, rad): read when
                ``csi_keys`` (the keys' reconstructed channels).

        Returns:
            :class:`SelectorOutput` with ``beams [..., N]`` complex64/128 unit norm.
        """
        batch = rsrp_db.shape[:-2]
        if self.config.phase_predict and self.config.cophase:
            if phase_history is None:
                raise ValueError("selector: 'phase_predict' is on but no 'phase_history' [..., T, M] was given")
            if phase_history.dim() < 2 or phase_history.shape[:-2] != batch \
                    or phase_history.shape[-1] != self.num_beams:
                raise ValueError(f"selector: argument 'phase_history' has shape {tuple(phase_history.shape)}; "
                                 f"expected {tuple(batch)} + [T, M={self.num_beams}]")
            lead = self.config.phase_lead if phase_lead is None else phase_lead
            phase = predict_phase(phase_history.to(self.beams.real.dtype), lead)  # [..., M] at the use interval
        if self.config.csi_keys and self.config.learned:
            if report_phase is None:
                raise ValueError("selector: 'csi_keys' is on but no 'report_phase' [..., L, M] was given; measure "
                                 "with 'with_phase = true'")
            if report_phase.shape != rsrp_db.shape:
                raise ValueError(f"selector: argument 'report_phase' has shape {tuple(report_phase.shape)}; "
                                 f"expected the shape of 'rsrp_db', {tuple(rsrp_db.shape)}")
        else:
            report_phase = None
        chunk = _INFERENCE_CHUNK if rsrp_db.device.type == "cpu" else _INFERENCE_CHUNK_GPU
        if torch.is_grad_enabled() or math.prod(batch) <= chunk:
            return self._select(rsrp_db, phase, report_phase)
        # Inference on a large batch: chunks keep the intermediate tensors in cache (same results).
        flat = rsrp_db.reshape(-1, *rsrp_db.shape[-2:])
        flat_phase = None if phase is None else phase.reshape(-1, phase.shape[-1])
        flat_report = None if report_phase is None else report_phase.reshape(flat.shape)
        parts = [self._select(flat[i:i + chunk], None if flat_phase is None else flat_phase[i:i + chunk],
                              None if flat_report is None else flat_report[i:i + chunk])
                 for i in range(0, flat.shape[0], chunk)]
        return SelectorOutput(*(torch.cat([getattr(p, f) for p in parts]).reshape(*batch, *getattr(parts[0], f).shape[1:])
                                for f in ("beams", "weights", "index", "entropy", "active")))

    def _select(self, rsrp_db: Tensor, phase: Tensor | None, report_phase: Tensor | None = None) -> SelectorOutput:
        cfg = self.config
        if rsrp_db.shape[-1] != self.num_beams or rsrp_db.shape[-2] < cfg.history:
            raise ValueError(f"selector: argument 'rsrp_db' has shape {tuple(rsrp_db.shape)}; expected "
                             f"[..., L>={cfg.history}, M={self.num_beams}]")
        # The selector computes in its codebook's precision (float32 weights for complex64 beams).
        real = self.beams.real.dtype
        rsrp_db = rsrp_db[..., -cfg.history:, :].to(real)
        if report_phase is not None:
            report_phase = report_phase[..., -cfg.history:, :].to(real)  # [..., L, M]
        if cfg.cophase and phase is None:
            raise ValueError("selector: 'cophase' is on but no phases were given; measure with 'with_phase = true'")
        if phase is not None:
            if phase.shape != rsrp_db.shape[:-2] + (self.num_beams,):
                raise ValueError(f"selector: argument 'phase' has shape {tuple(phase.shape)}; expected "
                                 f"{tuple(rsrp_db.shape[:-2]) + (self.num_beams,)} (the latest phase of each beam)")
            phase = phase.to(real)
        v = self.values(phase if cfg.cophase else None)  # [..., M, 2N], or [M, 2N] shared by the batch
        batch = rsrp_db.shape[:-2]
        topk = cfg.topk if cfg.mode == "topk" else None
        if topk is not None and topk > self.num_beams:
            raise ValueError(f"selector: field 'topk' = {topk} exceeds the codebook size {self.num_beams}")
        if cfg.learned:
            k = self.keys(rsrp_db, report_phase)  # [..., M, d]
            q = self.queries(k, rsrp_db)  # [..., 1, d]
            out, w = attend(q, k, v, bias=self.beam_bias.view(1, -1), normalizer=cfg.normalizer,
                            temperature=cfg.temperature, topk=topk, return_weights=True)  # [..., 1, 2N], [..., 1, M]
        else:
            # Fixed goal: score = reported RSRP (dB) of measured beams; scale 1/temperature (dB).
            k = rsrp_db[..., -1, :].unsqueeze(-1)  # [..., M, 1]
            q = torch.ones(*batch, 1, 1, dtype=k.dtype, device=k.device)  # [..., 1, 1]
            out, w = attend(q, k, v, mask=self.measured.view(1, -1), scale=1.0 / cfg.temperature,
                            normalizer=cfg.normalizer, topk=topk, return_weights=True)
        w = w.squeeze(-2)  # [..., M]
        index = w.argmax(-1)  # [...]
        if cfg.mode == "hard":
            beams = self.beams[index]  # [..., N]; a common phase changes no gain, so no co-phasing here
        else:
            beams = torch.view_as_complex(out.squeeze(-2).unflatten(-1, (-1, 2)).contiguous())  # [..., N]
        beams = beams / torch.linalg.vector_norm(beams, dim=-1, keepdim=True).clamp_min(1e-12)
        return SelectorOutput(beams=beams, weights=w, index=index, entropy=attention_entropy(w.detach()),
                              active=(w > 0).sum(-1))


def selector_forward(sel: AttentionSelector, rsrp: Tensor, phase: Tensor | None, burst: Tensor | None = None,
                     burst_lead: float | None = None) -> SelectorOutput:
    """``sel`` on reports ``rsrp [..., L, M]`` and the phase history of the same reports ``phase [..., L, M]``
    (or None): the latest phases for co-phasing, the phase history for the phase predictor (``phase_predict``)
    — or, when given, the latest report's CSI-RS burst ``burst [..., R, M]`` with ``burst_lead`` (burst spacings
    from its last instance to the middle of the use interval). What training and the ``attention`` policy call,
    so both feed the selector alike."""
    if phase is None:
        return sel(rsrp)
    report = phase if sel.config.csi_keys else None  # [..., L, M] the complex reports enter the keys
    if not sel.config.phase_predict:
        return sel(rsrp, phase[..., -1, :], report_phase=report)
    if burst is not None:
        return sel(rsrp, phase[..., -1, :], phase_history=burst, phase_lead=burst_lead, report_phase=report)
    return sel(rsrp, phase[..., -1, :], phase_history=phase, report_phase=report)
