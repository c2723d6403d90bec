"""Experiment 14 (small scale, fixed seed): CLS attention finds the landmarks; the ViT handles any image size."""

import json

from beamattn.experiments import run_experiment


def test_vit_landmarks_small(tmp_path):
    res = run_experiment("vit-landmarks", tmp_path, small=True, seed=0)
    out = tmp_path / "vit-landmarks"
    assert (out / "vit.png").stat().st_size > 10_000
    saved = json.loads((out / "result.json").read_text())
    assert saved["supported"] is True and saved["small"] is True and saved["figures"] == ["vit.png", "criteria.png"]

    lm = res.numbers["landmarks"]
    tr, un = lm["trained"], lm["untrained"]
    assert tr["chance"] == 3 / 36
    # The claim's direction with a margin: the top-3 CLS-attended patches are landmarks well above chance.
    assert tr["precision_at_k"] > 4 * tr["chance"]
    assert tr["precision_at_k"] > un["precision_at_k"] + 0.2
    assert tr["accuracy"] > 0.6  # 4 classes: chance 0.25
    for other in lm["other_sizes"]:  # unseen sizes and aspect ratios, no retraining
        assert other["precision_at_k"] > 3 * other["chance"] and other["accuracy"] > 0.5

    sc = res.numbers["scans"]
    assert sc["accuracy_training_sizes"]["accuracy"] > 0.65  # 2 classes: chance 0.5
    assert sc["accuracy_unseen_larger"]["accuracy"] > 0.6
    assert sc["lesion_top1_attention_hit_rate"] > 3 * sc["lesion_top1_chance"]
    assert sc["padding_invariance_max_abs_logit_diff"] < 1e-4
    assert set(sc["accuracy_by_aspect"]) == {"tall (h/w>=1.5)", "squarish", "wide (w/h>=1.5)"}
    assert all(v["n"] > 10 for v in sc["accuracy_by_long_side_px"].values())
