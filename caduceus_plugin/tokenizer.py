"""The authors' character tokenizer ids, and the bridge from gReLU/kipoi one-hot tensors.

Ids (spec §1.10): ``[CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4 [RESERVED]=5 [UNK]=6 A=7 C=8 G=9 T=10 N=11``;
the model vocabulary is padded to 16 (ids 12-15 unused). Padding goes on the left. For nucleotides the complement
is ``17 - id``.

One-hot inputs are ``(b, 4, l)`` in A, C, G, T order (gReLU). An N is an all-zero column (gReLU) or a column of
0.25s (kipoiseq). :func:`onehot_to_token_probs` turns them into ``(b, l, vocab)`` weights over token ids that the
embedding multiplies (a matmul, so gradients reach the one-hot input).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
CLS_ID, SEP_ID, BOS_ID, MASK_ID, PAD_ID, RESERVED_ID, UNK_ID = range(7)
NUCLEOTIDES = "ACGTN"
A_ID, C_ID, G_ID, T_ID, N_ID = 7, 8, 9, 10, 11
VOCAB = (*SPECIAL_TOKENS, *NUCLEOTIDES)
TOKENIZER_VOCAB_SIZE = len(VOCAB)  # 12
_CHAR_TO_ID = {c: i + A_ID for i, c in enumerate(NUCLEOTIDES)}
_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def encode(seq: str, n_to_pad: bool = False) -> list[int]:
    """Ids of one sequence (upper-cased; characters other than ACGTN become [UNK]); no special tokens added."""
    n_id = PAD_ID if n_to_pad else N_ID
    ids = [_CHAR_TO_ID.get(c, UNK_ID) for c in seq.upper()]
    return [n_id if i == N_ID else i for i in ids]


def decode(ids: Iterable[int]) -> str:
    return "".join(VOCAB[i] if 0 <= i < len(VOCAB) else "[UNK]" for i in ids)


def tokenize(
    seqs: str | Sequence[str], max_length: int | None = None, n_to_pad: bool = False, padding_side: str = "left"
) -> torch.Tensor:
    """Token ids ``(b, l)`` for one or more sequences, padded with [PAD] to the longest (or ``max_length``).

    Args:
        seqs: DNA string(s).
        max_length: pad (or truncate from the right) to this length.
        n_to_pad: map N to [PAD] (id 4) as in the authors' pre-training data (use with the released weights).
        padding_side: ``"left"`` (the authors' default) or ``"right"``.
    """
    if isinstance(seqs, str):
        seqs = [seqs]
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    rows = [encode(s, n_to_pad) for s in seqs]
    length = max_length if max_length is not None else max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        row = row[:length]
        if row:
            if padding_side == "left":
                out[i, length - len(row) :] = torch.tensor(row)
            else:
                out[i, : len(row)] = torch.tensor(row)
    return out


def reverse_complement(seq: str) -> str:
    """Reverse complement of a DNA string (other characters become N)."""
    return "".join(_COMPLEMENT.get(c, "N") for c in reversed(seq.upper()))


def onehot_n_mask(onehot: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
    """``(b, l)`` bool: columns that encode N (all zero, or uniform 0.25 as kipoiseq writes them)."""
    total = onehot.sum(dim=1)
    uniform = (onehot - 0.25).abs().amax(dim=1) <= atol
    return (total.abs() <= atol) | uniform


def onehot_to_token_probs(onehot: torch.Tensor, vocab_size: int = 16, n_to_pad: bool = False) -> torch.Tensor:
    """``(b, 4, l)`` ACGT one-hot -> ``(b, l, vocab)`` token weights, differentiable w.r.t. the A/C/G/T entries.

    N columns get weight 1 on the N id (or [PAD] with ``n_to_pad``) and carry no gradient.
    """
    if onehot.dim() != 3 or onehot.shape[1] != 4:
        raise ValueError(f"expected a one-hot tensor of shape (batch, 4, length), got {tuple(onehot.shape)}")
    x = onehot.float().transpose(1, 2)  # (b, l, 4)
    is_n = onehot_n_mask(onehot)
    probs = x.new_zeros(*x.shape[:2], vocab_size)
    nuc = torch.where(is_n[..., None], torch.zeros_like(x), x)
    probs = torch.cat([probs[..., :A_ID], nuc, probs[..., T_ID + 1 :]], dim=-1)
    probs[..., PAD_ID if n_to_pad else N_ID] = is_n.float()
    return probs


def onehot_to_ids(onehot: torch.Tensor, n_to_pad: bool = False) -> torch.Tensor:
    """``(b, 4, l)`` one-hot -> ``(b, l)`` ids (argmax; N columns -> N or [PAD])."""
    ids = onehot.argmax(dim=1) + A_ID
    return torch.where(onehot_n_mask(onehot), PAD_ID if n_to_pad else N_ID, ids)


def ids_to_onehot(ids: torch.Tensor) -> torch.Tensor:
    """``(b, l)`` ids -> ``(b, 4, l)`` float one-hot; anything but A/C/G/T becomes an all-zero column."""
    nuc = (ids >= A_ID) & (ids <= T_ID)
    idx = (ids - A_ID).clamp(0, 3)
    out = torch.nn.functional.one_hot(idx, 4).float() * nuc[..., None]
    return out.transpose(1, 2)
