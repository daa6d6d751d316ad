"""Image-folder classification dataset: ROOT/CLASS/**/IMAGE, label = position of CLASS in class_names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from toolkit.data.images import read_image
from toolkit.errors import DataError
from toolkit_plugins.datasets.common import BadSamples

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


class ImageFolderDataset(torch.utils.data.Dataset):
    """Classification samples (uint8 image [3,H,W], int label); files are listed once, sorted."""

    task = "classification"

    def __init__(
        self, *, root: str | Path, class_names: Sequence[str] | None = None, on_bad_sample: str = "error"
    ) -> None:
        self.root = Path(root)
        BadSamples(on_bad_sample, str(self.root))  # validates the policy; nothing is skipped at index time
        if not self.root.is_dir():
            raise DataError(f"{self.root}: image folder not found; check the dataset's 'root' path")
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if class_names is None:
            if not folders:
                raise DataError(f"{self.root}: no class sub-folders; put each class's images in ROOT/CLASS/")
            class_names = folders
        missing = [name for name in class_names if name not in folders]
        if missing:
            raise DataError(
                f"{self.root}: no sub-folder for class {', '.join(map(repr, missing))}; "
                f"sub-folders: {', '.join(folders) or 'none'}"
            )
        self.class_names = list(class_names)
        self.skipped: list[str] = []
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(self.class_names):
            files = _images_under(self.root / name)
            if not files:
                raise DataError(
                    f"{self.root / name}: no images ({', '.join(sorted(EXTENSIONS))}); "
                    "add images or leave the class out of class_names"
                )
            self.samples += [(path, label) for path in files]
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return read_image(path), label


def _images_under(folder: Path) -> list[Path]:
    found = []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found += [Path(directory) / f for f in files if Path(f).suffix.lower() in EXTENSIONS]
    return sorted(found)
