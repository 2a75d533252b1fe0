"""CIFAR from every kind of source, the cache and its integrity checks, the device loader."""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from effnet_lab import data as data_module
from effnet_lab import settings
from effnet_lab.data import DataError, DeviceLoader, load_cifar, random_crop, stratified_indices

CLASSES = [f"class{i}" for i in range(10)]


# --- the real copy -------------------------------------------------------------------


def test_shared_copy_loads_to_balanced_cifar10(cifar10):
    assert cifar10.train_images.shape == (50_000, 3, 32, 32) and cifar10.train_images.dtype == torch.uint8
    assert cifar10.test_images.shape == (10_000, 3, 32, 32)
    assert cifar10.classes == ["airplane", "automobile", "bird", "cat", "deer",
                               "dog", "frog", "horse", "ship", "truck"]
    assert torch.bincount(cifar10.train_labels).tolist() == [5_000] * 10
    assert torch.bincount(cifar10.test_labels).tolist() == [1_000] * 10
    # Real photographs, not blank arrays: every channel spans most of 0..255.
    assert cifar10.train_images[:100].float().std() > 40


def test_second_load_comes_from_the_cache(cifar10, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded although the cache exists")

    monkeypatch.setattr(data_module, "_decode", no_decoding)
    again = load_cifar("cifar10", progress=False, download=False)
    assert again.from_cache and again.cache_path == cifar10.cache_path and again.cache_path.is_file()
    assert torch.equal(again.test_images, cifar10.test_images)
    assert torch.equal(again.train_labels, cifar10.train_labels)


# --- small synthetic sources -----------------------------------------------------------


def make_images(split_counts=(3, 2), size=32, seed=0):
    """{split: {class: [uint8 HxWx3 arrays]}}, random, reproducible."""
    rng = np.random.default_rng(seed)
    return {split: {name: [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]
                    for name in CLASSES}
            for split, count in zip(("train", "test"), split_counts)}


def png_bytes(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")  # lossless: decoded pixels must match exactly
    return buffer.getvalue()


def write_folder(root, images):
    for split, classes in images.items():
        for name, arrays in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i, array in enumerate(arrays):
                (root / split / name / f"{i:04d}.png").write_bytes(png_bytes(array))
    return root


def write_archive(path, images, prefix="mycifar"):
    with tarfile.open(path, "w:gz") as archive:
        for split, classes in images.items():
            for name, arrays in classes.items():
                for i, array in enumerate(arrays):
                    blob = png_bytes(array)
                    info = tarfile.TarInfo(f"{prefix}/{split}/{name}/{i:04d}.png")
                    info.size = len(blob)
                    archive.addfile(info, io.BytesIO(blob))
    return path


def expected_tensors(images, split):
    arrays = [array for name in CLASSES for array in images[split][name]]
    labels = [label for label, name in enumerate(CLASSES) for _ in images[split][name]]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2), torch.tensor(labels)


@pytest.fixture
def no_data_anywhere(monkeypatch):
    """No EFFNET_LAB_DATA, nothing in the well-known places, no download."""
    monkeypatch.delenv(settings.DATA_ENV, raising=False)
    monkeypatch.setattr(data_module, "well_known_sources", lambda name, cache_dir: [])

    def offline(name, cache_dir):
        raise OSError("no internet here")

    monkeypatch.setattr(data_module, "_download_official", offline)


def test_image_folder_and_its_archive_decode_to_the_same_pixels(tmp_path):
    images = make_images()
    folder = write_folder(tmp_path / "folder", images)
    archive = write_archive(tmp_path / "images.tar.gz", images)
    from_folder = load_cifar("cifar10", folder, cache_dir=tmp_path / "cache", progress=False)
    from_archive = load_cifar("cifar10", archive, cache_dir=tmp_path / "cache", progress=False)
    for data in (from_folder, from_archive):
        assert data.classes == CLASSES and not data.from_cache
        for split in ("train", "test"):
            pixels, labels = expected_tensors(images, split)
            assert torch.equal(getattr(data, f"{split}_images"), pixels)
            assert torch.equal(getattr(data, f"{split}_labels"), labels)
    assert from_folder.cache_path != from_archive.cache_path  # one cache per source
    cached = load_cifar("cifar10", archive, cache_dir=tmp_path / "cache", progress=False)
    assert cached.from_cache and torch.equal(cached.train_images, from_archive.train_images)


def test_an_extracted_archive_folder_is_found_one_level_down(tmp_path):
    write_folder(tmp_path / "download" / "cifar10-jpeg", make_images())
    data = load_cifar("cifar10", tmp_path / "download", cache_dir=tmp_path / "cache", progress=False)
    assert len(data.train_labels) == 30 and len(data.test_labels) == 20


def test_official_release_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                         b"labels": list(range(10)) * 2}
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}))
    data = load_cifar("cifar10", tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert data.classes == CLASSES and data.source.startswith("official release")
    assert data.train_images.shape == (100, 3, 32, 32) and data.test_images.shape == (20, 3, 32, 32)
    # Rows are channel-major: the first 1024 bytes are the red plane.
    assert torch.equal(data.test_images[0, 0].flatten(), torch.from_numpy(batches["test_batch"][b"data"][0, :1024]))
    assert data.train_labels.tolist() == list(range(10)) * 10


def test_no_source_falls_back_to_an_existing_cache(tmp_path, no_data_anywhere):
    archive = write_archive(tmp_path / "images.tar.gz", make_images())
    load_cifar("cifar10", archive, cache_dir=tmp_path / "cache", progress=False)
    data = load_cifar("cifar10", cache_dir=tmp_path / "cache", progress=False)
    assert data.from_cache and "images.tar.gz" in data.source


def test_an_archive_in_the_cache_folder_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.DATA_ENV, raising=False)
    monkeypatch.setattr(settings, "project_root", lambda: None)  # hide ../shared/data
    write_archive(tmp_path / "cifar10-mine.tar.gz", make_images())
    data = load_cifar("cifar10", cache_dir=tmp_path, progress=False, download=False)
    assert "cifar10-mine.tar.gz" in data.source and len(data.train_labels) == 30


