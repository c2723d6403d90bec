"""Figures of ``beamattn run``: SNR distribution, one drop over time, attention weights, beams, accuracy.

:func:`run_figures` takes the ``trace`` (drop 0, plain lists) and the ``summary``
(KPI means with 95% intervals) built by :func:`~beamattn.wireless.runner.run_scenario`
and writes PNG files. Any subset of policies works; NaN and inf values are left
out, never plotted; a figure without data is not written. Every policy has the
same colour in every figure (genie and MRT are the dashed black and grey references).
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from ..io import save_figure_atomic

__all__ = ["run_figures", "policy_style"]

# Fixed colours by policy name; genie and MRT are the references (dashed).
_COLORS = {
    "genie": "black",
    "mrt": "0.5",
    "exhaustive": "tab:blue",
    "best-of-set-b": "tab:orange",
    "stale": "tab:green",
    "hierarchical": "tab:purple",
    "random": "tab:brown",
    "uniform": "tab:olive",
    "attention": "tab:red",
    "attention-untrained": "tab:pink",
}
_SPARE = ("tab:cyan", "tab:pink", "darkgoldenrod", "teal", "navy", "crimson", "darkkhaki", "slateblue")
_MARKERS = {"genie": "o", "mrt": "D", "exhaustive": "s", "best-of-set-b": "^", "stale": "v", "hierarchical": "P",
            "random": "x", "uniform": "*", "attention": "o",
            "attention-untrained": "h"}
_REFERENCES = ("genie", "mrt")
_GRID = 0.3


def policy_style(name: str) -> dict:
    """Line style of policy ``name`` (colour, line style, width, marker), the same in every figure."""
    color = _COLORS.get(name) or _SPARE[zlib.crc32(name.encode()) % len(_SPARE)]
    return {"color": color, "linestyle": "--" if name in _REFERENCES else "-",
            "linewidth": 2.2 if name == "attention" else 1.5, "marker": _MARKERS.get(name, "o")}


def _policies(trace: dict) -> list[str]:
    return [k for k, v in trace.items() if not k.startswith("_") and isinstance(v, dict)]


def _finite(values) -> np.ndarray:
    """``values`` as a 1-D float array without NaN/inf (anything unreadable gives an empty array)."""
    try:
        a = np.asarray(values if values is not None else [], dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return np.zeros(0)
    return a[np.isfinite(a)]


def _array(values, length: int | None = None) -> np.ndarray:
    """``values`` as a 1-D float array, non-finite entries as NaN, cut or NaN-padded to ``length``."""
    try:
        a = np.asarray(values if values is not None else [], dtype=np.float64).ravel()
    except (TypeError, ValueError):
        a = np.zeros(0)
    a = np.where(np.isfinite(a), a, np.nan)
    if length is not None:
        a = np.concatenate([a[:length], np.full(max(0, length - a.size), np.nan)])
    return a


def _times(trace: dict, length: int) -> tuple[np.ndarray, str]:
    """Decision times (s) of drop 0, or decision numbers when the times are missing or not finite."""
    t = _array(trace.get("_times"), length)
    if length and np.isfinite(t).all() and (length < 2 or np.all(np.diff(t) > 0)):
        return t, "time (s)"
    return np.arange(length, dtype=np.float64), "decision"


def _step_xy(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arguments of ``step(where="post")`` that also draw the last interval (as long as the one before)."""
    dt = t[-1] - t[-2] if t.size > 1 else 1.0
    return np.append(t, t[-1] + dt), np.append(y, y[-1])


def _num_beams(weights) -> int:
    """Codebook size from a policy's ``weights [D][M]`` (0 when there are none)."""
    try:
        return len(weights[0]) if weights else 0
    except TypeError:
        return 0


def _band(rows: np.ndarray, num: int, pad: int = 3) -> tuple[float, float] | None:
    """Index range ``(lo, hi)`` covering ``rows`` with ``pad`` rows either side, or None when that band
    would cover most of ``0 .. num - 1`` anyway (or there is nothing to cover)."""
    rows = rows[np.isfinite(rows)]
    if not rows.size or num < 1:
        return None
    lo, hi = max(0.0, np.floor(rows.min()) - pad), min(num - 1.0, np.ceil(rows.max()) + pad)
    return None if hi - lo + 1 > 0.6 * num else (lo, hi)


