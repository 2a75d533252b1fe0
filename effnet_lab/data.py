"""CIFAR as uint8 tensors, decoded once and cached, and a loader that lives on the device (lesson 05).

Two ideas:

1. ``load_cifar("cifar10")`` finds the data, decodes it *once* into a uint8 tensor file in
   the cache folder (``data/`` in a checkout) and, every later time, reads that file back
   in a fraction of a second. Where the images come from, in this order:

   - ``source=`` (a folder, a ``.tar.gz``, or a cache file), else ``EFFNET_LAB_DATA``;
   - a cache already built from an earlier source;
   - torchvision's official download already on disk (``<cache>/torchvision/``);
   - an image-folder archive in a well-known place (``<cache>/cifar10*.tar.gz``, or the
     project's ``../shared/data/cifar10-jpeg.tar.gz``);
   - torchvision's download, when online.

   An image folder is ``{train,test}/<class>/*.png|jpg`` (classes sorted by name give the
   labels); a ``.tar.gz`` of one is read straight from the archive, nothing is extracted.

2. ``DeviceLoader`` (``effnet_lab.loader``) keeps the whole uint8 dataset on the device and
   makes every batch there.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import settings
from .checks import check_choice, check_int
from .files import save_torch
# The loader that makes batches on the device, importable from here beside the data it serves.
from .loader import MEAN, SPLITS, STD, DeviceLoader, random_crop  # noqa: F401

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# torchvision's folder names for the official (pickled) release.
OFFICIAL_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CACHE_FORMAT = 1


class DataError(ValueError):
    """The data is not what it should be: a malformed folder or archive, a corrupt cache."""


@dataclass
class CifarData:
    """A CIFAR dataset as uint8 tensors: images (N, 3, H, W), labels (N,) int64."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    source: str  # where the images came from, for the records
    cache_path: Path | None = None
    from_cache: bool = False  # True when read back from the cache: nothing was decoded

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def mean(self) -> tuple[float, float, float]:
        return MEAN[self.name]

    @property
    def std(self) -> tuple[float, float, float]:
        return STD[self.name]

    def subset(self, per_class: int | None, seed: int = 0, *, test_per_class: int | None = None) -> CifarData:
        """The same classes with ``per_class`` training images each (and optionally
        ``test_per_class`` test images each), drawn at random but reproducibly from ``seed``.
        None keeps a split whole."""
        data = self
        if per_class is not None:
            keep = stratified_indices(self.train_labels, per_class, seed, self.classes)
            data = replace(data, train_images=self.train_images[keep], train_labels=self.train_labels[keep])
        if test_per_class is not None:
            keep = stratified_indices(self.test_labels, test_per_class, seed, self.classes)
            data = replace(data, test_images=self.test_images[keep], test_labels=self.test_labels[keep])
        return data

    def __repr__(self) -> str:
        size = "x".join(str(s) for s in self.train_images.shape[-2:])
        return (
            f"CifarData({self.name}: {len(self.train_labels)} train / {len(self.test_labels)} test images, "
            f"{size} px, {self.num_classes} classes, from {self.source})"
        )


