"""The data-set registry: every data set leansnn can load, by name.

``DATASETS[name]`` is a :class:`DatasetSpec`; a command handles any of them generically::

    spec = ls.data.DATASETS[args.data]
    train = spec.load("train", root=args.root, **settings)   # settings: see spec.settings
    test = spec.load(spec.splits[-1], root=args.root, **settings)
    spec.kind            # "static": batches give x [B, C, H, W]
                         # "events": batches give time-major x [T, B, 2, H, W]
    spec.input_shape(**settings)   # (C, H, W) or (T, 2, H, W) for those settings
    spec.num_classes     # None when the folder decides (image_folder, ncaltech101):
                         # use len(dataset.classes)
    spec.mean, spec.std  # per-channel normalisation of static sets (already applied by
                         # load(..., normalize=True), the default for cifar*/image_folder)

Only keyword ``settings`` a loader accepts are passed on (:meth:`DatasetSpec.load` rejects
others with the list of valid ones), so a command can forward ``--T``/``--size`` and friends
without knowing each data set.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import DataError
from .event_datasets import event_fashion_mnist
from .event_folders import cifar10_dvs, dvs_gesture, ncaltech101, nmnist
from .fashion_mnist import fashion_mnist
from .images import NORMALIZATION, cifar10, cifar100, image_folder

__all__ = ["DatasetSpec", "DATASETS", "register_dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: how to load it and what it yields.

    ``loader(split, root=None, **settings)`` returns a data set with ``batches(batch_size,
    shuffle, seed, drop_last)``, ``len``, ``[i]``, ``classes``, ``subset(n, seed)``;
    ``shape(**settings)`` gives one input's shape for those settings.
    """

    name: str
    kind: str
    loader: Callable
    description: str
    num_classes: int | None
    shape: Callable[..., tuple[int, ...]]
    splits: tuple[str, ...]
    layout: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    defaults: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("static", "events"):
            raise ValueError(f"{self.name}: kind must be 'static' or 'events', got "
                             f"{self.kind!r}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def settings(self) -> tuple[str, ...]:
        """Keyword settings :meth:`load` accepts (besides ``split`` and ``root``)."""
        ps = list(inspect.signature(self.loader).parameters.values())
        names = tuple(p.name for p in ps if p.name not in ("split", "root")
                      and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if any(p.kind == p.VAR_KEYWORD for p in ps):   # folder event loaders: load_events'
            names += tuple(k for k in _EVENT_KW if k not in names)
        return names

    def load(self, split: str, root=None, **settings):
        """Load ``split`` from ``root`` (else ``$LEANSNN_DATA``) with ``settings``."""
        if split not in self.splits:
            raise DataError(f"{self.name}: no split {split!r}; it has {list(self.splits)}")
        bad = sorted(set(settings) - set(self.settings))
        if bad:
            raise TypeError(f"{self.name}: unknown setting(s) {bad}; valid: "
                            f"{sorted(self.settings)}")
        return self.loader(split, root=root, **settings)

    def input_shape(self, **settings) -> tuple[int, ...]:
        """Shape of one input for ``settings`` (defaults filled in)."""
        return tuple(int(s) for s in self.shape(**{**self.defaults, **settings}))


# keyword settings every folder event loader forwards to load_events
_EVENT_KW = ("by", "binary", "dt_ms", "cache_dir", "workers", "progress", "skip_bad_files",
             "use_cache")


def _events_shape(T=8, size=(32, 32), **_):
    return (T, 2, *size)


def _static(c, h, w):
    def shape(size=None, **_):
        return (c, *(size if size is not None else (h, w)))
    return shape


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to :data:`DATASETS` (a name may be registered once)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"data set {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


for _spec in (
    DatasetSpec("fashion_mnist", "static", fashion_mnist,
                "Fashion-MNIST idx files: float32 [1, 28, 28] in [0, 1]", 10, _static(1, 28, 28),
                ("train", "test"), "ROOT/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"),
    DatasetSpec("cifar10", "static", cifar10,
                "CIFAR-10 binary version: float32 [3, 32, 32], normalised", 10,
                _static(3, 32, 32), ("train", "test"),
                "ROOT[/cifar-10-batches-bin]/{data_batch_1..5,test_batch}.bin",
                *NORMALIZATION["cifar10"]),
    DatasetSpec("cifar100", "static", cifar100,
                "CIFAR-100 binary version (label='fine' 100 | 'coarse' 20 classes): float32 "
                "[3, 32, 32], normalised", 100, _static(3, 32, 32), ("train", "test"),
                "ROOT[/cifar-100-binary]/{train,test}.bin", *NORMALIZATION["cifar100"]),
    DatasetSpec("image_folder", "static", image_folder,
                "JPEG/PNG images in class folders, decoded with Pillow to float32 [3, H, W]",
                None, _static(3, 32, 32), ("train", "val", "test", "all"),
                "ROOT/<split>/<class>/*.{jpg,jpeg,png} or ROOT/<class>/*",
                *NORMALIZATION["image_folder"]),
    DatasetSpec("event_fashion_mnist", "events", event_fashion_mnist,
                "emulated event recordings of Fashion-MNIST binned into [T, 2, H, W] frames",
                10, _events_shape, ("train", "test"), "the Fashion-MNIST idx files",
                defaults={"T": 8, "size": (32, 32)}),
    DatasetSpec("nmnist", "events", nmnist,
                "N-MNIST .bin recordings (34x34) binned into [T, 2, H, W] frames", 10,
                _events_shape, ("train", "test"), "ROOT/Train|Test/<digit>/*.bin",
                defaults={"T": 8, "size": (34, 34)}),
    DatasetSpec("ncaltech101", "events", ncaltech101,
                "N-Caltech101 .bin recordings (fixed 180x240 sensor) binned into "
                "[T, 2, H, W] frames", None, _events_shape, ("train", "test", "all"),
                "ROOT/<class>/*.bin", defaults={"T": 8, "size": (45, 60)}),
    DatasetSpec("dvs_gesture", "events", dvs_gesture,
                "DVS128 Gesture AEDAT 3.1, one sample per labelled gesture, binned into "
                "[T, 2, H, W] frames", 11, _events_shape, ("train", "test"),
                "ROOT/userNN_<lighting>.aedat + _labels.csv + trials_to_{train,test}.txt",
                defaults={"T": 16, "size": (32, 32)}),
    DatasetSpec("cifar10_dvs", "events", cifar10_dvs,
                "CIFAR10-DVS AEDAT 2.0 recordings (128x128) binned into [T, 2, H, W] frames",
                10, _events_shape, ("train", "test", "all"), "ROOT/<class>/*.aedat",
                defaults={"T": 16, "size": (32, 32)}),
):
    register_dataset(_spec)

#: name -> :class:`DatasetSpec` (read-only view of the registry)
DATASETS = MappingProxyType(_REGISTRY)