def _edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around increasing centres ``x`` (for pcolormesh)."""
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def _kpi(summary: dict, name: str, key: str) -> tuple[float, float, float]:
    """(mean, low, high) of KPI ``key`` of policy ``name``; NaN where missing or unreadable."""
    try:
        entry = summary[name][key]
        mean = float(entry["mean"])
        lo, hi = (float(v) for v in entry.get("ci95", (math.nan, math.nan)))
    except (KeyError, TypeError, ValueError):
        return math.nan, math.nan, math.nan
    return mean, lo, hi


def _save(fig, path: Path, paths: list[str], **kwargs) -> None:
    import matplotlib.pyplot as plt

    try:
        paths.append(str(save_figure_atomic(fig, path, **kwargs)))
    finally:
        plt.close(fig)


def _legend_outside(ax_or_fig, handles=None, labels=None, **kwargs) -> None:
    """A legend right of the axes (there are up to ten policies)."""
    if handles is None:
        handles, labels = ax_or_fig.get_legend_handles_labels()
    if handles:
        ax_or_fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                         fontsize="small", **kwargs)


# --------------------------------------------------------------------------- figures


def _snr_cdf(trace: dict, scn, fig_dir: Path, paths: list[str]) -> None:
    import matplotlib.pyplot as plt

    data = {n: np.sort(_finite(trace[n].get("snr_all"))) for n in _policies(trace)}
    data = {n: v for n, v in data.items() if v.size}
    if not data:
        return
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    for name, v in data.items():
        st = policy_style(name)
        y = np.arange(1, v.size + 1) / v.size
        ax.step(np.concatenate([[v[0]], v]), np.concatenate([[0.0], y]), where="post", color=st["color"],
                linestyle=st["linestyle"], linewidth=st["linewidth"], label=f"{name} (n={v.size})")
    outage = getattr(scn, "outage_db", None)
    if outage is not None and math.isfinite(float(outage)):
        ax.axvline(float(outage), color="0.2", linestyle=":", linewidth=1.5, label=f"outage threshold {outage:g} dB")
    # Deep fades of a few samples (random beams, nulls) would squeeze the interesting part to one side.
    allv = np.concatenate(list(data.values()))
    lo, hi = np.quantile(allv, 0.005), allv.max()
    if outage is not None and math.isfinite(float(outage)):
        lo, hi = min(lo, float(outage)), max(hi, float(outage))
    pad = max(1.0, 0.03 * (hi - lo))
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(0, 1.01)
    cut = allv.min() < lo - pad
    ax.set_xlabel("received SNR (dB)" + (" (axis starts at the 0.5% quantile of all samples)" if cut else ""))
    ax.set_ylabel("CDF")
    ax.set_title(f"{scn.name}: empirical CDF of the received SNR (all decisions of all drops)")
    ax.grid(True, alpha=_GRID)
    _legend_outside(ax)
    _save(fig, fig_dir / "snr_cdf.png", paths)


def _snr_time(trace: dict, scn, fig_dir: Path, paths: list[str]) -> None:
    import matplotlib.pyplot as plt

    names = _policies(trace)
    length = max([len(trace[n].get("snr_db") or []) for n in names] + [len(trace.get("_genie_index") or [])])
    if not length:
        return
    t, tlabel = _times(trace, length)
    fig, (top, bot) = plt.subplots(2, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for name in names:
        st = policy_style(name)
        y = _array(trace[name].get("snr_db"), length)
        if np.isfinite(y).any():
            top.step(*_step_xy(t, y), where="post", color=st["color"], linestyle=st["linestyle"],
                     linewidth=st["linewidth"], label=name, zorder=3 if name in _REFERENCES else 2)
    outage = getattr(scn, "outage_db", None)
    if outage is not None and math.isfinite(float(outage)):
        top.axhline(float(outage), color="0.2", linestyle=":", linewidth=1.2, label=f"outage {outage:g} dB")
    top.set_ylabel("received SNR (dB)")
    top.set_title(f"{scn.name}: drop 0 over time")
    top.grid(True, alpha=_GRID)
    _legend_outside(top)

    gi = _array(trace.get("_genie_index"), length)
    if np.isfinite(gi).any():
        bot.step(*_step_xy(t, gi), where="post", color="black", linewidth=4, alpha=0.2, label="genie beam")
    codebook = []
    for name in names:
        idx = _array(trace[name].get("index"), length)
        idx[idx < 0] = np.nan  # -1: no codebook beam (MRT, uniform)
        if name != "genie" and np.isfinite(idx).any():
            codebook.append((name, idx))
    # Policies that agree would hide each other: each is drawn a little above or below the true index.
    half = 0.3 if len(codebook) > 1 else 0.0
    offsets = np.linspace(-half, half, len(codebook)) if codebook else []
    for (name, idx), off in zip(codebook, offsets):
        st = policy_style(name)
        bot.plot(t + 0.5 * (t[1] - t[0] if t.size > 1 else 1.0), idx + off, linestyle="none", marker=st["marker"],
                 markersize=4.5, color=st["color"], alpha=0.9, label=name)
    bot.set_xlabel(tlabel)
    bot.set_ylabel("beam index")
    note = []
    # Random picks would spread the axis over the whole codebook and squeeze the others together: zoom on
    # the genie and the non-random picks when they keep to a narrow band.
    picks = np.concatenate([gi, *(i for _, i in codebook)])
    num_beams = max([_num_beams(trace[n].get("weights")) for n in names]
                    + [int(np.nanmax(picks)) + 1 if np.isfinite(picks).any() else 0])
    band = _band(np.concatenate([gi, *(i for n, i in codebook if n != "random")]), num_beams)
    if band is not None and any(n == "random" for n, _ in codebook):
        bot.set_ylim(band[0] - 0.7, band[1] + 0.7)
        note.append(f"beams {band[0]:.0f}–{band[1]:.0f} shown, random picks outside are cut")
    if half:
        note.insert(0, f"markers mid-interval, offset by up to ±{half:g} so that equal picks stay visible")
    bot.set_title("chosen beams and the genie beam" + (f" ({'; '.join(note)})" if note else ""),
                  fontsize="small")
    bot.grid(True, alpha=_GRID)
    if bot.has_data():
        bot.yaxis.get_major_locator().set_params(integer=True)
        _legend_outside(bot)
    else:
        bot.text(0.5, 0.5, "no codebook beams in this run", transform=bot.transAxes, ha="center", va="center")
    _save(fig, fig_dir / "snr_time.png", paths)


def _soft_policies(trace: dict) -> list[str]:
    """Policies with attention weights, except the constant "uniform"; "attention" first."""
    out = []
    for name in _policies(trace):
        w = trace[name].get("weights")
        if name == "uniform" or w is None:
            continue
        try:
            a = np.asarray(w, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if a.ndim == 2 and a.size and np.isfinite(a).any():
            out.append(name)
    return sorted(out, key=lambda n: n != "attention")


def _attention_weights(trace: dict, scn, fig_dir: Path, paths: list[str]) -> None:
    import matplotlib.pyplot as plt

    soft = _soft_policies(trace)[:3]
    if not soft:
        return
    fig, axes = plt.subplots(len(soft), 1, figsize=(10, 4.2 * len(soft)), squeeze=False)
    axes = axes[:, 0]
    for ax, name in zip(axes, soft):
        w = np.asarray(trace[name]["weights"], dtype=np.float64)  # [D, M]
        w = np.ma.masked_invalid(w)
        d, m = w.shape
        t, tlabel = _times(trace, d)
        vmax = 1.0 if float(w.max()) <= 1.0 else float(w.max())
        vmin = min(0.0, float(w.min()))
        mesh = ax.pcolormesh(_edges(t), np.arange(m + 1) - 0.5, w.T, cmap="viridis", vmin=vmin, vmax=vmax,
                             shading="flat")
        gi = _array(trace.get("_genie_index"), d)
        if np.isfinite(gi).any():
            ax.step(t, gi, where="mid", color="white", linewidth=1.2, alpha=0.9)
            ax.plot(t, gi, linestyle="none", marker="o", markersize=7, markerfacecolor="none",
                    markeredgecolor="white", markeredgewidth=1.3, label="genie beam")
        idx = _array(trace[name].get("index"), d)
        idx[idx < 0] = np.nan
        if np.isfinite(idx).any():
            ax.plot(t, idx, linestyle="none", marker="x", markersize=6, color="tab:red", markeredgewidth=1.6,
                    label=f"chosen beam ({name})")
        # Sparse weights on a large codebook keep to a narrow band: show that band (and the genie and chosen beams).
        used = np.flatnonzero((np.abs(w.filled(0.0)) > 1e-3).any(axis=0)).astype(np.float64)
        band = _band(np.concatenate([used, gi, idx]), m)
        lo, hi = band if band is not None else (0, m - 1)
        ax.set_ylim(lo - 0.5, hi + 0.5)
        ax.set_xlabel(tlabel)
        ax.set_ylabel("beam index")
        ax.yaxis.get_major_locator().set_params(integer=True)
        shown = f" (beams {lo:.0f}–{hi:.0f} shown, the others have zero weight)" if band is not None else ""
        ax.set_title(f"{scn.name}: weights of '{name}' over {m} beams, drop 0{shown}", loc="left",
                     fontsize="medium")
        fig.colorbar(mesh, ax=ax, label="attention weight", pad=0.02)
        if ax.get_legend_handles_labels()[0]:  # below the axes, on a dark ground for the white genie markers
            ax.legend(loc="upper right", bbox_to_anchor=(1.0, -0.11), ncol=2, fontsize="small", facecolor="0.3",
                      labelcolor="white", framealpha=1.0, borderaxespad=0.0)
    fig.tight_layout()
    _save(fig, fig_dir / "attention_weights.png", paths)


def _beam_pattern(trace: dict, scn, fig_dir: Path, paths: list[str]) -> None:
    import matplotlib.pyplot as plt
    import torch

    from .codebooks import beam_pattern

    names = _policies(trace)
    chosen = [n for n in ("attention", "genie", "mrt") if n in names]
    if not chosen:  # none of the usual three: show whatever was evaluated
        chosen = names[:3]
    array = scn.array
    n_ant = array.num_ant
    az = np.linspace(-np.pi / 2, np.pi / 2, 721)
    peak = 10 * math.log10(n_ant)
    floor = peak - 30.0
    curves = []
    for name in chosen:
        try:
            b = np.asarray(trace[name].get("beam_mid"), dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if b.shape != (n_ant, 2) or not np.isfinite(b).all() or not np.any(b):
            continue
        w = torch.complex(torch.as_tensor(b[:, 0]), torch.as_tensor(b[:, 1]))
        w = w / torch.linalg.vector_norm(w)  # unit power, as transmitted
        g = beam_pattern(w, array, torch.as_tensor(az)).numpy()
        curves.append((name, np.maximum(10 * np.log10(np.maximum(g, 1e-30)), floor)))
    if not curves:
        return
    fig, ax = plt.subplots(figsize=(9, 4.6), subplot_kw={"projection": "polar"})
    ax.set_theta_zero_location("N")  # broadside up
    ax.set_theta_direction(-1)  # positive azimuth (towards +y) to the right
    ax.set_thetamin(-90)
    ax.set_thetamax(90)
    for name, g in curves:
        st = policy_style(name)
        ax.plot(az, g, color=st["color"], linestyle=st["linestyle"], linewidth=st["linewidth"], label=f"{name} beam")
    # The user's direction (base station at the origin, broadside along +x) at the middle decision.
    pos, dt = trace.get("_positions"), getattr(getattr(scn, "channel", None), "sample_interval", None)
    length = len(trace[curves[0][0]].get("snr_db") or [])
    t_mid = _array(trace.get("_times"), length)[length // 2] if length else math.nan
    try:
        p = np.asarray(pos, dtype=np.float64)
        k = int(round(t_mid / float(dt)))
        if p.ndim == 2 and p.shape[1] >= 2 and 0 <= k < len(p) and np.isfinite(p[k, :2]).all():
            user = math.atan2(p[k, 1], p[k, 0])
            if abs(user) <= math.pi / 2:
                ax.plot([user, user], [floor, peak + 1], color="tab:cyan", linestyle=":", linewidth=2,
                        label=f"user direction {math.degrees(user):.0f}°")
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        pass
    ax.set_rlim(floor, peak + 1)
    ax.set_rlabel_position(-90)
    ax.set_rticks([r for r in range(int(math.ceil(floor / 10)) * 10, int(peak) + 1, 10)])
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:g} dB")
    ax.set_thetagrids(range(-90, 91, 30), [f"{a}°" for a in range(-90, 91, 30)])
    ax.annotate("gain (dB)", xy=(-math.pi / 2, (floor + peak) / 2), xytext=(0, -24), textcoords="offset points",
                ha="center", va="top")
    mid = f"t = {t_mid:.3f} s" if math.isfinite(t_mid) else "the middle decision"
    ax.grid(True, alpha=_GRID)
    # A half-disc sits in the middle of its (square-ish) axes box: put the title and legend next to the
    # drawn half-disc rather than to the box, so that the saved (tight) figure has no empty band.
    fig.canvas.draw()
    disc = ax.patch.get_window_extent().transformed(ax.transAxes.inverted())
    ax.set_title(f"{scn.name}: beams used at {mid} of drop 0\n"
                 f"gain |a(u)ᵀw|² in dB over azimuth (0° = broadside), {n_ant} antennas, "
                 f"peak {peak:.1f} dB, floor {floor:.1f} dB", fontsize="medium", y=disc.y1 + 0.1)
    leg = ax.legend(loc="center left", bbox_to_anchor=(disc.x1 + 0.06, (disc.y0 + disc.y1) / 2), fontsize="small")
    _save(fig, fig_dir / "beam_pattern.png", paths, bbox_inches=_visible_bbox(fig, ax, leg))


def _visible_bbox(fig, ax, *extra):
    """Bounding box (inches, padded) of what is drawn of polar ``ax``: the tight box of a half-disc would keep
    the empty half of its axes."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    artists = [ax.patch, ax.title, *ax.texts, *extra, *ax.get_xticklabels(), *ax.get_yticklabels()]
    boxes = [a.get_window_extent(r) for a in artists
             if a is not None and a.get_visible() and (not hasattr(a, "get_text") or a.get_text())]
    box = Bbox.union(boxes).transformed(fig.dpi_scale_trans.inverted())
    return box.padded(0.1)


