"""Data sets: Fashion-MNIST from idx files, event arrays and their binning into frames, the
event-camera emulator, emulated-event Fashion-MNIST, and readers for real event formats."""

from .emulator import EmulatorSettings, emulate, emulate_batch
from .event_datasets import EventFrameDataset, FrameSettings, event_fashion_mnist
from .events import (
    EVENT_DTYPE,
    EventError,
    check_events,
    frames_from_batch,
    make_events,
    to_frames,
)
from .fashion_mnist import CLASSES, DataError, ImageDataset, fashion_mnist, read_idx
from .readers import (
    EventFormatError,
    read_aedat31,
    read_dvs_gesture,
    read_dvs_gesture_labels,
    read_nmnist,
)

# Data set names the CLI and checkpoints refer to: name -> (loader, what it yields).
DATASETS = {
    "fashion_mnist": (fashion_mnist, "static images, float32 [1, 28, 28] in [0, 1]"),
    "event_fashion_mnist": (event_fashion_mnist,
                            "emulated event recordings binned into [T, 2, H, W] frames"),
}

__all__ = [
    "DATASETS", "fashion_mnist", "read_idx", "ImageDataset", "DataError", "CLASSES",
    "EVENT_DTYPE", "EventError", "make_events", "check_events", "to_frames",
    "frames_from_batch", "EmulatorSettings", "emulate", "emulate_batch",
    "EventFrameDataset", "FrameSettings", "event_fashion_mnist",
    "EventFormatError", "read_nmnist", "read_aedat31", "read_dvs_gesture",
    "read_dvs_gesture_labels",
]
