"""Random-access readers over record files: JSONL, `.json` lists (this format or FineHARD's) and
webdataset `.tar` shards (one image + one `.json` record per sample).

Every reader is indexed (`len`, `load(i)`), so a seeded sampler can shuffle, split across ranks and
restart mid-epoch at exactly the same sample after `--resume`. webdataset 1.x reads shards as a stream
only, which cannot restart mid-epoch; so shards are indexed here from their tar headers (one seek per
member, no data read) with webdataset's own key/extension rule, and each sample is read by seeking.

Records are parsed lazily: a malformed line or an unreadable image becomes a `BadRecord` when the
sample is loaded, and the dataset counts it. Relative image paths are taken from `--images` when given,
else from the folder of the record file. `--data` may name files, folders (every .jsonl / .json / .tar
in them, e.g. FineHARD's `jsonfiles/`), glob patterns and webdataset brace patterns.

Duplicated records (the same JSONL line, the same image and captions in a JSON list, the same shard sample)
are counted when the data is opened: a file given twice counts all its records twice.
"""

from __future__ import annotations

import functools
import glob
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext

from fgclip.data.schema import (
    INCOMPLETE_SAMPLE,
    MALFORMED_JSON,
    MISSING_IMAGE,
    UNREADABLE_IMAGE,
    BadRecord,
    Record,
    is_finehard_item,
    parse_item,
)
from fgclip.errors import UserError
from fgclip.images import to_rgb
from fgclip.json_files import read_json

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "tif", "tiff", "gif")


class ImageError(ValueError):
    """An image that is missing (`kind` MISSING_IMAGE) or that Pillow cannot decode (UNREADABLE_IMAGE)."""

    def __init__(self, message: str, kind: str = UNREADABLE_IMAGE):
        super().__init__(message)
        self.kind = kind


@dataclass
class LoadedRecord:
    """A valid record and where its image is: a file path, or the image bytes from a shard."""

    record: Record
    source: str  # "file:line" or "shard.tar:key", for skip messages
    image_path: Path | None = None
    image_bytes: bytes | None = None
    finehard: bool = False  # read from an official FineHARD item (the trainer applies the official text rules)

    def open_image(self) -> Image.Image:
        """The decoded RGB image, or `ImageError`."""
        try:
            if self.image_bytes is not None:
                image = Image.open(io.BytesIO(self.image_bytes))
            elif self.image_path is not None:
                if not self.image_path.is_file():
                    raise ImageError(f"image not found: {self.image_path}", MISSING_IMAGE)
                image = Image.open(self.image_path)
            else:
                raise ImageError("the sample has no image", MISSING_IMAGE)
            image.load()  # decode now, so a truncated file fails here and not later in a transform
            return to_rgb(image)
        except ImageError:
            raise
        except Exception as error:  # Pillow raises many types for corrupt data
            raise ImageError(f"cannot decode image: {type(error).__name__}: {error}") from error


def _identity(*parts) -> int:
    """A 64-bit key of a record's identity, for counting duplicates within this process."""
    return hash(parts)


class JsonlSource:
    """A `.jsonl` file, indexed by line offsets (records are parsed when loaded)."""

    def __init__(self, path: Path, require_captions: bool = True, images: Path | None = None):
        self.path, self.require_captions = path, require_captions
        self.root = images if images is not None else path.parent
        offsets, lines, identities = [], [], []
        with path.open("rb") as handle:
            position = 0
            for number, line in enumerate(handle, start=1):
                stripped = line.strip()
                if stripped:
                    offsets.append(position)
                    lines.append(number)
                    identities.append(_identity(stripped))
                position += len(line)
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._lines = np.asarray(lines, dtype=np.int64)
        self.identities = np.asarray(identities, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._offsets)

    def load(self, index: int) -> LoadedRecord | BadRecord:
        source = f"{self.path}:{int(self._lines[index])}"
        with self.path.open("rb") as handle:
            handle.seek(int(self._offsets[index]))
            line = handle.readline()
        try:
            item = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return BadRecord(source, f"not valid JSON: {error}", MALFORMED_JSON)
        parsed = parse_item(item, source, self.require_captions)
        if isinstance(parsed, BadRecord):
            return parsed
        return LoadedRecord(parsed, source, image_path=parsed.resolve_image(self.root), finehard=is_finehard_item(item))


