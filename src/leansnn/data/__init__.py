"""Data sets: a registry of every data set by name (:data:`DATASETS`), static images
(Fashion-MNIST, CIFAR-10/100, image folders) with augmentation, event arrays and their
binning into frames, the event-camera emulator, emulated-event Fashion-MNIST, real event
data sets read from their folders (N-MNIST, N-Caltech101, DVS128 Gesture, CIFAR10-DVS) with
the ASA paper's window protocol, one checked on-disk cache, and tonic compatibility.
See docs/datasets.md."""

from .cache import default_cache_dir
from .compat import from_tonic, time_major_collate, to_time_major
from .emulator import EmulatorSettings, emulate, emulate_batch
from .errors import DataError, FileFormatError
from .event_datasets import EventFrameDataset, FrameSettings, event_fashion_mnist
from .event_folders import (
    EventDataset,
    EventWindows,
    cifar10_dvs,
    dvs_gesture,
    ncaltech101,
    nmnist,
    vote,
    window_starts,
)
from .events import (
    EVENT_DTYPE,
    EventError,
    as_events,
    check_events,
    frames_from_batch,
    make_events,
    to_frames,
)
from .fashion_mnist import CLASSES, ImageDataset, fashion_mnist, read_idx
from .images import (
    Cutout,
    HorizontalFlip,
    ImageSet,
    RandomCrop,
    augmentation,
    cifar10,
    cifar100,
    image_folder,
)
from .readers import (
    EventFormatError,
    read_aedat2,
    read_aedat31,
    read_dvs_gesture,
    read_dvs_gesture_labels,
    read_nmnist,
)
from .registry import DATASETS, DatasetSpec, register_dataset

__all__ = [
    "DATASETS", "DatasetSpec", "register_dataset",
    "fashion_mnist", "read_idx", "ImageDataset", "DataError", "FileFormatError", "CLASSES",
    "cifar10", "cifar100", "image_folder", "ImageSet", "RandomCrop", "HorizontalFlip",
    "Cutout", "augmentation",
    "EVENT_DTYPE", "EventError", "make_events", "as_events", "check_events", "to_frames",
    "frames_from_batch", "EmulatorSettings", "emulate", "emulate_batch",
    "EventFrameDataset", "FrameSettings", "event_fashion_mnist",
    "nmnist", "ncaltech101", "dvs_gesture", "cifar10_dvs", "EventDataset", "EventWindows",
    "vote", "window_starts", "from_tonic", "time_major_collate", "to_time_major",
    "default_cache_dir",
    "EventFormatError", "read_nmnist", "read_aedat31", "read_aedat2", "read_dvs_gesture",
    "read_dvs_gesture_labels",
]
