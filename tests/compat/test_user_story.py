"""A user with code written for the authors' classes: the snippets of their README and their downstream
classification recipe, with only the imports changed (the authors' tokenizer is not part of compat: token ids come
from :func:`caduceus_plugin.sequence.tokenize`, the same ids as theirs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from caduceus_plugin.sequence import reverse_complement, tokenize
from tests.conftest import CADUCEUS_FIXTURES, rel_err

PS = CADUCEUS_FIXTURES / "ps_d32_l2_fused"
PH = CADUCEUS_FIXTURES / "ph_d24_l2_fused"


def _dataset(n: int, length: int, seed: int) -> tuple[list[str], torch.Tensor]:
    """Random DNA; label 1 when G+C is the majority (an RC-invariant property)."""
    g = torch.Generator().manual_seed(seed)
    seqs = ["".join("ACGT"[int(i)] for i in torch.randint(0, 4, (length,), generator=g)) for _ in range(n)]
    labels = torch.tensor([int(sum(c in "GC" for c in s) * 2 > length) for s in seqs])
    return seqs, labels


def test_readme_masked_lm_with_the_compat_classes() -> None:
    # from caduceus.modeling_caduceus import CaduceusForMaskedLM          (the authors')
    from caduceus_plugin.compat.configuration_caduceus import CaduceusConfig
    from caduceus_plugin.compat.modeling_caduceus import CaduceusForMaskedLM

    model_name = str(PS)
    model = CaduceusForMaskedLM.from_pretrained(model_name)
    input_ids = tokenize(["ACGTACGTNNACGT", "GGGCCCAAATTT"])  # left padding with [PAD], as their tokenizer
    with torch.no_grad():
        out = model(input_ids, output_hidden_states=True)
    assert out.logits.shape == (2, 14, model.config.vocab_size) and len(out.hidden_states) == 3

    config = CaduceusConfig.from_pretrained(model_name, n_layer=1)  # "add any config overrides here"
    scratch = CaduceusForMaskedLM(config)
    assert len(scratch.caduceus.backbone.layers) == 1


def test_readme_with_transformers_auto_classes() -> None:
    transformers = pytest.importorskip("transformers")
    import caduceus_plugin.compat  # noqa: F401  (the one line added: registers the classes)

    AutoConfig, AutoModelForMaskedLM = transformers.AutoConfig, transformers.AutoModelForMaskedLM

    # See the `Caduceus` collection page on the hub for list of available models. (Here: a local copy.)
    model_name = str(PH)
    model = AutoModelForMaskedLM.from_pretrained(model_name)
    expected = load_file(str(PH / "expected.safetensors"))
    with torch.no_grad():
        assert rel_err(model(expected["input_ids"]).logits, expected["logits"]) < 1e-5

    # Alternatively, you can instantiate a model from scratch to train on your own data as follows:
    config_overrides = {"n_layer": 1}
    config = AutoConfig.from_pretrained(model_name, **config_overrides)
    model = AutoModelForMaskedLM.from_config(config)
    assert len(model.caduceus.backbone.layers) == 1


def test_downstream_classification_recipe_ph_with_rc_augmentation_and_conjoining(tmp_path: Path) -> None:
    """Ph: fine-tune with RC augmentation, evaluate with post-hoc conjoining (``conjoin_eval``), save, reload."""
    from caduceus_plugin.compat.modeling_caduceus import CaduceusForSequenceClassification

    torch.manual_seed(0)
    model = CaduceusForSequenceClassification.from_pretrained(
        str(PH), num_labels=2, pooling_strategy="mean", conjoin_train=False, conjoin_eval=True
    )
    seqs, labels = _dataset(32, 48, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.1)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for step in range(4):
        batch = slice(8 * step, 8 * step + 8)
        flip = torch.rand(8) < 0.5  # RC augmentation, at string level as the authors' dataset does it
        text = [reverse_complement(s) if f else s for s, f in zip(seqs[batch], flip)]
        out = model(input_ids=tokenize(text), labels=labels[batch])
        assert torch.isfinite(out.loss)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "score.weight" in changed and any("mamba_rev" in n for n in changed)

    model.eval()  # conjoin_eval: (batch, length, 2) = forward ids and reverse-complement ids
    test = torch.stack([tokenize(seqs[:8]), tokenize([reverse_complement(s) for s in seqs[:8]])], dim=-1)
    with torch.no_grad():
        logits = model(input_ids=test).logits
        swapped = model(input_ids=test.flip(-1)).logits
    torch.testing.assert_close(logits, swapped)  # conjoined predictions do not depend on the strand

    model.save_pretrained(tmp_path / "finetuned")
    again = CaduceusForSequenceClassification.from_pretrained(str(tmp_path / "finetuned"), conjoin_eval=True)
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=test).logits, logits)


def test_downstream_classification_recipe_ps_is_invariant_without_conjoining() -> None:
    from caduceus_plugin.compat.modeling_caduceus import CaduceusForSequenceClassification

    model = CaduceusForSequenceClassification.from_pretrained(str(PS), num_labels=2)
    seqs, labels = _dataset(4, 40, seed=1)
    out = model(input_ids=tokenize(seqs), labels=labels)
    out.loss.backward()
    with torch.no_grad():
        a = model(input_ids=tokenize(seqs)).logits
        b = model(input_ids=tokenize([reverse_complement(s) for s in seqs])).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class _Seqs(torch.utils.data.Dataset):
    def __init__(self, seqs: list[str], labels: torch.Tensor):
        self.ids, self.labels = tokenize(seqs), labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_hugging_face_trainer(tmp_path: Path) -> None:
    """The path users take with the released models: AutoModelForSequenceClassification + Trainer, checkpoints in
    safetensors (the default), on CPU."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import caduceus_plugin.compat  # noqa: F401

    folder = tmp_path / "released"
    shutil.copytree(PS, folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=2)
    seqs, labels = _dataset(16, 32, seed=2)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, max_steps=2, learning_rate=1e-3,
        save_strategy="steps", save_steps=2, logging_strategy="no", report_to="none", disable_tqdm=True,
        use_cpu=True, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Seqs(seqs, labels))
    trainer.train()
    saved = load_file(str(tmp_path / "run" / "checkpoint-2" / "model.safetensors"))
    assert (
        "score.weight" in saved and "caduceus.backbone.layers.0.mixer.submodule.mamba_rev.in_proj.weight" not in saved
    )
    fresh = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=2)
    fresh.load_state_dict(saved)
    x = tokenize(seqs[:4])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x).logits, model(x).logits)
    metrics = trainer.predict(_Seqs(seqs[:8], labels[:8])).metrics
    assert "test_loss" in metrics
