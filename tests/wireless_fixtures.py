"""Small scenarios shared by the wireless tests (fast on 2 cores)."""

from beamattn.wireless.scenario import parse_scenario

# A minimal valid scenario document (8 antennas, 16 beams, 2 drops) that the loader fuzz tests perturb.
TINY_DOC = {
    "scenario": {"name": "fuzz", "drops": 2, "chunk_drops": 2},
    "channel": {"speed_kmh": 30, "duration": 0.2, "sample_interval": 0.002},
    "array": {"num_cols": 8},
    "codebook": {"oversampling": 2, "num_wide": 4},
    "measurement": {"set_b": 4, "history": 2},
    "selector": {"history": 2},
}


def tiny_scenario(**overrides):
    """A 3-drop, 8-antenna, 2x oversampled (16 beams) geometric scenario; tables can be overridden."""
    data = {
        "scenario": {"name": "tiny", "seed": 3, "drops": 3, "chunk_drops": 2, "snr_db": 0.0, "outage_db": 0.0},
        "channel": {"backend": "geometric", "speed_kmh": 60, "duration": 0.3, "sample_interval": 0.002,
                    "min_distance": 15.0, "max_distance": 40.0, "num_clusters": 3, "rays_per_cluster": 2},
        "array": {"num_rows": 1, "num_cols": 8},
        "codebook": {"oversampling": 2, "num_wide": 4},
        "measurement": {"period": 0.02, "delay": 0.004, "snr_db": 10.0, "samples": 2, "set_b": 8, "history": 2,
                        "with_phase": True},
        "selector": {"history": 2, "d_model": 8, "neighbours": 2},
        "training": {"drops": 8, "steps": 40, "batch": 64, "lr": 0.01},
    }
    for table, values in overrides.items():
        data.setdefault(table, {}).update(values)
    return parse_scenario(data, source="tiny")
