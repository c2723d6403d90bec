"""Write a channel file for ``backend = "file"``: a street with a line-of-sight path and one wall reflection.

The user's side of the format, in NumPy only (no beamattn, no torch): ``B`` users walk or drive along a
straight street in front of a 16-element ULA; each drop's channel carries free-space path loss
``(λ / 4πd)²`` (about -90 dB at 28 GHz and 30 m), the Doppler of each path through its length ``d(t)``,
and the array response ``a_n(u) = exp(+j 2π u · r_n)`` of beamattn's convention (``y = hᵀ w x``).

    python examples/make_channel_file.py --out results/street/street.npz        # or .mat / .h5
    python examples/make_channel_file.py --out results/street/street-train.npz --seed 1 --drops 100
    beamattn run examples/street.toml --out results/street/run

``examples/street.toml`` reads ``results/street/street.npz`` with ``normalize = "per-drop"``; with ``"none"`` the same
channels give a genie SNR ~90 dB lower (their path loss).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

C = 299_792_458.0  # m/s


def street_channels(drops: int, seed: int, num_ant: int = 16, carrier: float = 28e9, duration: float = 0.5,
                    dt: float = 0.002, speed: float = 15.0) -> dict[str, np.ndarray]:
    """``h [B, T, N]`` complex64 with path loss, ``times [T]``, ``positions [B, T, 3]``, ``los [B, T]``."""
    rng = np.random.default_rng(seed)
    lam = C / carrier
    t = np.arange(round(duration / dt)) * dt  # [T] s
    y_el = (np.arange(num_ant) - (num_ant - 1) / 2) * 0.5  # [N] element positions along y, wavelengths
    x0 = rng.uniform(15, 60, drops)  # [B] m, distance from the array along its broadside
    y0 = rng.uniform(-30, 30, drops)  # [B] m
    heading = rng.choice([-1.0, 1.0], drops)  # [B] along the street (±y)
    pos = np.stack([np.broadcast_to(x0[:, None], (drops, t.size)), y0[:, None] + heading[:, None] * speed * t,
                    np.full((drops, t.size), -8.5)], -1)  # [B, T, 3] m (a 10 m mast, users at 1.5 m)
    wall_x = x0 + rng.uniform(8, 20, drops)  # [B] a building front behind the street
    image = pos.copy()
    image[..., 0] = 2 * wall_x[:, None] - pos[..., 0]  # [B, T, 3] mirror image of the user in the wall
    h = np.zeros((drops, t.size, num_ant), dtype=np.complex128)
    blocked = rng.random(drops) < 0.3  # some drops lose the LoS (a parked truck) half way through
    los = np.ones((drops, t.size), dtype=bool)
    los[blocked, t.size // 2:] = False
    for p, gain in ((pos, 1.0), (image, 10 ** (-6 / 20))):  # the reflection is 6 dB weaker
        d = np.linalg.norm(p, axis=-1)  # [B, T] m
        u = p / d[..., None]  # [B, T, 3] departure directions
        amp = gain * lam / (4 * np.pi * d) * np.exp(-2j * np.pi * d / lam)  # [B, T] path loss, phase (Doppler)
        if p is pos:
            amp = amp * np.where(los, 1.0, 10 ** (-25 / 20))  # 25 dB blockage loss
        h += amp[..., None] * np.exp(2j * np.pi * u[..., 1:2] * y_el)  # [B, T, N] a_n(u) = exp(j 2π u_y y_n)
    return {"h": h.astype(np.complex64), "times": t, "positions": pos, "los": los,
            "num_rows": np.int64(1), "num_cols": np.int64(num_ant), "carrier_frequency": np.float64(carrier)}


def write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    if path.suffix == ".npz":
        np.savez_compressed(path, **arrays)
    elif path.suffix == ".mat":
        import scipy.io

        scipy.io.savemat(path, arrays)
    elif path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f[k] = v
    else:
        raise SystemExit(f"--out {path}: expected .npz, .mat or .h5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/street/street.npz"))
    ap.add_argument("--drops", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    arrays = street_channels(args.drops, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, arrays)
    power = np.mean(np.abs(arrays["h"]) ** 2)
    print(json.dumps({"wrote": str(args.out), "h": list(arrays["h"].shape),
                      "mean_gain_db": round(float(10 * np.log10(power)), 1)}))


if __name__ == "__main__":
    main()
