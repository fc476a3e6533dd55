from __future__ import annotations

import torch

from caduceus_plugin.models.rcps import rc_ids
from caduceus_plugin.sequence import (
    decode,
    ids_to_onehot,
    onehot_to_ids,
    onehot_to_token_probs,
    reverse_complement,
    tokenize,
)
from tests.conftest import random_ids, rel_err, tiny_model

COMP = [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]


def test_ids_and_left_padding() -> None:
    ids = tokenize(["ACGTN", "acx"])
    assert ids.tolist() == [[7, 8, 9, 10, 11], [4, 4, 7, 8, 6]]
    assert tokenize("ACNN", n_to_pad=True).tolist() == [[7, 8, 4, 4]]
    assert tokenize("ACG", max_length=5, padding_side="right").tolist() == [[7, 8, 9, 4, 4]]
    assert decode([4, 7, 8, 9, 10, 11]) == "[PAD]ACGTN"


def test_nucleotide_complement_is_17_minus_id() -> None:
    for i in range(7, 11):
        assert COMP[i] == 17 - i
    seq = "ACCGTTTAN"
    assert torch.equal(rc_ids(tokenize(seq), COMP), tokenize(reverse_complement(seq)))


def test_onehot_round_trip_and_n_columns() -> None:
    ids = tokenize(["ACGTNA"])
    onehot = ids_to_onehot(ids)
    assert onehot.shape == (1, 4, 6)
    assert onehot[0, :, 4].sum() == 0  # gReLU: N is an all-zero column
    assert torch.equal(onehot_to_ids(onehot), ids)
    kipoi = onehot.clone()
    kipoi[0, :, 4] = 0.25  # kipoiseq writes N as 0.25s
    assert torch.equal(onehot_to_ids(kipoi), ids)
    assert onehot_to_ids(kipoi, n_to_pad=True)[0, 4] == 4
    probs = onehot_to_token_probs(kipoi)
    assert torch.equal(probs.argmax(-1), ids)
    assert torch.allclose(probs.sum(-1), torch.ones(1, 6))


def test_onehot_rc_is_flip_of_both_axes() -> None:
    ids = random_ids(2, 19, 4)
    assert torch.equal(ids_to_onehot(rc_ids(ids, COMP)), ids_to_onehot(ids).flip(1, 2))


def test_onehot_path_equals_ids_and_is_differentiable() -> None:
    for rcps in (True, False):
        model = tiny_model(0, rcps=rcps)
        ids = tokenize(["ACGTNACGGT", "TTNACGACGA"])
        onehot = ids_to_onehot(ids).requires_grad_(True)
        out = model(token_probs=onehot_to_token_probs(onehot))
        ref = model(ids)
        assert rel_err(out.logits, ref.logits) < 1e-6
        out.logits[..., 7:11].sum().backward()
        grad = onehot.grad
        assert grad is not None and grad.shape == onehot.shape
        assert grad[:, :, [0, 1, 2, 3, 5]].abs().sum() > 0  # gradients reach real bases
        assert grad[0, :, 4].abs().sum() == 0  # N columns carry none