def stratified_indices(labels: torch.Tensor, per_class: int, seed: int = 0, classes: list[str] | None = None) -> torch.Tensor:
    """Indices of ``per_class`` random samples of every class (sorted, reproducible from ``seed``)."""
    per_class = check_int("per_class", per_class, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in range(len(classes) if classes else int(labels.max()) + 1):
        members = torch.nonzero(labels == label).flatten()
        if len(members) < per_class:
            name = classes[label] if classes else label
            raise ValueError(f"per_class={per_class} is more than the {len(members)} images of class {name!r}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


# --- finding and decoding the data ---------------------------------------------------


@dataclass(frozen=True)
class _Source:
    kind: str  # "archive" (.tar/.tar.gz of an image folder), "folder", "official" (torchvision), "cache"
    path: Path

    def describe(self) -> str:
        return {"archive": "image-folder archive", "folder": "image folder",
                "official": "official release (torchvision)", "cache": "cache file"}[self.kind] + f" {self.path}"

    def key(self) -> str:
        """A short hash naming this source's cache file: changes when the source changes."""
        stat = self.path.stat()
        parts = [self.kind, str(self.path.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
        if self.kind == "folder":  # adding or removing images changes the class folders' times
            parts += [f"{p}:{p.stat().st_mtime_ns}" for split in SPLITS for p in sorted((self.path / split).iterdir())]
        return hashlib.sha1("|".join(parts).encode()).hexdigest()[:10]


def _identify(path: Path, name: str) -> _Source:
    """What kind of source ``path`` is; a clear error when it is none."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data source {path} does not exist")
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz", ".tar")):
            return _Source("archive", path)
        if path.suffix == ".pt":
            return _Source("cache", path)
        raise DataError(f"data source {path} is not a folder, a .tar.gz archive or a .pt cache file")
    official = OFFICIAL_FOLDERS[name]
    if path.name == official:
        return _Source("official", path)
    if (path / official).is_dir():
        return _Source("official", path / official)
    if all((path / split).is_dir() for split in SPLITS):
        return _Source("folder", path)
    children = [child for child in path.iterdir() if child.is_dir()]
    if len(children) == 1 and all((children[0] / split).is_dir() for split in SPLITS):
        return _Source("folder", children[0])  # an extracted archive: <path>/cifar10-jpeg/{train,test}
    raise DataError(
        f"{path} holds no {name} data: expected train/ and test/ folders of class subfolders "
        f"({path}/train/<class>/*.png|jpg) or torchvision's {official}/ folder"
    )


def _progress_bar(progress: bool, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(disable=not progress, leave=False, **kwargs)


class _CountingReader(io.RawIOBase):
    """A file wrapper that advances a progress bar by the bytes read (for a streamed archive)."""

    def __init__(self, file, bar) -> None:
        self.file, self.bar = file, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.file.readinto(buffer)
        self.bar.update(count)
        return count


def _decode(data: bytes, where: str) -> torch.Tensor:
    """One PNG or JPEG file's bytes -> a uint8 tensor (3, H, W), RGB."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    except Exception as error:  # PIL raises several kinds for a damaged file
        raise DataError(f"cannot decode image {where}: {error}") from None


# Inside an image folder or archive: .../<train|test>/<class>/<file>.png|jpg
_MEMBER = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+\.(?:png|jpe?g))$", re.IGNORECASE)


def _read_archive(path: Path, progress: bool) -> dict:
    """{split: {class: [(file name, (3, H, W) image)]}} decoded straight from a (gzipped) tar."""
    found = {split: {} for split in SPLITS}
    with open(path, "rb") as raw, _progress_bar(
        progress, total=path.stat().st_size, unit="B", unit_scale=True, desc=f"decoding {path.name} (once)"
    ) as bar:
        # "r|*": read the archive as a stream, member after member: no seeking, no extraction.
        with tarfile.open(fileobj=io.BufferedReader(_CountingReader(raw, bar)), mode="r|*") as archive:
            for member in archive:
                match = _MEMBER.search(member.name)
                if not member.isfile() or not match or "__MACOSX" in member.name:
                    continue
                split, label, file_name = match.groups()
                image = _decode(archive.extractfile(member).read(), f"{member.name} in {path}")
                found[split.lower()].setdefault(label, []).append((file_name, image))
    return found


def _read_folder(path: Path, progress: bool) -> dict:
    found = {split: {} for split in SPLITS}
    files = []
    for split in SPLITS:
        for class_dir in sorted(p for p in (path / split).iterdir() if p.is_dir()):
            found[split][class_dir.name] = []
            files += [(split, class_dir.name, f) for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
    for split, label, file in _progress_bar(progress, iterable=files, desc=f"decoding {path.name} (once)", unit="img"):
        found[split][label].append((file.name, _decode(file.read_bytes(), str(file))))
    return found


def _stack(found: dict, name: str, where: Path) -> dict:
    """Images and labels as tensors, with the checks an image folder needs."""
    classes = sorted(found["train"])
    for split in SPLITS:
        if not found[split]:
            raise DataError(f"{where} has no class subfolders in {split}/ (expected {split}/<class>/*.png|jpg)")
    if sorted(found["test"]) != classes:
        raise DataError(f"{where}: the classes in train/ and test/ differ")
    if len(classes) != NUM_CLASSES[name]:
        raise DataError(f"{where} has {len(classes)} class folders; {name} has {NUM_CLASSES[name]}")
    tensors, first = {}, None
    for split in SPLITS:
        images, labels = [], []
        for label, class_name in enumerate(classes):
            if not found[split][class_name]:
                raise DataError(f"{where}: {split}/{class_name}/ holds no .png or .jpg images")
            for file_name, image in sorted(found[split][class_name], key=lambda item: item[0]):
                if first is None:
                    first = (f"{split}/{class_name}/{file_name}", image.shape)
                elif image.shape != first[1]:
                    raise DataError(
                        f"{where}: mixed image sizes: {first[0]} is {_size(first[1])} but "
                        f"{split}/{class_name}/{file_name} is {_size(image.shape)}"
                    )
                images.append(image)
                labels.append(label)
        tensors[f"{split}_images"] = torch.stack(images)
        tensors[f"{split}_labels"] = torch.tensor(labels, dtype=torch.int64)
    return dict(tensors, classes=classes)


def _size(shape: torch.Size) -> str:
    return f"{shape[2]}x{shape[1]}"  # width x height of a (3, H, W) image


def _read_official(folder: Path, name: str) -> dict:
    """The official release as torchvision downloads it: pickled batches of 3072-byte rows."""
    if name == "cifar10":
        files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta_file, names_key, labels_key = "batches.meta", b"label_names", b"labels"
    else:
        files = {"train": ["train"], "test": ["test"]}
        meta_file, names_key, labels_key = "meta", b"fine_label_names", b"fine_labels"
    tensors = {}
    for split in SPLITS:
        images, labels = [], []
        for file_name in files[split]:
            file = folder / file_name
            if not file.is_file():
                raise DataError(f"{folder} is missing {file_name}: an incomplete download? Delete the folder and retry")
            with open(file, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(batch[labels_key])
        tensors[f"{split}_images"] = torch.from_numpy(np.concatenate(images))
        tensors[f"{split}_labels"] = torch.tensor(labels, dtype=torch.int64)
    with open(folder / meta_file, "rb") as f:
        classes = [c.decode() for c in pickle.load(f, encoding="bytes")[names_key]]
    return dict(tensors, classes=classes)


def _download_official(name: str, cache_dir: Path) -> _Source:
    """torchvision's download of the official release (raises OSError when offline)."""
    import torchvision

    dataset = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    root = cache_dir / "torchvision"
    dataset(root=str(root), train=True, download=True)  # one archive holds both splits
    return _Source("official", root / OFFICIAL_FOLDERS[name])


# --- the cache ---------------------------------------------------------------------


def _checksum(images: torch.Tensor) -> int:
    """CRC-32 of the image bytes: 0.05 s for CIFAR, and it catches any damaged or reordered byte."""
    return zlib.crc32(images.contiguous().numpy().data)


def _payload(name: str, tensors: dict, source: str) -> dict:
    payload = dict(format=CACHE_FORMAT, name=name, source=source, **tensors)
    for split in SPLITS:
        payload[f"{split}_per_class"] = torch.bincount(tensors[f"{split}_labels"], minlength=len(tensors["classes"])).tolist()
        payload[f"{split}_checksum"] = _checksum(tensors[f"{split}_images"])
    return payload


def _validate(payload: object, name: str) -> None:
    """Raise DataError unless ``payload`` is a complete, undamaged cache of ``name``."""
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        raise DataError("not an effnet_lab cache file (or an older format)")
    if payload.get("name") != name:
        raise DataError(f"it holds {payload.get('name')!r}, not {name!r}")
    classes = payload.get("classes")
    if not isinstance(classes, list) or len(classes) != NUM_CLASSES[name]:
        raise DataError(f"it should list {NUM_CLASSES[name]} classes")
    size = None
    for split in SPLITS:
        images, labels = payload.get(f"{split}_images"), payload.get(f"{split}_labels")
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise DataError(f"{split} images should be a uint8 tensor (N, 3, H, W)")
        if size is not None and images.shape[2:] != size:
            raise DataError("train and test images differ in size")
        size = images.shape[2:]
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != (len(images),):
            raise DataError(f"{split} labels should be an int64 tensor with one label per image")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(f"{split} labels fall outside 0..{len(classes) - 1}")
        # The counts per class (equal for CIFAR: 5,000 / 1,000 or 500 / 100) must be the ones decoded.
        if torch.bincount(labels, minlength=len(classes)).tolist() != payload.get(f"{split}_per_class"):
            raise DataError(f"the {split} images per class are not those decoded")
        if _checksum(images) != payload.get(f"{split}_checksum"):
            raise DataError(f"the {split} images are damaged (checksum mismatch)")


def _read_cache(path: Path, name: str) -> CifarData:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: torch raises many kinds
        raise DataError(f"cache file {path} is corrupt ({type(error).__name__}: {error})") from None
    try:
        _validate(payload, name)
    except DataError as error:
        raise DataError(f"cache file {path} is corrupt: {error}") from None
    return CifarData(
        name=name,
        train_images=payload["train_images"], train_labels=payload["train_labels"],
        test_images=payload["test_images"], test_labels=payload["test_labels"],
        classes=payload["classes"], source=payload["source"], cache_path=path, from_cache=True,
    )


def _load_source(source: _Source, name: str, cache_dir: Path, progress: bool) -> CifarData:
    """Read ``source`` through its cache: decode and cache it only when no valid cache exists."""
    if source.kind == "cache":  # a cache file named explicitly: no source to rebuild it from
        return _read_cache(source.path, name)
    cache_path = cache_dir / f"{name}-{source.key()}.pt"
    if cache_path.exists():
        try:
            return _read_cache(cache_path, name)
        except DataError as error:
            warnings.warn(f"{error}; rebuilding it from {source.path}", stacklevel=3)
    if source.kind == "official":
        tensors = _read_official(source.path, name)
    else:
        reader = _read_archive if source.kind == "archive" else _read_folder
        tensors = _stack(reader(source.path, progress), name, source.path)
    payload = _payload(name, tensors, source.describe())
    _validate(payload, name)
    try:
        save_torch(cache_path, payload)  # atomic: never half a cache file
    except OSError as error:  # a read-only folder: still usable, only slower next time
        warnings.warn(f"could not write the cache {cache_path} ({error}); set {settings.CACHE_ENV}", stacklevel=3)
        cache_path = None
    return CifarData(
        name=name, classes=tensors["classes"], source=source.describe(), cache_path=cache_path, from_cache=False,
        **{k: v for k, v in tensors.items() if k != "classes"},
    )


def _existing_caches(name: str, cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob(f"{name}-*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)


def well_known_sources(name: str, cache_dir: Path) -> list[Path]:
    """Places searched when no source is named: torchvision's folder, then image-folder archives."""
    places = [cache_dir / "torchvision" / OFFICIAL_FOLDERS[name]]
    places += sorted(cache_dir.glob(f"{name}[-_.]*.tar.gz")) + sorted(cache_dir.glob(f"{name}[-_.]*.tgz"))
    root = settings.project_root()
    if root is not None:
        places.append(root.parent / "shared" / "data" / f"{name}-jpeg.tar.gz")
    return [place for place in places if place.exists()]


def _no_data_message(name: str, cache_dir: Path, download_error: str | None) -> str:
    env = settings.DATA_ENV
    return (
        f"no {name} data found{f' and the download failed ({download_error})' if download_error else ''}. "
        f"Provide it in one of three ways:\n"
        f"  1. the official release: be online once (torchvision downloads it into {cache_dir / 'torchvision'}), "
        f"or put torchvision's {OFFICIAL_FOLDERS[name]}/ folder there;\n"
        f"  2. an image folder {{train,test}}/<class>/*.png|jpg, or a .tar.gz of one: pass it as source= "
        f"(or --data), or put the archive in {cache_dir} named {name}-*.tar.gz;\n"
        f"  3. the environment variable {env}=/path/to/folder-or-archive."
    )


def load_cifar(
    name: str = "cifar10",
    source: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    download: bool = True,
) -> CifarData:
    """CIFAR-10 or CIFAR-100 as uint8 tensors, from the cache when possible (see the module doc)."""
    name = check_choice("dataset", name, NUM_CLASSES)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else settings.cache_dir()
    if source is None:
        source = settings.data_source()
    if source is not None:
        return _load_source(_identify(Path(source), name), name, cache_dir, progress)

    for path in _existing_caches(name, cache_dir):
        try:
            return _read_cache(path, name)
        except DataError as error:  # reported, moved out of the way, rebuilt below
            warnings.warn(f"{error}; removing it", stacklevel=2)
            path.unlink(missing_ok=True)
    for path in well_known_sources(name, cache_dir):
        return _load_source(_identify(path, name), name, cache_dir, progress)
    download_error = None
    if download:
        try:
            return _load_source(_download_official(name, cache_dir), name, cache_dir, progress)
        except (OSError, RuntimeError) as error:  # offline: URLError is an OSError
            download_error = f"{type(error).__name__}: {error}"
    raise FileNotFoundError(_no_data_message(name, cache_dir, download_error))

