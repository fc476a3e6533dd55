"""gReLU host adapter: every registered backbone becomes a ``grelu.model.models.BaseModel`` selectable by name.

gReLU resolves ``LightningModel(model_params={"model_type": NAME, ...})`` as an attribute of
``grelu.model.models``. After ``import caduceus_plugin`` (which installs an import hook, see
:mod:`caduceus_plugin.hosts.grelu._hook`), each backbone of the component registry is an attribute there under its
config name (``"caduceus_ps"``) and a CamelCase class name (``"CaduceusPSModel"``); backbones registered later
(third-party plugins) resolve through a module ``__getattr__``. Checkpoints therefore reload with
``LightningModel.load_from_checkpoint(path, weights_only=False)`` in any process that imported caduceus_plugin.

Models take only JSON-serialisable keyword arguments::

    LightningModel(model_params={"model_type": "caduceus_ps", "n_tasks": 2, "d_model": 64, "n_layer": 2,
                                 "head": "pooled"}, train_params={"task": "binary", ...})

``head`` names a registered head (``pooled``, ``track``, ``mlm`` or a third party's); ``bin_size``/``crop_len``
(gReLU's output convention, ``L_out = L / bin_size - 2 * crop_len``) go to heads that take them; ``head_params``
holds further head keyword arguments; every other keyword goes to the backbone (``d_model``, ``n_layer``,
``pretrained`` = a local checkpoint directory, ...). ``final_pool_func`` is what gReLU's ``change_head`` /
``tune_on_dataset`` writes: when present the head is gReLU's own ``ConvHead``, as those methods build it.
"""

from __future__ import annotations

import difflib
import inspect
import sys
import warnings
from typing import Any

import torch
from grelu.model.heads import ConvHead
from grelu.model.models import BaseModel

from caduceus_plugin.errors import CaduceusError
from caduceus_plugin.ops.gemm import keeps_float32
from caduceus_plugin.registry.components import get_registry

_UNSET: Any = object()
_GRELU_OWN = {"Enformer", "Borzoi", "Conv", "DilatedConv", "ConvGRU", "ConvTransformer", "ConvMLP", "ExplaiNN"}
_ACRONYMS = {"ps": "PS", "ph": "Ph", "cnn": "CNN", "dna": "DNA", "hyenadna": "HyenaDNA", "mlp": "MLP"}


def class_name(name: str) -> str:
    """CamelCase gReLU class name of a registered backbone: ``caduceus_ps`` -> ``CaduceusPSModel``."""
    camel = "".join(_ACRONYMS.get(p, p[:1].upper() + p[1:]) for p in name.split("_") if p)
    # a name gReLU already uses for its own model class gets a distinct one (gReLU's class stays untouched)
    return camel + ("BackboneModel" if camel in _GRELU_OWN else "Model")


