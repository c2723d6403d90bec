"""Link-level simulation (Sionna 2.x PHY): BLER and throughput of beam-selection policies.

Sionna is imported lazily: ``import beamattn.linklevel`` does not import it.
"""

from .chain import LinkChain, LinkConfig, ebno_to_no, reference_awgn_errors

__all__ = ["LinkChain", "LinkConfig", "SelectorBlock", "ebno_to_no", "reference_awgn_errors", "run_linklevel"]


def __getattr__(name: str):
    if name == "SelectorBlock":
        from .chain import _selector_block_class

        return _selector_block_class()
    if name == "run_linklevel":
        from .run import run_linklevel

        return run_linklevel
    raise AttributeError(name)
