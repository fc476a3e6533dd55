"""DNA text, token ids and one-hot tensors: the one home of cleaning, reverse complement, tokenizing and one-hot.

**Token ids** (the authors' character tokenizer, spec §1.10): ``[CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4
[RESERVED]=5 [UNK]=6 A=7 C=8 G=9 T=10 N=11``; the model vocabulary is padded to 16 (ids 12-15 unused). Padding goes
on the left. For nucleotides the complement is ``17 - id``; every other id is its own complement.

**The N convention.** A base is A, C, G or T in either case (soft-masked lower case is a real base, as in every
genome browser); everything else (N, IUPAC codes such as R or Y, ``-``) is N:

* in text, :func:`clean` upper-cases and writes ``N``;
* as token ids, N is id 11, or ``[PAD]`` (4) with ``n_to_pad=True``, as the authors' pre-training data has it (use
  it with the released weights; ``caduceus pretrain`` trains that way too);
* in one-hot ``(n, 4, l)`` (A, C, G, T rows, gReLU's layout) N is an all-zero column. Readers also accept kipoiseq's
  uniform 0.25 column (:func:`onehot_n_mask`); :func:`onehot` writes one with ``n_value=0.25`` where a kipoi
  dataloader's output must be matched;
* in gReLU's index code (:func:`grelu_indices`) A0 C1 G2 T3 and N4.

:func:`tokenize` is the authors' tokenizer itself: characters other than ACGTN (after upper-casing) become [UNK],
as theirs does; give it :func:`clean` text for the convention above.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
CLS_ID, SEP_ID, BOS_ID, MASK_ID, PAD_ID, RESERVED_ID, UNK_ID = range(7)
NUCLEOTIDES = "ACGTN"
A_ID, C_ID, G_ID, T_ID, N_ID = 7, 8, 9, 10, 11
VOCAB = (*SPECIAL_TOKENS, *NUCLEOTIDES)
TOKENIZER_VOCAB_SIZE = len(VOCAB)  # 12
PADDED_VOCAB_SIZE = 16

# --- byte tables: every conversion below is one lookup over the ASCII bytes --------------------------------------
_BASE_INDEX = np.full(256, 4, dtype=np.int8)  # byte -> A0 C1 G2 T3, anything else N4
for _i, _b in enumerate(b"ACGT"):
    _BASE_INDEX[_b] = _BASE_INDEX[_b + 32] = _i  # upper and lower case
#: ``bytes.translate`` tables: clean (ACGT any case -> upper, else N) and complement of clean text.
_CLEAN = bytes(b"ACGTN"[_BASE_INDEX[b]] for b in range(256))
_COMPLEMENT = bytes(b"TGCAN"[_BASE_INDEX[b]] for b in range(256))
#: token id -> complement id (nucleotides 7..10 as 17 - id; specials, N and unused ids map to themselves)
COMPLEMENT_IDS = np.arange(PADDED_VOCAB_SIZE, dtype=np.int64)
COMPLEMENT_IDS[A_ID : T_ID + 1] = 17 - COMPLEMENT_IDS[A_ID : T_ID + 1]
_CHAR_TO_ID = {c: i + A_ID for i, c in enumerate(NUCLEOTIDES)}


def _ascii(seq: str | bytes) -> bytes:
    return seq.encode("ascii", "replace") if isinstance(seq, str) else bytes(seq)


# --- text -------------------------------------------------------------------------------------------------------


def clean(seq: str | bytes) -> str:
    """Upper-case; every character other than A/C/G/T (any case) becomes ``N``."""
    return _ascii(seq).translate(_CLEAN).decode("ascii")


def complement(seq: str | bytes) -> str:
    """Complement, base by base (not reversed), of any text: the result is clean (ACGTN, upper case)."""
    return _ascii(seq).translate(_COMPLEMENT).decode("ascii")


def reverse_complement(seq: str | bytes) -> str:
    """Reverse complement of any text: the result is clean (ACGTN, upper case; other characters became N)."""
    return _ascii(seq).translate(_COMPLEMENT)[::-1].decode("ascii")


# --- token ids --------------------------------------------------------------------------------------------------


def token_ids(seqs: Sequence[str | bytes], n_to_pad: bool = True, dtype: type = np.int64) -> np.ndarray:
    """Equal-length sequences -> ``(b, l)`` token ids: A/C/G/T (any case) -> 7..10, anything else -> N (11), or
    [PAD] (4) with ``n_to_pad``. A single ``str``/``bytes`` gives a 1-D array.

    Raises:
        ValueError: sequences of different lengths.
    """
    lut = np.array([A_ID, C_ID, G_ID, T_ID, PAD_ID if n_to_pad else N_ID], dtype=dtype)
    if isinstance(seqs, (str, bytes)):
        return lut[_BASE_INDEX[np.frombuffer(_ascii(seqs), dtype=np.uint8)]]
    return lut[grelu_indices(seqs)]


def reverse_complement_ids(
    ids: np.ndarray | torch.Tensor, complement_ids: Sequence[int] | None = None
) -> np.ndarray | torch.Tensor:
    """Reverse complement of token ids along the last axis (numpy or torch; the same type back).

    Args:
        ids: ``(..., l)`` integer ids.
        complement_ids: id -> complement id (a model config's padded complement map); default
            :data:`COMPLEMENT_IDS`.
    """
    table = COMPLEMENT_IDS if complement_ids is None else complement_ids
    if isinstance(ids, torch.Tensor):
        cmap = torch.as_tensor(np.asarray(table), device=ids.device, dtype=torch.long)
        return cmap[ids.flip(-1)].to(ids.dtype)
    return np.asarray(table)[ids[..., ::-1]].astype(ids.dtype, copy=False)


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


# --- one-hot and gReLU's index code -----------------------------------------------------------------------------


def grelu_indices(seqs: Sequence[str | bytes]) -> np.ndarray:
    """Equal-length sequences -> int8 ``(n, l)`` in gReLU's index code (A0 C1 G2 T3 any case, anything else N4).

    Same result as ``grelu.sequence.format.strings_to_indices`` on clean text, as one table lookup instead of a
    Python loop per base (and N for any other character rather than a KeyError).

    Raises:
        ValueError: sequences of different lengths.
    """
    seqs = list(seqs)
    if not seqs:
        return np.zeros((0, 0), dtype=np.int8)
    length = len(seqs[0])
    if any(len(s) != length for s in seqs):
        raise ValueError("all sequences must have the same length")
    buf = np.frombuffer(b"".join(_ascii(s) for s in seqs), dtype=np.uint8)
    return _BASE_INDEX[buf].reshape(len(seqs), length)


def onehot(seqs: Sequence[str | bytes], n_value: float = 0.0) -> np.ndarray:
    """Equal-length sequences -> ``(n, 4, l)`` float32 one-hot (A, C, G, T rows; any case).

    N (and every other character) is a column of ``n_value``: 0 (gReLU; the default) or 0.25 (kipoiseq's
    ``one_hot_dna(..., neutral_value=0.25)``, which our kipoi export must reproduce).
    """
    table = np.zeros((5, 4), dtype=np.float32)
    table[:4] = np.eye(4, dtype=np.float32)
    table[4] = n_value
    idx = grelu_indices(seqs)
    if idx.size == 0:
        return np.zeros((len(idx), 4, idx.shape[1] if idx.ndim == 2 else 0), dtype=np.float32)
    return np.ascontiguousarray(table[idx].transpose(0, 2, 1))


def onehot_n_mask(onehot: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
    """``(b, l)`` bool: columns that encode N (all zero, or uniform 0.25 as kipoiseq writes them)."""
    total = onehot.sum(dim=1)
    uniform = (onehot - 0.25).abs().amax(dim=1) <= atol
    return (total.abs() <= atol) | uniform


def onehot_to_token_probs(
    onehot: torch.Tensor, vocab_size: int = PADDED_VOCAB_SIZE, n_to_pad: bool = False
) -> torch.Tensor:
    """``(b, 4, l)`` ACGT one-hot -> ``(b, l, vocab)`` token weights, differentiable w.r.t. the A/C/G/T entries.

    The embedding multiplies these weights (a matmul), so gradients reach the one-hot input (saliency). N columns
    get weight 1 on the N id (or [PAD] with ``n_to_pad``) and carry no gradient.
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
