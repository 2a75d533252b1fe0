"""A loader that lives on the device: CIFAR batches made where the model runs (lesson 05).

``DeviceLoader`` keeps the whole uint8 dataset on the GPU (150 MB for CIFAR) and makes every
batch there: random crop with 4-pixel padding, horizontal flip, normalisation, resizing to
the run's resolution. A small network on a GPU eats batches faster than DataLoader worker
processes can decode, copy and collate them; here a batch is an indexing operation and a few
element-wise kernels, and no worker process exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from . import settings
from .checks import check_choice, check_int

if TYPE_CHECKING:
    from .data import CifarData

# CIFAR's per-channel mean and standard deviation (of the training images, pixel values 0..1),
# which every batch is normalised with.
MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
SPLITS = ("train", "test")



def random_crop(images: torch.Tensor, offsets: torch.Tensor, padding: int, flips: torch.Tensor | None = None) -> torch.Tensor:
    """Pad a batch by ``padding`` pixels of zeros and cut each image back to its size at its own
    (row, column) offset in ``0..2*padding``, mirrored left-right where ``flips`` is True: the
    classic CIFAR augmentation, for a whole batch in one gather.

    A mirrored crop is the same window read right to left, so flipping only changes the
    column indices: crop and flip cost one pass over the pixels together."""
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    columns = torch.arange(width, device=images.device)
    if flips is not None:
        columns = torch.where(flips[:, None], width - 1 - columns, columns)  # (batch, width)
    rows = offsets[:, :1] + torch.arange(height, device=images.device)  # (batch, height)
    columns = offsets[:, 1:] + columns  # (batch, width)
    # Index of each output pixel in the flattened padded image, the same for every channel.
    index = (rows[:, :, None] * (width + 2 * padding) + columns[:, None, :]).flatten(1)
    out = padded.flatten(2).gather(2, index[:, None, :].expand(batch, channels, height * width))
    return out.view(batch, channels, height, width)


class DeviceLoader:
    """Batches made on the device from uint8 images held there.

    Each pass (epoch) draws one permutation and one set of augmentation parameters for the
    whole dataset from a generator seeded by ``(seed, epoch)``: the batches depend on nothing
    else, so a run restarted at epoch 7 sees what it would have seen, and under
    DistributedDataParallel every process draws the same global batch and keeps its share
    (``rank::world_size``), the same images a single process would have used.

    ``train=True``: shuffled, augmented (crop with ``padding``, flip; ``augment=False``
    turns that off), last partial batch dropped. ``train=False``: in order, as is, every
    image once.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        train: bool = True,
        augment: bool | None = None,
        resolution: int | None = None,
        mean: tuple[float, float, float] = MEAN["cifar10"],
        std: tuple[float, float, float] = STD["cifar10"],
        device: torch.device | str | None = None,
        padding: int = 4,
        channels_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError("images must be a uint8 tensor (N, 3, H, W)")
        if not isinstance(labels, torch.Tensor) or labels.shape != (len(images),):
            raise ValueError(f"labels must be a tensor with one label per image ({len(images)})")
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.world_size = check_int("world_size", world_size, minimum=1)
        self.rank = check_int("rank", rank, minimum=0)
        if self.batch_size % self.world_size:
            raise ValueError(f"batch_size {batch_size} must divide evenly among {world_size} processes")
        if train and len(images) < self.batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the {len(images)} training images")
        self.train = train
        self.augment = train if augment is None else bool(augment)
        self.resolution = check_int("resolution", resolution, minimum=1) if resolution is not None else images.shape[-1]
        self.padding = check_int("padding", padding, minimum=0)
        self.seed = check_int("seed", seed, minimum=0)
        self.device = torch.device(device) if device is not None else settings.default_device()
        self.channels_last = channels_last
        self.images = images.to(self.device)  # the whole dataset, once
        self.labels = labels.to(self.device)
        # (x / 255 - mean) / std as one multiply-add on the 0..255 scale.
        std_t = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, device=self.device).view(1, 3, 1, 1) / std_t
        self.epoch = 0

    @classmethod
    def from_data(cls, data: CifarData, split: str, batch_size: int, **kwargs) -> DeviceLoader:
        """A loader over ``data``'s train or test split, normalised with the dataset's statistics."""
        check_choice("split", split, SPLITS)
        kwargs.setdefault("train", split == "train")
        return cls(getattr(data, f"{split}_images"), getattr(data, f"{split}_labels"), batch_size,
                   mean=data.mean, std=data.std, **kwargs)

    def __len__(self) -> int:
        """Batches per pass."""
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the pass to draw (as DistributedSampler.set_epoch does); passes count up by themselves."""
        self.epoch = check_int("epoch", epoch, minimum=0)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def __iter__(self):
        n, epoch = len(self.labels), self.epoch
        self.epoch += 1
        if self.train:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(self.seed * 1_000_003 + epoch)  # one stream per (seed, epoch)
            order = torch.randperm(n, generator=generator, device=self.device)
            offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator, device=self.device)
            flips = torch.rand(n, generator=generator, device=self.device) < 0.5
        else:
            order = torch.arange(n, device=self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size][self.rank :: self.world_size]
            images = self.images[index]
            if self.train and self.augment:
                images = random_crop(images, offsets[index], self.padding, flips[index])
            yield self._finish(images), self.labels[index]

    def _finish(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> normalised float, at the run's resolution, in the requested memory format."""
        x = torch.addcmul(self.shift, images.float(), self.scale)
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            # antialias when shrinking, so a 16-px image is an average, not a sample, of the 32-px one
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False, antialias=self.resolution < x.shape[-1])
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=memory_format)
