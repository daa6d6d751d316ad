"""Image-folder classification dataset: ROOT/CLASS/**/IMAGE, label = position of CLASS in class_names.

Walking never leaves a class folder: see `_images_under` for the rule on links.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from toolkit.data.images import read_image
from toolkit.errors import BadSampleError, DataError
from toolkit_plugins.datasets.common import BadSamples, is_inside

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


class ImageFolderDataset(torch.utils.data.Dataset):
    """Classification samples (uint8 image [3,H,W], int label); files are listed once, sorted."""

    task = "classification"

    def __init__(
        self, *, root: str | Path, class_names: Sequence[str] | None = None, on_bad_sample: str = "error"
    ) -> None:
        self.root = Path(root)
        bad = BadSamples(on_bad_sample, str(self.root))
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
        self.samples: list[tuple[Path, int]] = []
        real_root = os.path.realpath(self.root)
        for label, name in enumerate(self.class_names):
            files = _images_under(self.root / name, real_root, bad)
            if not files:
                raise DataError(
                    f"{self.root / name}: no images ({', '.join(sorted(EXTENSIONS))}); "
                    "add images or leave the class out of class_names"
                )
            self.samples += [(path, label) for path in files]
        self.targets = [label for _, label in self.samples]
        self.labels = self.targets  # what `toolkit data stats` counts, without decoding images
        self.skipped = bad.skipped
        bad.warn("links leading out of their class folder")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return read_image(path), label


def _images_under(folder: Path, real_root: str, bad: BadSamples) -> list[Path]:
    """The images below a class folder, sorted; links are followed only within the class folder.

    Each folder is walked once (by its real path), so link loops (`self -> .`) add nothing; a link
    whose target lies outside the class folder (`loop -> ..`, a link into another class or out of
    the root) is a bad sample: an error, or skipped and counted with on_bad_sample: skip.
    """
    real_folder = os.path.realpath(folder)
    if not is_inside(real_folder, real_root) or real_folder == real_root:
        raise DataError(
            f"{folder}: the class folder is a link to {real_folder}, outside {folder.parent}; "
            "an image folder never leaves its root: move or copy the images in"
        )
    found: list[Path] = []
    walked = {real_folder}
    pending = [folder]
    while pending:
        directory = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as exc:
            raise DataError(f"{directory}: cannot list the folder ({exc.strerror})") from None
        for entry in entries:
            path = Path(entry.path)
            is_dir = entry.is_dir(follow_symlinks=True)
            if is_dir and entry.name.startswith("."):
                continue
            if not is_dir and (path.suffix.lower() not in EXTENSIONS or not entry.is_file()):
                continue
            real = os.path.realpath(path) if entry.is_symlink() or is_dir else ""
            if entry.is_symlink() and not is_inside(real, real_folder):
                bad.handle(
                    BadSampleError(
                        str(path),
                        f"a link to {real}, outside the class folder {folder}; links are followed only "
                        "within their class folder (elsewhere they would mislabel or leave the root): "
                        "copy the files in or remove the link",
                    )
                )
            elif is_dir:
                if real not in walked:  # a loop or a second link to a folder walked already
                    walked.add(real)
                    pending.append(path)
            else:
                found.append(path)
    return sorted(found)
