"""Small Transformer modules for sequences, on the shared attention core.

- :class:`TokenEmbedding` with a choice of positional encodings;
- :class:`EncoderBlock` with a pre-LN / post-LN switch, on :class:`beamattn.core.MultiHeadAttention`;
- :class:`Encoder` (embedding + blocks + final norm) and synthetic tasks in :mod:`beamattn.nlp.tasks`.
"""

from .model import Encoder, EncoderBlock, EncoderConfig, TokenEmbedding
from .tasks import alignment_task, associative_recall, copy_task, reverse_task

__all__ = ["Encoder", "EncoderBlock", "EncoderConfig", "TokenEmbedding", "copy_task", "reverse_task",
           "associative_recall", "alignment_task"]