# --- the cache's integrity checks ----------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte", "garbage"])
def test_a_damaged_cache_is_reported_and_rebuilt(tmp_path, damage):
    archive = write_archive(tmp_path / "images.tar.gz", make_images())
    first = load_cifar("cifar10", archive, cache_dir=tmp_path / "cache", progress=False)
    blob = bytearray(first.cache_path.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip_a_byte":
        # A pixel byte inside the stored image tensor (the file is a zip: the tensor's bytes
        # are stored as they are), so only the checksum can notice.
        pixels = first.train_images[7].numpy().tobytes()
        start = blob.find(pixels)
        assert start > 0
        blob[start + 100] ^= 0xFF
    else:
        blob = bytearray(b"not a cache" * 100)
    first.cache_path.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt = load_cifar("cifar10", archive, cache_dir=tmp_path / "cache", progress=False)
    assert not rebuilt.from_cache and torch.equal(rebuilt.train_images, first.train_images)
    assert load_cifar("cifar10", archive, cache_dir=tmp_path / "cache", progress=False).from_cache


def test_a_corrupt_cache_named_as_the_source_is_a_clear_error(tmp_path):
    path = tmp_path / "cifar10-abc.pt"
    torch.save({"format": 1, "name": "cifar10", "classes": CLASSES,
                "train_images": torch.zeros(5, 3, 32, 32, dtype=torch.uint8)}, path)
    with pytest.raises(DataError, match="corrupt"):
        load_cifar("cifar10", path, cache_dir=tmp_path, progress=False)


def test_a_corrupt_cache_found_without_a_source_is_removed(tmp_path, no_data_anywhere):
    (tmp_path / "cifar10-0123456789.pt").write_bytes(b"half a file")
    with pytest.warns(UserWarning, match="corrupt"), pytest.raises(FileNotFoundError):
        load_cifar("cifar10", cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "cifar10-0123456789.pt").exists()


# --- bad input ------------------------------------------------------------------------------


def test_a_path_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cifar("cifar10", tmp_path / "nowhere.tar.gz", cache_dir=tmp_path)


def test_a_folder_without_class_subfolders(tmp_path):
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "test").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_cifar("cifar10", tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "cat.png").write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))
    with pytest.raises(DataError, match="class subfolders"):
        load_cifar("cifar10", tmp_path / "loose", cache_dir=tmp_path / "cache", progress=False)


