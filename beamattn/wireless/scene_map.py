"""A top-down map of a ray-traced scene with the base station, the users' tracks and a KPI along them.

The map is the scene's height map (:class:`~beamattn.wireless.channels.sionna_rt.HeightMap`: the first hit of
rays cast straight down; ground white, buildings grey by height), the BS as a triangle with an arrow along
its broadside, and every drop's track drawn as its decision points coloured by a value per decision, by
default the SNR loss to the genie best beam [dB] of one policy. ``beamattn run`` writes it as
``figures/scene_map.png`` for ``backend = "sionna-rt"`` scenarios (:func:`run_scene_map`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..io import save_figure_atomic

__all__ = ["scene_map_figure", "run_scene_map"]


def scene_map_figure(channel, positions: np.ndarray, values: np.ndarray, path: str | Path, *,
                     label: str = "SNR loss to genie [dB]", title: str = "", margin: float = 25.0) -> Path:
    """Draw the map and write it to ``path``.

    Args:
        channel: a :class:`~beamattn.wireless.channels.sionna_rt.SionnaRTChannel` (its height map, BS pose).
        positions: ``[B, D, 3]`` user positions in the BS's array frame (as in ``ChannelSample.positions``) [m].
        values: ``[B, D]`` the value drawn at each position (e.g. an SNR loss in dB).
        path: the PNG to write.
        label, title: colour-bar label and figure title. margin: metres shown around the tracks and the BS.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = np.asarray(positions, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[-1] != 3 or values.shape != positions.shape[:2]:
        raise ValueError(f"scene_map: positions {positions.shape} and values {values.shape}; expected [B, D, 3] "
                         "and [B, D]")
    hm = channel.height_map()
    xyz = channel.to_scene(positions)  # [B, D, 3] scene frame
    bs = channel.config.bs_position
    pts = np.concatenate([xyz[..., :2].reshape(-1, 2), bs[None, :2]])
    lo, hi = pts.min(0) - margin, pts.max(0) + margin
    side = float((hi - lo).max())  # a square view
    mid = (lo + hi) / 2
    lo, hi = mid - side / 2, mid + side / 2
    roofs = np.where(hm.ground, np.nan, hm.z - hm.ground_z)  # [ny, nx] building heights, NaN on the ground
    fig, ax = plt.subplots(figsize=(7.5, 7.5))
    ax.imshow(np.zeros_like(hm.z), extent=hm.extent, origin="lower", cmap="gray", vmin=-1, vmax=0)  # ground: white
    im_b = ax.imshow(roofs, extent=hm.extent, origin="lower", cmap="Greys", vmin=0,
                     vmax=max(1.0, float(np.nanpercentile(roofs, 99)) if np.isfinite(roofs).any() else 1.0),
                     interpolation="nearest")
    finite = np.isfinite(values)
    vmax = max(1.0, float(np.percentile(values[finite], 98))) if finite.any() else 1.0
    for b in range(len(xyz)):
        ax.plot(xyz[b, :, 0], xyz[b, :, 1], color="tab:blue", lw=0.6, alpha=0.5)
    sc = ax.scatter(xyz[..., 0].ravel(), xyz[..., 1].ravel(), c=values.ravel(), s=14, cmap="inferno_r", vmin=0,
                    vmax=vmax, zorder=3, edgecolors="none")
    yaw = channel.config.bs_orientation[0]
    ax.plot(bs[0], bs[1], marker="^", color="tab:red", ms=11, mec="k", zorder=4, label=f"BS ({bs[2]:.0f} m)")
    ax.annotate("", xy=(bs[0] + 0.12 * side * math.cos(yaw), bs[1] + 0.12 * side * math.sin(yaw)),
                xytext=(bs[0], bs[1]), arrowprops=dict(arrowstyle="->", color="tab:red", lw=2), zorder=4)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02, label=label)
    fig.colorbar(im_b, ax=ax, orientation="horizontal", fraction=0.035, pad=0.09, label="building height [m]")
    ax.set_title(title, fontsize=9)
    try:
        return save_figure_atomic(fig, path)
    finally:
        plt.close(fig)


def run_scene_map(trace: dict, scn, fig_dir: Path, paths: list[str]) -> None:
    """``figures/scene_map.png`` of a run: the SNR loss to genie of ``attention`` (else the first policy that is
    not ``genie``) at every decision of every drop; needs ``genie`` and the run's ``_positions_use``."""
    positions = trace.get("_positions_use")
    names = [n for n in trace if not n.startswith("_")]
    if positions is None or "genie" not in names:
        return
    policy = "attention" if "attention" in names else next((n for n in names if n not in ("genie", "mrt")), None)
    if policy is None:
        return
    pos = np.asarray(positions)  # [drops, D, 3]
    genie = np.asarray(trace["genie"]["snr_all"]).reshape(pos.shape[:2])
    loss = genie - np.asarray(trace[policy]["snr_all"]).reshape(pos.shape[:2])  # [drops, D] dB
    channel = scn.make_channel()
    out = scene_map_figure(channel, pos, loss, Path(fig_dir) / "scene_map.png",
                           label=f"SNR loss of {policy} to genie [dB]",
                           title=f"{scn.name}: {pos.shape[0]} drops on scene {scn.channel.scene!r}, "
                                 f"mean loss {float(np.mean(loss)):.2f} dB")
    paths.append(str(out))
