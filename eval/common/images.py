"""Image files for evaluation: resolving paths and decoding in batches, with every failure counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import torch

MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def resolve_image_path(root: Path, name: str, try_basename: bool = False, try_suffixes: bool = False) -> Path:
    """`name` under `root` (absolute names kept). Fallbacks, each only when asked and only if the first
    choice does not exist: the bare file name under `root` (datasets whose JSON paths carry folders
    the download does not have), and common image suffixes (FashionIQ names images without one)."""
    path = Path(name)
    path = path if path.is_absolute() else root / path
    if path.exists():
        return path
    candidates = []
    if try_basename:
        candidates.append(root / Path(name).name)
    if try_suffixes and not Path(name).suffix:
        candidates += [path.with_name(path.name + suffix) for suffix in _IMAGE_SUFFIXES]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return path


class _ImageFiles:
    # a map-style dataset for torch's DataLoader (duck-typed, so this module imports no torch)
    """Decodes and transforms one image; a file Pillow cannot read becomes None (counted, not fatal)."""

    def __init__(self, paths: Sequence[Path], indices: Sequence[int], transform: Callable):
        self.paths, self.indices, self.transform = paths, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = self.indices[position]
        try:
            with Image.open(self.paths[index]) as image:
                return index, self.transform(image)
        except (OSError, ValueError, Image.DecompressionBombError):
            return index, None


def _collate(items):
    good = [(index, pixels) for index, pixels in items if pixels is not None]
    failed = [index for index, pixels in items if pixels is None]
    import torch

    pixels = torch.stack([p for _, p in good]) if good else None
    return [index for index, _ in good], pixels, failed


def iter_image_batches(
    paths: Sequence[Path], transform: Callable, batch_size: int, num_workers: int, failures: Counter
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield `(indices, pixel_values (b, 3, S, S))` over the readable images of `paths`, in order.

    Missing and unreadable files are skipped and counted in `failures` (`missing_image`,
    `unreadable_image`); the caller knows which indices succeeded from the yielded ones.
    """
    present = []
    for index, path in enumerate(paths):
        if Path(path).is_file():
            present.append(index)
        else:
            failures[MISSING_IMAGE] += 1
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _ImageFiles(list(paths), present, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    for indices, pixels, failed in loader:
        failures[UNREADABLE_IMAGE] += len(failed)
        if pixels is not None:
            yield indices, pixels


def failure_reason(path: Path) -> str:
    """Why an image that failed to encode failed: `missing_image` or `unreadable_image`."""
    return UNREADABLE_IMAGE if Path(path).is_file() else MISSING_IMAGE


def image_size_of(path: Path) -> tuple[int, int] | None:
    """(width, height) read from the file header, or None if the file is missing or unreadable."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError):
        return None