def test_mixed_image_sizes(tmp_path):
    images = make_images()
    images["test"]["class3"][1] = np.zeros((28, 30, 3), np.uint8)
    folder = write_folder(tmp_path / "folder", images)
    with pytest.raises(DataError, match=r"mixed image sizes.*class3/0001.png is 30x28"):
        load_cifar("cifar10", folder, cache_dir=tmp_path / "cache", progress=False)


def test_wrong_number_of_classes_and_undecodable_files(tmp_path):
    images = make_images()
    del images["train"]["class9"], images["test"]["class9"]
    with pytest.raises(DataError, match="9 class folders; cifar10 has 10"):
        load_cifar("cifar10", write_folder(tmp_path / "nine", images), cache_dir=tmp_path / "c", progress=False)
    folder = write_folder(tmp_path / "broken", make_images())
    (folder / "train" / "class0" / "0000.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode image .*0000.png"):
        load_cifar("cifar10", folder, cache_dir=tmp_path / "c", progress=False)


@pytest.mark.parametrize("name, error", [("cifar1000", ValueError), ("imagenet", ValueError), (10, TypeError)])
def test_unknown_dataset_name(name, error):
    with pytest.raises(error, match="dataset"):
        load_cifar(name)


def test_no_data_says_the_three_ways_to_provide_it(tmp_path, no_data_anywhere):
    with pytest.raises(FileNotFoundError) as info:
        load_cifar("cifar10", cache_dir=tmp_path, progress=False)
    message = str(info.value)
    assert "no internet here" in message
    assert "1. the official release" in message and "2. an image folder" in message
    assert "3. the environment variable EFFNET_LAB_DATA" in message


# --- subsets ------------------------------------------------------------------------------


def test_stratified_subsets_are_balanced_and_reproducible():
    labels = torch.arange(10).repeat_interleave(50)
    a = stratified_indices(labels, 7, seed=1)
    assert torch.bincount(labels[a]).tolist() == [7] * 10
    assert torch.equal(a, stratified_indices(labels, 7, seed=1))
    assert not torch.equal(a, stratified_indices(labels, 7, seed=2))
    with pytest.raises(ValueError, match="more than the 50 images"):
        stratified_indices(labels, 51)
    with pytest.raises(ValueError, match="per_class"):
        stratified_indices(labels, 0)


def test_data_subset_keeps_images_and_labels_together(tmp_path):
    images = make_images(split_counts=(5, 4))
    data = load_cifar("cifar10", write_archive(tmp_path / "a.tar.gz", images), cache_dir=tmp_path, progress=False)
    small = data.subset(2, seed=3, test_per_class=1)
    assert len(small.train_labels) == 20 and len(small.test_labels) == 10
    assert torch.bincount(small.train_labels).tolist() == [2] * 10
    for image, label in zip(small.train_images, small.train_labels):
        match = (data.train_images == image).flatten(1).all(1).nonzero().flatten()
        assert data.train_labels[match].tolist() == [label.item()]
    assert torch.equal(data.subset(None).train_images, data.train_images)


# --- the device loader ----------------------------------------------------------------------


def loader_data(n=40, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 10


def test_eval_loader_normalises_every_image_once_in_order():
    images, labels = loader_data(23)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    loader = DeviceLoader(images, labels, 10, train=False, mean=mean, std=std, device="cpu")
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(y) for _, y in batches] == [10, 10, 3]
    x = torch.cat([b for b, _ in batches])
    restored = x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    assert torch.allclose(restored * 255, images.float(), atol=1e-3)
    assert torch.equal(torch.cat([y for _, y in batches]), labels)


def test_train_loader_is_reproducible_per_epoch_and_drops_the_partial_batch():
    images, labels = loader_data(45)
    make = lambda seed=0: DeviceLoader(images, labels, 10, seed=seed, device="cpu")  # noqa: E731
    loader = make()
    assert len(loader) == 4
    first, second = list(loader), list(loader)  # epochs 0 and 1
    assert len(first) == 4 and all(len(y) == 10 for _, y in first)
    again = make()
    again.set_epoch(1)  # a restarted run that resumes at epoch 1 sees epoch 1's batches
    for (x1, y1), (x2, y2) in zip(second, list(again)):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(first[0][0], second[0][0])
    assert not torch.equal(make(seed=1).__iter__().__next__()[0], first[0][0])