def _item_identity(item) -> int:
    if isinstance(item, dict):
        if is_finehard_item(item):
            return _identity(str(item.get("f_path")), str(item.get("caption")), str(item.get("short_caption")))
        return _identity(str(item.get("image")), str(item.get("long_caption")), str(item.get("short_caption")))
    return _identity(json.dumps(item, sort_keys=True, default=str))


class JsonListSource:
    """A `.json` file holding a list of records (this format or the official FineHARD items)."""

    def __init__(self, path: Path, require_captions: bool = True, images: Path | None = None):
        self.path, self.require_captions = path, require_captions
        self.root = images if images is not None else path.parent
        self._items = items = read_json(path, list, f"{path}: a .json record file must hold a list of records")
        self.identities = np.asarray([_item_identity(item) for item in items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._items)

    def load(self, index: int) -> LoadedRecord | BadRecord:
        source = f"{self.path}:{index}"
        item = self._items[index]
        parsed = parse_item(item, source, self.require_captions)
        if isinstance(parsed, BadRecord):
            return parsed
        return LoadedRecord(parsed, source, image_path=parsed.resolve_image(self.root), finehard=is_finehard_item(item))


class TarShardSource:
    """webdataset `.tar` shards: samples are the members sharing a key (webdataset's rule: the name up
    to the first dot of the file name); each needs a `.json` record and one image member."""

    def __init__(self, paths: Sequence[Path], require_captions: bool = True):
        self.paths, self.require_captions = list(paths), require_captions
        shard_ids, keys, json_at, image_at, image_ext = [], [], [], [], []
        for shard_id, path in enumerate(self.paths):
            for key, members in _tar_samples(path):
                json_member = members.get("json")
                image_name = next((ext for ext in IMAGE_EXTENSIONS if ext in members), None)
                shard_ids.append(shard_id)
                keys.append(key)
                json_at.append(json_member or (-1, 0))
                image_at.append(members[image_name] if image_name else (-1, 0))
                image_ext.append(image_name or "")
        self._shard = np.asarray(shard_ids, dtype=np.int32)
        self._keys = keys
        resolved = [str(path.resolve()) for path in self.paths]
        self.identities = np.asarray([_identity(resolved[s], k) for s, k in zip(shard_ids, keys)], dtype=np.int64)
        self._json = np.asarray(json_at, dtype=np.int64).reshape(-1, 2)
        self._image = np.asarray(image_at, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._keys)

    def _read(self, shard: Path, offset: int, size: int) -> bytes:
        with shard.open("rb") as handle:
            handle.seek(offset)
            return handle.read(size)

    def load(self, index: int) -> LoadedRecord | BadRecord:
        shard = self.paths[int(self._shard[index])]
        source = f"{shard}:{self._keys[index]}"
        json_offset, json_size = (int(v) for v in self._json[index])
        image_offset, image_size = (int(v) for v in self._image[index])
        if json_offset < 0:
            return BadRecord(source, "the sample has no .json record", INCOMPLETE_SAMPLE)
        if image_offset < 0:
            return BadRecord(
                source, f"the sample has no image member ({', '.join(IMAGE_EXTENSIONS)})", INCOMPLETE_SAMPLE
            )
        try:
            item = json.loads(self._read(shard, json_offset, json_size))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return BadRecord(source, f"not valid JSON: {error}", MALFORMED_JSON)
        if isinstance(item, dict) and not item.get("image") and not item.get("f_path"):
            item = {**item, "image": self._keys[index]}  # the image is the member; the field is optional here
        parsed = parse_item(item, source, self.require_captions)
        if isinstance(parsed, BadRecord):
            return parsed
        return LoadedRecord(
            parsed, source, image_bytes=self._read(shard, image_offset, image_size), finehard=is_finehard_item(item)
        )


def _tar_samples(path: Path):
    """`(key, {extension: (data offset, size)})` for each sample of a tar file, in file order.

    Like webdataset's `group_by_keys`, a sample is a run of consecutive members with the same key.
    """
    try:
        archive = tarfile.open(path, mode="r:")  # plain tar only: compressed tars cannot be seeked
    except (tarfile.TarError, OSError) as error:
        raise UserError(f"{path} is not a readable uncompressed .tar shard: {error}") from error
    current_key, members = None, {}
    with archive:
        try:
            for info in archive:
                if not info.isfile():
                    continue
                key, extension = base_plus_ext(info.name)
                if key is None:
                    continue
                if key != current_key:
                    if current_key is not None:
                        yield current_key, members
                    current_key, members = key, {}
                members[extension.lower()] = (info.offset_data, info.size)
        except tarfile.TarError as error:
            raise UserError(f"{path} is a damaged tar file: {error}") from error
    if current_key is not None:
        yield current_key, members


class ConcatSource:
    """Several sources as one index space (in the order given)."""

    def __init__(self, sources: Sequence, files: Sequence[Path] = ()):
        self.sources = list(sources)
        self.files = list(files)  # every data file read, in order (for the run's identity)
        self._ends = np.cumsum([len(source) for source in self.sources], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def load(self, index: int) -> LoadedRecord | BadRecord:
        if not 0 <= index < len(self):
            raise IndexError(index)
        which = int(np.searchsorted(self._ends, index, side="right"))
        start = int(self._ends[which - 1]) if which else 0
        return self.sources[which].load(index - start)

    @functools.cached_property
    def duplicate_records(self) -> int:
        """Records identical to an earlier one (see the module's docstring for what counts as identical)."""
        if not self.sources:
            return 0
        identities = np.concatenate([source.identities for source in self.sources])
        return int(len(identities) - len(np.unique(identities)))


GLOB_CHARACTERS = "*?["
DATA_SUFFIXES = (".jsonl", ".json", ".tar")


def expand_data_paths(paths: Sequence[str | Path]) -> list[Path]:
    """The data files `paths` name, in order: files as given, webdataset brace patterns
    (`shard-{000000..000009}.tar`) and glob patterns (`jsonfiles/*.json`) expanded and sorted, folders
    replaced by their .jsonl / .json / .tar files (sorted; not recursive). A pattern or folder that
    matches nothing is a `UserError`; a plain path that does not exist is returned as given."""
    expanded: list[Path] = []
    for path in paths:
        for item in expand_urls(str(path)) if "{" in str(path) else [str(path)]:
            if any(character in item for character in GLOB_CHARACTERS) and not Path(item).exists():
                matches = sorted(glob.glob(item))
                if not matches:
                    raise UserError(f"--data {item}: no file matches the pattern")
                expanded.extend(Path(match) for match in matches)
            elif Path(item).is_dir():
                files = sorted(p for p in Path(item).iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
                if not files:
                    raise UserError(f"--data {item} is a folder without .jsonl, .json or .tar files")
                expanded.extend(files)
            else:
                expanded.append(Path(item))
    return expanded


def open_sources(
    paths: Sequence[str | Path], require_captions: bool = True, images: str | Path | None = None
) -> ConcatSource:
    """One indexed source over all `--data` paths; `UserError` for a path that cannot be used.

    images: the root of relative image paths (`--images`); None: the folder of each record file.
    """
    if images is not None:
        images = Path(images)
        if not images.is_dir():
            raise UserError(f"--images {images}: no such folder")
    sources, shards = [], []
    files = expand_data_paths(paths)
    for path in files:
        if not path.exists():
            raise UserError(f"data path not found: {path}")
        suffix = path.suffix.lower()
        if suffix == ".tar":
            shards.append(path)
        elif suffix == ".jsonl":
            sources.append(JsonlSource(path, require_captions, images))
        elif suffix == ".json":
            sources.append(JsonListSource(path, require_captions, images))
        else:
            raise UserError(f"{path}: unsupported data file (expected .jsonl, .json or .tar)")
    if shards:
        sources.append(TarShardSource(shards, require_captions))
    source = ConcatSource(sources, files)
    if len(source) == 0:
        raise UserError(f"no records found in {', '.join(str(p) for p in paths)}")
    return source