def _spread_labels(points: list[tuple[str, float, float]], ax) -> None:
    """Annotate ``(name, x, y)`` points right of them; a label that would overlap one already placed
    moves up or down by a line until it is free (points that coincide get stacked names)."""
    fig = ax.figure  # limits and layout must be final (transData is used as is)
    to_pt = 72.0 / fig.dpi
    line, width = 10.0, 70.0  # points: label height, and how far apart in x two labels may collide
    placed: list[tuple[float, float]] = []  # label anchors (points)
    for name, x, y in sorted(points, key=lambda p: (p[1], -p[2])):
        px, py = (v * to_pt for v in ax.transData.transform((x, y)))
        for k in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
            dy = -3 + k * line
            if all(abs(qx - px) > width or abs(qy - (py + dy)) >= line for qx, qy in placed):
                break
        placed.append((px, py + dy))
        ax.annotate(name, (x, y), xytext=(7, dy), textcoords="offset points", fontsize="small", va="center",
                    color=policy_style(name)["color"], annotation_clip=False)


def _codebook_policies(trace: dict) -> set[str] | None:
    """Policies that pick a codebook beam (Top-1 applies); None when the trace does not say."""
    out, known = set(), False
    for name in _policies(trace):
        idx = _finite(trace[name].get("index"))
        if idx.size:
            known = True
            if (idx >= 0).any():
                out.add(name)
    return out if known else None