def _accepts(factory: Any, key: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return key in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class ComponentModel(BaseModel):
    """A registered backbone (``embedding``) plus a registered head, as a gReLU model.

    Input one-hot ``(N, 4, L)``; output logits ``(N, n_tasks, L_out)``.

    Args:
        backbone: registered backbone name.
        n_tasks: number of outputs (tasks, classes or tracks).
        head: registered head name (default ``"pooled"``).
        crop_len: output bins cropped from each end (heads that take it; gReLU's coordinate helpers read it).
        bin_size: positions per output bin (heads that take it).
        head_params: further keyword arguments for the head.
        final_pool_func: set by gReLU's ``change_head``; when given, the head is ``ConvHead(pool_func=...)``.
        **backbone_params: keyword arguments for the backbone.
    """

    def __init__(
        self,
        backbone: str,
        n_tasks: int = 1,
        head: str = "pooled",
        crop_len: int = 0,
        bin_size: int = 1,
        head_params: dict | None = None,
        final_pool_func: Any = _UNSET,
        **backbone_params: Any,
    ) -> None:
        registry = get_registry()
        embedding = registry.build(backbone, **backbone_params)
        in_channels = getattr(embedding, "out_channels", None)
        if not isinstance(in_channels, int):
            raise CaduceusError(f"backbone {backbone!r} has no integer attribute out_channels (the plugin contract)")
        if final_pool_func is not _UNSET:
            head_module = ConvHead(n_tasks=n_tasks, in_channels=in_channels, pool_func=final_pool_func)
        else:
            factory = registry.get(head, kind="head").resolve()
            kwargs = dict(head_params or {})
            for key, value in (("bin_size", bin_size), ("crop_len", crop_len)):
                if _accepts(factory, key):
                    kwargs[key] = value
                elif (key == "crop_len" and value) or (key == "bin_size" and value != 1):
                    raise CaduceusError(f"head {head!r} does not take {key}; use head='track' for binned outputs")
            try:
                head_module = factory(n_tasks=n_tasks, in_channels=in_channels, **kwargs)
            except TypeError as err:
                raise CaduceusError(f"bad parameters for head {head!r}: {err}") from None
        super().__init__(embedding=embedding, head=head_module)
        self.backbone_name = backbone

    @keeps_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embedding(x)
        if getattr(self.head, "takes_mask", False) and h.shape[-1] == x.shape[-1]:
            return self.head(h, mask=x.sum(dim=1) > 0)
        return self.head(h)


def model_class(name: str) -> type[ComponentModel]:
    """The gReLU model class of registered backbone ``name`` (cached on this module)."""
    cls_name = class_name(name)
    cls = globals().get(cls_name)
    if isinstance(cls, type) and issubclass(cls, ComponentModel) and cls._backbone == name:
        return cls
    get_registry().get(name)  # unknown name -> CaduceusError listing the available ones

    def __init__(self, n_tasks: int = 1, **kwargs: Any) -> None:
        ComponentModel.__init__(self, name, n_tasks=n_tasks, **kwargs)

    doc = f"gReLU model with the registered backbone ``{name}`` and a registered head (see :class:`ComponentModel`)."
    cls = type(cls_name, (ComponentModel,), {"__init__": __init__, "__doc__": doc, "_backbone": name})
    cls.__module__ = __name__
    globals()[cls_name] = cls
    return cls


def register_into_grelu(module: Any = None) -> list[str]:
    """Put every registered backbone on ``grelu.model.models`` (config name and CamelCase name); returns the names.

    A CamelCase name that gReLU already defines (e.g. ``EnformerModel``) is left alone; the config name still works.
    """
    if module is None:
        import grelu.model.models as module
    added = []
    for name in get_registry().names("backbone"):
        cls = model_class(name)
        for attr in (name, cls.__name__):
            current = getattr(module, attr, None) if attr in vars(module) else None
            if current is None or (isinstance(current, type) and issubclass(current, ComponentModel)):
                setattr(module, attr, cls)
                added.append(attr)
    previous = vars(module).get("__getattr__")
    if getattr(previous, "_caduceus", False):
        previous = previous._previous

    def __getattr__(attr: str) -> Any:
        if not attr.startswith("_"):
            registry = get_registry()
            names = registry.names("backbone")
            for name in names:
                if attr in (name, class_name(name)):
                    return model_class(name)
            known = names + [class_name(n) for n in names]
            close = difflib.get_close_matches(attr, known, n=1, cutoff=0.8)
            if close:  # a near miss of one of ours: say so instead of gReLU's bare "Unknown model type"
                raise CaduceusError(
                    f"unknown model_type {attr!r}: did you mean {close[0]!r}? Registered backbones: {', '.join(names)}"
                )
        if previous is not None:
            return previous(attr)
        raise AttributeError(f"module {module.__name__!r} has no attribute {attr!r}")

    __getattr__._caduceus = True  # type: ignore[attr-defined]
    __getattr__._previous = previous  # type: ignore[attr-defined]
    module.__getattr__ = __getattr__
    return added


def _on_import(module: Any) -> None:
    """Called by the import hook once ``grelu.model.models`` has executed; never breaks gReLU's import."""
    try:
        register_into_grelu(module)
    except Exception as err:  # pragma: no cover - defensive
        warnings.warn(f"caduceus_plugin could not register its models with gReLU: {err}", stacklevel=2)


if "grelu.model.models" in sys.modules:  # direct import of this module
    _on_import(sys.modules["grelu.model.models"])