def test_random_crop_is_a_shift_with_zero_padding_and_an_optional_mirror():
    images, _ = loader_data(3, size=8)
    offsets = torch.tensor([[2, 2], [0, 4], [3, 1]])
    out = random_crop(images, offsets, 2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i, (row, col) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], padded[i, :, row : row + 8, col : col + 8])
    assert torch.equal(out[0], images[0])  # offset == padding: no shift
    assert (out[1, :, :2, :] == 0).all()  # shifted down by 2: two rows of padding on top
    flipped = random_crop(images, offsets, 2, flips=torch.tensor([True, False, True]))
    assert torch.equal(flipped[0], images[0].flip(-1)) and torch.equal(flipped[1], out[1])
    assert torch.equal(flipped[2], out[2].flip(-1))  # crop, then mirror
    assert torch.equal(random_crop(images, torch.zeros(3, 2, dtype=torch.long), 0), images)


def test_augmentation_is_a_crop_of_the_padded_image_sometimes_mirrored():
    images, _ = loader_data(200)
    labels = torch.arange(200)  # one label per image: it says where each output came from
    loader = DeviceLoader(images, labels, 200, device="cpu", mean=(0, 0, 0), std=(1, 1, 1))
    x, y = next(iter(loader))
    assert sorted(y.tolist()) == list(range(200))  # every image once per epoch
    x255 = (x * 255).round().to(torch.uint8)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    mirrored, offsets = 0, set()
    for out, source in zip(x255, y):
        matches = [(row, col, flip) for row in range(9) for col in range(9) for flip in (False, True)
                   if torch.equal(out, _maybe_flip(padded[source, :, row : row + 32, col : col + 32], flip))]
        assert matches, "an output is not a crop of its padded source image"
        row, col, flip = matches[0]
        mirrored += flip
        offsets.add((row, col))
    assert 60 < mirrored < 140  # about half
    assert len(offsets) > 40  # most of the 81 possible shifts occur
    plain = DeviceLoader(images, labels, 200, device="cpu", mean=(0, 0, 0), std=(1, 1, 1), augment=False)
    x, y = next(iter(plain))
    assert torch.equal((x * 255).round().to(torch.uint8), images[y])  # shuffled, not augmented


def _maybe_flip(image, flip):
    return image.flip(-1) if flip else image


def test_loader_resizes_on_the_device_and_gives_channels_last():
    images, labels = loader_data(8)
    up = DeviceLoader(images, labels, 4, device="cpu", resolution=48, channels_last=True)
    x, _ = next(iter(up))
    assert x.shape == (4, 3, 48, 48) and x.is_contiguous(memory_format=torch.channels_last)
    down = DeviceLoader(images, labels, 8, train=False, device="cpu", resolution=8, mean=(0, 0, 0), std=(1, 1, 1))
    x, _ = next(iter(down))
    assert x.shape == (8, 3, 8, 8) and x.is_contiguous()
    # Shrinking noise 4x: plain bilinear sampling averages 2x2 pixels; the antialiased
    # resize averages the whole 4x4 footprint (and more), so far less noise survives.
    sampled = torch.nn.functional.interpolate(images.float() / 255, size=8, mode="bilinear")
    assert x.std() < 0.6 * sampled.std()
    assert torch.allclose(x.mean(), sampled.mean(), atol=0.01)


def test_processes_share_each_global_batch():
    images, labels = loader_data(40)
    whole = list(DeviceLoader(images, labels, 8, seed=5, device="cpu"))
    parts = [list(DeviceLoader(images, labels, 8, seed=5, device="cpu", rank=r, world_size=2)) for r in (0, 1)]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts):
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)
    with pytest.raises(ValueError, match="divide evenly"):
        DeviceLoader(images, labels, 9, device="cpu", world_size=2)


def test_loader_bad_input():
    images, labels = loader_data(8)
    with pytest.raises(TypeError, match="uint8"):
        DeviceLoader(images.float(), labels, 4, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(images, labels, 0, device="cpu")
    with pytest.raises(ValueError, match="larger than the 8 training images"):
        DeviceLoader(images, labels, 16, device="cpu")