def _accuracy_overhead(trace: dict, summary: dict, scn, fig_dir: Path, paths: list[str]) -> None:
    import matplotlib.pyplot as plt

    codebook = _codebook_policies(trace)
    panels = (("top1", "Top-1 accuracy"), ("within_1db", "within 1 dB of genie"))
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5), sharex=True, sharey=True)
    per_axis, left_out = [], []
    for ax, (key, label) in zip(axes, panels):
        points = []
        for name in summary:
            if not isinstance(summary.get(name), dict):
                continue
            if key == "top1" and codebook is not None and name not in codebook and name in trace:
                left_out.append(name)  # MRT, uniform: no codebook beam, Top-1 is 0 by construction
                continue
            x, xlo, xhi = _kpi(summary, name, "overhead")
            y, ylo, yhi = _kpi(summary, name, key)
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            st = policy_style(name)
            xerr = [[max(0.0, x - xlo)], [max(0.0, xhi - x)]] if math.isfinite(xlo) and math.isfinite(xhi) else None
            yerr = [[max(0.0, y - ylo)], [max(0.0, yhi - y)]] if math.isfinite(ylo) and math.isfinite(yhi) else None
            ax.errorbar([x], [y], xerr=xerr, yerr=yerr, marker=st["marker"], markersize=7, color=st["color"],
                        linestyle="none", capsize=3, label=name, alpha=0.85)
            points.append((name, x, y))
        per_axis.append(points)
        ax.set_xlabel("beams measured per decision (overhead)")
        ax.set_ylabel(f"{label} (fraction of decisions)")
        ax.set_title(label)
        ax.grid(True, alpha=_GRID)
    if not any(per_axis):
        plt.close(fig)
        return
    xs = [x for pts in per_axis for _, x, _ in pts]
    lo, hi = min(xs + [0.0]), max(xs + [1.0])
    axes[0].set_xlim(lo - 0.05 * (hi - lo) - 0.5, hi + 0.22 * (hi - lo))  # room for the names right of the points
    axes[0].set_ylim(-0.1, 1.1)
    if left_out:
        axes[0].text(0.98, 0.02, f"not shown (no codebook beam): {', '.join(left_out)}", transform=axes[0].transAxes,
                     ha="right", va="bottom", fontsize="small", color="0.3")
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.suptitle(f"{scn.name}: accuracy against measurement overhead (mean, 95% CI over drops)")
    _legend_outside(axes[1], list(handles.values()), list(handles))
    fig.tight_layout()
    for ax, points in zip(axes, per_axis):
        _spread_labels(points, ax)
    _save(fig, fig_dir / "accuracy_overhead.png", paths)


def run_figures(trace: dict, summary: dict, scn, fig_dir: Path) -> list[str]:
    """Write the figures of one run into ``fig_dir``; returns the paths written.

    - ``snr_cdf.png``: CDF of the received SNR over all decisions, per policy, with the outage threshold.
    - ``snr_time.png``: drop 0 over time: SNR per policy (top), chosen and genie beam indices (bottom).
    - ``attention_weights.png``: the attention weights over beams and time with the genie and chosen
      beams (only when a policy other than "uniform" has weights).
    - ``beam_pattern.png``: gain over azimuth of the attention, genie and MRT beams at the middle decision.
    - ``accuracy_overhead.png``: Top-1 and within-1-dB accuracy against beams measured per decision.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []
    with np.errstate(all="ignore"), plt.rc_context({"figure.max_open_warning": 0}):
        _snr_cdf(trace, scn, fig_dir, paths)
        _snr_time(trace, scn, fig_dir, paths)
        _attention_weights(trace, scn, fig_dir, paths)
        _beam_pattern(trace, scn, fig_dir, paths)
        _accuracy_overhead(trace, summary, scn, fig_dir, paths)
        if getattr(scn, "backend", None) == "sionna-rt":  # top-down map of the scene with the tracks
            from .scene_map import run_scene_map

            run_scene_map(trace, scn, fig_dir, paths)
    return paths
