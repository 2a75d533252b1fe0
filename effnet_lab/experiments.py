"""Scaling experiments on CIFAR (lesson 05): which way should a network grow?

Three parts, in the order the data flows:

1. **The experiments, as data.** ``plan("compare")`` lists every training run of the main
   comparison: the baseline (phi = 0), width-only, depth-only and resolution-only scaling,
   and compound scaling with the paper's (alpha, beta, gamma) = (1.2, 1.1, 1.15), each at
   phi = 1, 2, 3, for two seeds. ``plan("grid")`` is the paper's step 2 (a small grid of
   (alpha, beta, gamma) at phi = 1), ``plan("width-grid")`` the Figure-4 sweep (width at
   fixed depth and resolution) and ``plan("saturation")`` the longer single-axis sweep of
   Figure 3.

2. **Equal cost, counted.** Scaling by phi is meant to multiply the multiply-adds (MACs) by
   2^phi. But channels come in multiples of 8, layers and pixels in whole numbers, and at
   CIFAR sizes one pixel more can turn the last 3x3 feature map into a 4x4 one (+78%).
   So every scaled model is *cost-matched*: the family keeps its shape (only its own axes
   grow) and its finest knob is set so that the counted MACs land as close to 2^phi as
   whole numbers allow. Width-only, depth-only and resolution-only models tune their one
   axis; compound models take depth alpha^phi and resolution gamma^phi from the rule and
   let the width absorb the rounding, which makes the effective beta differ slightly from
   1.1 (the tables show it). The grid search fixes alpha and gamma and lets the MAC budget
   decide beta: the constraint alpha * beta^2 * gamma^2 = 2, applied to counted MACs.

3. **A sweep runner that survives anything.** ``run_sweep(runs, out)`` trains each run with
   ``effnet_lab.train`` and appends one row per finished run to a JSON-lines results table.
   A run's id is a hash of everything that decides its result (the model's configuration,
   the input size, the training settings, the seed, the dataset, ``CODE_VERSION``), so:

   - rerunning skips finished runs, and a run interrupted mid-training resumes from its
     last epoch (the training engine's own checkpoint in ``<runs_dir>/<run_id>/``);
   - every write replaces the table file atomically: an interruption at any moment leaves
     the old table or the new one, never half of one;
   - ``shard=Shard(i, n)`` takes a deterministic, cost-balanced share of the runs; each
     shard writes its own file (``results-shard-i-of-n.jsonl``) and ``read_results`` merges
     the files of a folder into one table, whatever the order or the number of shards.

The command line wraps it: ``python -m effnet_lab sweep compare --quick`` (the whole
comparison on a CPU in minutes; its numbers illustrate, they are not results) and
``python -m effnet_lab sweep compare grid --shard 2/4 --out results/scaling-gpu``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import settings
from .checks import check_int, check_number
from .files import write_text
from .model import EfficientNetConfig
from .scaling import CompoundScaling

# Bump when a change to the model, data or training code changes what a run produces:
# every run id changes with it, so old results are never mistaken for new ones.
# 2: a run's seed decides its initial weights too (before, they came from whatever its
# process had drawn before it, so a run's result depended on its place in its shard).
CODE_VERSION = 2
# The layout of a results-table row; a table written with another version is refused.
TABLE_VERSION = 1
NATIVE_RESOLUTION = 32  # CIFAR's images: beyond this the loader only interpolates
MAC_TOLERANCE = 0.10  # a scaled model's counted MACs must be within 10% of its target
PAPER = CompoundScaling(1.2, 1.1, 1.15)

# TrainConfig fields that may change without changing a run's result (the training engine
# lets a run resume across them too): they stay out of the run id.
NOT_IN_RUN_ID = ("data", "device", "eval_batch_size", "compile")


class ResultsError(ValueError):
    """A results table that cannot be used: damaged, foreign, or from another version."""


# --- the baseline and the training settings --------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """The phi = 0 network: EfficientNet-B0's blocks on the cifar stem, scaled to a size and
    fed images of ``resolution`` pixels (CIFAR's 32x32 images, downsampled on the device)."""

    width: float = 0.5
    depth: float = 1.0
    resolution: int = 21
    num_classes: int = 10
    # Short schedules underfit rather than overfit: the regularisers are off for every family.
    dropout: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_number("width", self.width, exclusive_minimum=0.0))
        object.__setattr__(self, "depth", check_number("depth", self.depth, exclusive_minimum=0.0))
        object.__setattr__(self, "resolution", check_int("resolution", self.resolution, minimum=8))

    def config(self, width: float, depth: float, resolution: int) -> EfficientNetConfig:
        """The configuration of the network with *absolute* width and depth multipliers."""
        return EfficientNetConfig(width=width, depth=depth, num_classes=self.num_classes, dropout=self.dropout,
                                  stem="cifar", drop_path_rate=self.drop_path_rate, resolution=resolution)

    @property
    def macs(self) -> int:
        return fast_macs(self.config(self.width, self.depth, self.resolution), self.resolution)


@dataclass(frozen=True)
class Scale:
    """Everything a sweep's size depends on: the baseline, the training settings, the seeds."""

    name: str
    baseline: Baseline
    train: dict  # TrainConfig fields (resolution and seed are set per run)
    seeds: tuple[int, ...]


# Full scale (a GPU). Sized by the cost model in results/cost_model/README.md: the comparison plus
# the grid search fit in 20 minutes of one H100 under a conservative throughput assumption.
FULL = Scale(
    "full",
    Baseline(width=0.5, depth=1.0, resolution=21),
    dict(epochs=6, batch_size=512, lr=0.2, warmup_epochs=1.0, label_smoothing=0.1),
    seeds=(0, 1),
)
# Quick mode (a CPU, minutes): a tiny baseline, a few hundred images, one epoch. The
# accuracies it gives are close to chance and mean nothing; the mechanics are all real.
QUICK = Scale(
    "quick",
    Baseline(width=0.25, depth=0.5, resolution=12),
    dict(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0.2, label_smoothing=0.0,
         subset_per_class=16, test_per_class=10, quick=True),
    seeds=(0, 1),
)


def scale(quick: bool | None = None) -> Scale:
    """QUICK when quick mode is on (``EFFNET_LAB_QUICK=1`` or ``quick=True``), else FULL."""
    return QUICK if settings.quick_mode(quick) else FULL


# --- counting MACs from a configuration ------------------------------------------------------


def _out_size(size: int, stride: int) -> int:
    # Every convolution here has an odd kernel and padding (k - 1) // 2: ceil(size / stride).
    return (size - 1) // stride + 1


@lru_cache(maxsize=65536)
def fast_macs(config: EfficientNetConfig, resolution: int) -> int:
    """Multiply-adds of ``build(config)`` at ``resolution``, worked out from the configuration.

    The same number as ``profile.count_macs`` (the tests check it) without building a model:
    microseconds instead of half a second, which the cost matching below needs, since it
    tries hundreds of candidate multipliers per model. Counted as the paper counts: the
    convolutions and the classifier; batch norm, activations and the SE gate's product left out.
    """
    strides = config.stage_strides()
    size = _out_size(resolution, strides[0])
    channels = config.stem_out
    macs = 3 * 3 * 3 * channels * size**2  # stem: 3x3 convolution from RGB
    for stage in config.scaled_stages():
        for repeat in range(stage.repeats):
            hidden = int(round(channels * stage.expand_ratio))
            if hidden != channels:
                macs += channels * hidden * size**2  # 1x1 expansion
            size = _out_size(size, stage.stride if repeat == 0 else 1)
            macs += stage.kernel_size**2 * hidden * size**2  # depthwise kxk
            if stage.se_ratio > 0:
                macs += 2 * hidden * max(1, int(channels * stage.se_ratio))  # SE: two 1x1 convs on 1x1
            macs += hidden * stage.channels * size**2  # 1x1 projection
            channels = stage.channels
    macs += channels * config.head_out * size**2  # head 1x1
    return macs + config.head_out * config.num_classes  # classifier


# --- what one run trains ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """One network and input size of an experiment, with what it was meant to cost."""

    family: str
    phi: float
    width: float  # absolute multipliers (the baseline's included), as efficientnet() takes them
    depth: float
    resolution: int
    target: float  # intended MACs / baseline MACs (2^phi for the scaled families)
    label: str
    alpha: float | None = None  # the scaling constants, for compound and grid models
    beta: float | None = None
    gamma: float | None = None


def _closest(candidates: Iterable, macs_of: Callable, target_macs: float, nominal: float):
    """The candidate whose MACs are nearest ``target_macs`` (as a ratio); ties: nearest ``nominal``."""
    return min(candidates, key=lambda value: (round(abs(math.log(macs_of(value) / target_macs)), 9),
                                              abs(value - nominal)))


def _grid(low: float, high: float, step: float) -> list[float]:
    return [round(low + i * step, 4) for i in range(int((high - low) / step) + 1)]


@lru_cache(maxsize=1024)
def _match_width(base: Baseline, depth: float, resolution: int, target: float, nominal: float) -> float:
    """The width factor (relative to the baseline) that brings the counted MACs nearest ``target``."""
    goal = target * base.macs
    return _closest(_grid(max(0.2, nominal / 1.6), nominal * 1.6, 0.002),
                    lambda w: fast_macs(base.config(base.width * w, depth, resolution), resolution), goal, nominal)


@lru_cache(maxsize=1024)
def _match_depth(base: Baseline, target: float, nominal: float) -> float:
    goal = target * base.macs
    return _closest(_grid(max(0.1, nominal / 1.6), nominal * 1.6, 0.01),
                    lambda d: fast_macs(base.config(base.width, base.depth * d, base.resolution), base.resolution),
                    goal, nominal)


@lru_cache(maxsize=1024)
def _match_resolution(base: Baseline, target: float, nominal: float) -> int:
    goal = target * base.macs
    candidates = range(max(8, int(nominal / 1.6)), int(nominal * 1.6) + 2)
    return _closest(candidates, lambda r: fast_macs(base.config(base.width, base.depth, r), r), goal, nominal)


def baseline_spec(base: Baseline) -> ModelSpec:
    return ModelSpec("baseline", 0.0, base.width, base.depth, base.resolution, 1.0, "baseline")


def single_axis_spec(base: Baseline, axis: str, phi: float) -> ModelSpec:
    """Scale one axis to 2^phi times the baseline's MACs: width sqrt(2)^phi, depth 2^phi or
    resolution sqrt(2)^phi before cost matching (MACs grow with width^2, depth, resolution^2)."""
    target = 2.0**phi
    width, depth, resolution = base.width, base.depth, base.resolution
    if axis == "width":
        width = round(base.width * _match_width(base, base.depth, base.resolution, target, math.sqrt(target)), 4)
    elif axis == "depth":
        depth = round(base.depth * _match_depth(base, target, target), 4)
    elif axis == "resolution":
        resolution = _match_resolution(base, target, base.resolution * math.sqrt(target))
    else:
        raise ValueError(f"unknown axis {axis!r}; choose one of ['width', 'depth', 'resolution']")
    return ModelSpec(axis, phi, width, depth, resolution, target, f"{axis} phi={phi:g}")


def compound_spec(base: Baseline, phi: float, scaling: CompoundScaling = PAPER, family: str = "compound") -> ModelSpec:
    """Depth alpha^phi and resolution gamma^phi from the rule; the width that makes the counted
    MACs 2^phi (about beta^phi: the width absorbs the rounding of layers and pixels)."""
    depth_factor, width_factor, resolution_factor = scaling.multipliers(phi)
    target = 2.0**phi
    depth = round(base.depth * depth_factor, 4)
    resolution = max(8, round(base.resolution * resolution_factor))
    width = round(base.width * _match_width(base, depth, resolution, target, width_factor), 4)
    label = (f"compound phi={phi:g}" if family == "compound"
             else f"a={scaling.alpha:g} g={scaling.gamma:g}")
    return ModelSpec(family, phi, width, depth, resolution, target, label,
                     alpha=scaling.alpha, beta=scaling.beta, gamma=scaling.gamma)


def check_phis(phis: object, name: str = "phis") -> tuple[float, ...]:
    """A non-empty list of positive, finite numbers (phi = 0 is the baseline, always included)."""
    if isinstance(phis, (str, bytes)) or not isinstance(phis, Iterable):
        raise TypeError(f"{name} must be a list of numbers such as [1, 2, 3], got {phis!r}")
    values = tuple(check_number(f"each of {name}", phi, exclusive_minimum=0.0) for phi in phis)
    if not values:
        raise ValueError(f"{name} must list at least one number (phi = 0, the baseline, is always included)")
    return tuple(dict.fromkeys(values))  # duplicates dropped, order kept


def compare_specs(base: Baseline, phis: Sequence[float]) -> list[ModelSpec]:
    """The main comparison: the baseline, then at each phi the three single axes and compound."""
    specs = [baseline_spec(base)]
    for phi in phis:
        specs += [single_axis_spec(base, axis, phi) for axis in ("width", "depth", "resolution")]
        specs.append(compound_spec(base, phi))
    return specs


# The grid of step 2: alpha (depth) and gamma (resolution) from these lists; beta (width)
# from the MAC budget. gamma 1.52 takes the 21-px baseline to CIFAR's full 32 px.
GRID_ALPHAS = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
GRID_GAMMAS = (1.0, 1.15, 1.3, 1.4, 1.52)
BETA_TOLERANCE = 0.03  # how far below 1 rounding may push a candidate's effective beta


def grid_specs(base: Baseline, phis: Sequence[float] = (1.0,)) -> list[ModelSpec]:
    """Step 2 of the paper: (alpha, beta, gamma) with alpha * beta^2 * gamma^2 = 2, all >= 1.

    For each (alpha, gamma) of the grid, depth and resolution follow the rule and the width is
    cost-matched to 2^phi MACs: beta is what the budget leaves. Candidates whose rounded depth
    and resolution already cost the whole budget (they would need beta < 1) are left out.
    """
    specs, built = [baseline_spec(base)], set()
    for phi in phis:
        for alpha in GRID_ALPHAS:
            for gamma in GRID_GAMMAS:
                beta = max(1.0, math.sqrt(2.0 / (alpha * gamma**2)))  # the formula's beta, as a start
                spec = compound_spec(base, phi, CompoundScaling(alpha, round(beta, 4), gamma), family="grid")
                config = base.config(spec.width, spec.depth, spec.resolution)
                network = (tuple(config.scaled_stages()), config.stem_out, config.head_out, spec.resolution)
                # Rounding can make two candidates the same network (alpha 1.8 and 2.0 may give the
                # same layer counts): train it once, under the first name.
                if (spec.width / base.width) ** (1 / phi) >= 1.0 - BETA_TOLERANCE and network not in built:
                    built.add(network)
                    specs.append(spec)
    return specs


# Figure 4: width scaling at fixed (depth, resolution) multipliers.
WIDTH_GRID_DR = ((1.0, 1.0), (1.0, 1.3), (2.0, 1.0), (2.0, 1.3))
WIDTH_GRID_WIDTHS = (1.0, 1.41, 2.0, 2.83)


def width_grid_specs(base: Baseline, phis: Sequence[float] = ()) -> list[ModelSpec]:
    """Figure 4: width x1..x2.83 at each (depth, resolution) pair; not cost-matched (the plot's
    x axis is the counted MACs). ``phis`` is not used."""
    specs = []
    for d, r in WIDTH_GRID_DR:
        resolution = max(8, round(base.resolution * r))
        for w in WIDTH_GRID_WIDTHS:
            config = base.config(base.width * w, base.depth * d, resolution)
            factor = fast_macs(config, resolution) / base.macs
            family = "baseline" if (w, d, r) == (1.0, 1.0, 1.0) else "width-at-dr"
            label = "baseline" if family == "baseline" else f"d={d:g} r={r:g} w={w:g}"
            specs.append(ModelSpec(family, 0.0, round(base.width * w, 4), round(base.depth * d, 4), resolution,
                                   round(factor, 3), label))
    return specs


def saturation_specs(base: Baseline, phis: Sequence[float]) -> list[ModelSpec]:
    """Figure 3: the single axes (and compound, for reference) at many phis."""
    return compare_specs(base, phis)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    specs: Callable[[Baseline, Sequence[float]], list[ModelSpec]]
    phis: tuple[float, ...]  # default phis
    seeds: int | None = None  # None: the scale's seeds; else the first this many of them
    folder: str | None = None  # results folder name (default: the experiment's name)

    @property
    def table(self) -> str:
        return self.folder or self.name


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("compare", "baseline; width, depth, resolution and compound scaling at phi = 1, 2, 3",
                   compare_specs, (1.0, 2.0, 3.0)),
        Experiment("grid", "step 2: (alpha, beta, gamma) with alpha*beta^2*gamma^2 = 2 at phi = 1, ranked",
                   grid_specs, (1.0,), seeds=1),
        Experiment("width-grid", "Figure 4: width scaling at (depth, resolution) = (1,1), (1,1.3), (2,1), (2,1.3)",
                   width_grid_specs, (), seeds=1),
        # The comparison's families at more phis, one seed, in the comparison's own table: the
        # runs the two share (same id) are trained once.
        Experiment("saturation", "Figure 3: the comparison's families at phi = 0.5 ... 4 (one seed)",
                   saturation_specs, (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0), seeds=1, folder="compare"),
    )
}


def _experiment(name: object) -> Experiment:
    if not isinstance(name, str) or name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]


@dataclass(frozen=True)
class Run:
    """One training run of a sweep: an experiment's model, trained with one seed."""

    experiment: str
    spec: ModelSpec
    baseline: Baseline
    train: dict  # TrainConfig fields, resolution and seed included

    @property
    def seed(self) -> int:
        return self.train["seed"]

    @property
    def table(self) -> str:
        return _experiment(self.experiment).table

    def model_config(self) -> EfficientNetConfig:
        return self.baseline.config(self.spec.width, self.spec.depth, self.spec.resolution)

    def train_config(self, **overrides):
        from .train import TrainConfig

        return TrainConfig(**{**self.train, **overrides})

    @property
    def macs(self) -> int:
        return fast_macs(self.model_config(), self.spec.resolution)

    @property
    def run_id(self) -> str:
        """12 hex digits of a hash of everything that decides the run's result."""
        train = {k: v for k, v in self.train_config().to_dict().items() if k not in NOT_IN_RUN_ID}
        identity = {"code_version": CODE_VERSION, "model": dataclasses.asdict(self.model_config()), "train": train}
        return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def describe(self) -> str:
        s = self.spec
        return (f"{s.label} (w {s.width:g}, d {s.depth:g}, r {s.resolution}px, "
                f"{self.macs / self.baseline.macs:.2f}x MACs) seed {self.seed}")


def plan(
    experiment: str | Sequence[str] = "compare",
    *,
    quick: bool | None = None,
    phis: Sequence[float] | None = None,
    seeds: Sequence[int] | None = None,
    epochs: int | None = None,
    **train_overrides,
) -> list[Run]:
    """Every run of one or more experiments, in order (a run listed once per results table).

    ``quick`` picks QUICK or FULL (default: quick mode's switch); ``phis``, ``seeds`` and
    ``epochs`` override the experiment's defaults; other keywords are TrainConfig fields
    (``batch_size=128``, ``subset_per_class=100``...).
    """
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    if not names:
        raise ValueError("name at least one experiment; choose from " + str(sorted(EXPERIMENTS)))
    chosen = scale(quick)
    if seeds is not None:
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
            raise TypeError(f"seeds must be a list of integers such as [0, 1], got {seeds!r}")
        seeds = tuple(check_int("each seed", seed, minimum=0) for seed in seeds)
        if not seeds:
            raise ValueError("seeds must list at least one integer")
    train = dict(chosen.train, **train_overrides)
    if epochs is not None:
        train["epochs"] = check_int("epochs", epochs, minimum=1)
    runs, seen = [], set()
    for name in names:
        spec = _experiment(name)
        spec_phis = check_phis(phis) if phis is not None else spec.phis
        run_seeds = seeds if seeds is not None else chosen.seeds[: spec.seeds or None]
        for model in spec.specs(chosen.baseline, spec_phis):
            for seed in run_seeds:
                run = Run(name, model, chosen.baseline, dict(train, resolution=model.resolution, seed=seed))
                run.train_config()  # bad training settings fail here, before anything runs
                # Listed once per results table: a run two experiments share is trained once
                # (the second finds its record in the run folder) and gets a row in each table.
                if (run.table, run.run_id) not in seen:
                    seen.add((run.table, run.run_id))
                    runs.append(run)
    return runs


def plan_rows(runs: Sequence[Run]) -> list[dict]:
    """One plain dict per run (for a table): its shape, its cost and what the cost was meant to be."""
    rows = []
    for run in runs:
        s, base = run.spec, run.baseline
        rows.append({
            "experiment": run.experiment, "family": s.family, "label": s.label, "phi": s.phi, "seed": run.seed,
            "width": s.width / base.width, "depth": s.depth / base.depth,
            "resolution": s.resolution, "upsampled": s.resolution > NATIVE_RESOLUTION,
            "MACs (M)": run.macs / 1e6, "MACs factor": run.macs / base.macs, "target": s.target,
            "beta (effective)": (s.width / base.width) ** (1 / s.phi) if s.alpha is not None and s.phi else None,
            "run_id": run.run_id,
        })
    return rows


def check_costs(runs: Sequence[Run], tolerance: float = MAC_TOLERANCE) -> list[str]:
    """Runs whose counted MACs miss their target by more than ``tolerance`` (an empty list: all fine)."""
    misses = []
    for run in runs:
        factor = run.macs / run.baseline.macs
        if abs(factor / run.spec.target - 1) > tolerance:
            misses.append(f"{run.spec.label}: {factor:.2f}x MACs, meant {run.spec.target:.2f}x")
    return misses


# --- the cost model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostModel:
    """How long a run takes: arithmetic in proportion to its MACs, plus what every step costs
    whatever the arithmetic (launching each layer's kernels from Python, for forward and backward).

    ``gmac_images_per_second``: forward GMACs x training images the device gets through per
    second (forward, backward and update included). ``seconds_per_block``: the fixed cost of one
    MBConv block in one training step; a deeper network pays it more often, which is why equal
    MACs do not mean equal time. ``seconds_per_step``: the rest of a step (stem, head, loss,
    optimizer). Measured values and the assumptions behind the GPU's are in results/cost_model/README.md.
    """

    name: str
    gmac_images_per_second: float
    seconds_per_block: float
    seconds_per_step: float
    seconds_per_run: float = 5.0  # building the model, moving the data, counting, writing

    def parts(self, run: Run) -> tuple[float, float]:
        """(arithmetic seconds, fixed-cost seconds) of ``run``."""
        config = run.train_config()
        train_images = 10 * (config.subset_per_class or 5000)
        test_images = 10 * (config.test_per_class or 1000)
        steps = train_images // config.batch_size
        blocks = sum(stage.repeats for stage in run.model_config().scaled_stages())
        # Evaluation: a forward pass only, about a third of a training step's work per image.
        arithmetic = config.epochs * (train_images + test_images / 3) * run.macs / 1e9 / self.gmac_images_per_second
        fixed = config.epochs * steps * (blocks * self.seconds_per_block + self.seconds_per_step) + self.seconds_per_run
        return arithmetic, fixed

    def run_seconds(self, run: Run) -> float:
        return sum(self.parts(run))


# The planning assumption for one H100 (see results/cost_model/README.md): deliberately pessimistic.
# - 1,000 GMAC-images/s: EfficientNet-B0 (0.39 GMACs) training at 2,500 images/s at 224 px, an
#   A100-class figure (B0 trains at about ResNet-50's images/s; no credit for the H100's speed);
# - 0.8 ms per block and step: eager PyTorch launches about 40 kernels per MBConv block for the
#   forward and backward passes, at about 20 microseconds each from Python;
# - 4 ms per step for the stem, head, loss and optimizer; 8 s per run to start and finish.
H100_ASSUMED = CostModel("H100 (assumed, conservative)", gmac_images_per_second=1000.0, seconds_per_block=0.0008,
                         seconds_per_step=0.004, seconds_per_run=8.0)
# Fitted to the quick sweep's models on the development machine's CPU (1 thread; 2 cores shared
# with other work, so on the slow side): benchmarks/scaling_cost_model.py --quick, see
# results/cost_model/README.md.
CPU_MEASURED = CostModel("CPU (measured, 1 thread)", gmac_images_per_second=0.46, seconds_per_block=0.0146,
                         seconds_per_step=0.072, seconds_per_run=2.0)


def cost_model(device=None) -> CostModel:
    """The cost model for ``device`` (default: the one training would use)."""
    device = device if device is not None else settings.default_device()
    return H100_ASSUMED if str(device).startswith("cuda") else CPU_MEASURED


def estimate_seconds(runs: Sequence[Run], model: CostModel | None = None, processes: int = 1) -> float:
    """Predicted wall-clock seconds of ``runs``, with ``processes`` of them running side by side.

    Conservative about running side by side: the fixed costs (Python, kernel launches) overlap,
    the arithmetic does not (the device does it for all processes in turn).
    """
    model = model or cost_model()
    processes = check_int("processes", processes, minimum=1)
    parts = [model.parts(run) for run in runs]
    return sum(arithmetic for arithmetic, _ in parts) + sum(fixed for _, fixed in parts) / processes


# --- shards --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based: 1/4, 2/4, 3/4, 4/4)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        check_int("shard count", self.count, minimum=1)
        check_int("shard index", self.index, minimum=1)
        if self.index > self.count:
            raise ValueError(f"shard {self.index}/{self.count}: the index must be between 1 and {self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'2/4' -> Shard(2, 4); anything else is a clear error."""
        parts = str(text).strip().split("/")
        if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
            raise ValueError(f"shard must look like i/n with whole numbers 1 <= i <= n (such as 2/4), got {text!r}")
        index, count = int(parts[0]), int(parts[1])
        if count < 1 or not 1 <= index <= count:
            raise ValueError(f"shard {text!r}: need 1 <= i <= n (shards are numbered 1/{max(count, 1)} "
                             f"to {max(count, 1)}/{max(count, 1)})")
        return cls(index, count)

    @property
    def file_name(self) -> str:
        return "results.jsonl" if self.count == 1 else f"results-shard-{self.index}-of-{self.count}.jsonl"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _partition(runs: Sequence[Run], count: int, model: CostModel | None = None) -> list[list[Run]]:
    """Split runs into ``count`` shards of about equal predicted time: the longest run goes to
    the least-loaded shard, and so on (the same runs always split the same way). A run id
    listed twice (two experiments share it) goes to one shard. Each shard keeps the plan's
    order, so its cheap, early runs finish first."""
    model = model or H100_ASSUMED
    cost = {run.run_id: model.run_seconds(run) for run in runs}
    loads, owner = [0.0] * count, {}
    for run_id in sorted(cost, key=lambda i: (-cost[i], i)):
        lightest = min(range(count), key=lambda i: (loads[i], i))
        loads[lightest] += cost[run_id]
        owner[run_id] = lightest
    return [[run for run in runs if owner[run.run_id] == index] for index in range(count)]


def shard_runs(runs: Sequence[Run], shard: Shard | None) -> list[Run]:
    """This shard's share of ``runs`` (all of them when ``shard`` is None)."""
    if shard is None or shard.count == 1:
        return list(runs)
    return _partition(runs, shard.count)[shard.index - 1]


# --- the results table ----------------------------------------------------------------------------


def read_table(path: str | os.PathLike) -> list[dict]:
    """The rows of one JSON-lines results file; a clear ResultsError if it is not one."""
    path = Path(path)
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ResultsError(f"results file {path} is not text: a damaged or foreign file. Move it aside; "
                           "nothing was changed") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ResultsError(f"results file {path} is corrupt at line {number} ({error.msg}): move it aside "
                               "(nothing was changed) and rerun to redo its runs") from None
        if not isinstance(row, dict) or "run_id" not in row:
            raise ResultsError(f"results file {path} line {number} is not a sweep result (no run_id): "
                               "a foreign file? Move it aside; nothing was changed")
        if row.get("table_version") != TABLE_VERSION:
            raise ResultsError(f"results file {path} line {number} was written by results-table version "
                               f"{row.get('table_version')!r}; this effnet_lab reads version {TABLE_VERSION}. "
                               "Keep old tables apart (sweep --out another folder); nothing was changed")
        rows.append(row)
    return rows


def table_files(source: str | os.PathLike) -> list[Path]:
    """The results files a path stands for: the file itself, or the *.jsonl files of a folder
    (and of its sub-folders: one per experiment), in a fixed order."""
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*.jsonl") if not p.name.startswith("."))
    raise FileNotFoundError(f"no results file or folder at {path}")


def read_results(*sources: str | os.PathLike) -> list[dict]:
    """All rows of the given files and folders as one table (shards merged): each run once
    per family. A run two experiments share (the grid's alpha = gamma = 1 candidate is the
    width-only model at phi = 1) keeps one row for each, so each experiment's plot finds it."""
    rows, seen = [], set()
    for source in sources:
        for path in table_files(source):
            for row in read_table(path):
                key = (row["run_id"], row.get("family"))
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
    return rows


@contextmanager
def _locked(folder: Path, blocking: bool = True):
    """An advisory lock on ``folder`` (POSIX; elsewhere no lock), held for the ``with`` block.

    Yields False if ``blocking`` is False and another process holds it. Locking the folder
    itself leaves no lock files behind, and the OS drops the lock when its holder dies.
    """
    try:
        import fcntl
    except ImportError:  # Windows: run one sweep process per folder
        yield True
        return
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(handle)  # closing releases the lock


def append_row(path: str | os.PathLike, row: dict) -> None:
    """Add ``row`` to the table at ``path``: read, add, write a new file, rename over the old.

    All or nothing, and under a lock, so that processes sharing a file never drop each
    other's rows. A damaged file is reported and left untouched.
    """
    path = Path(path)
    line = json.dumps(row, sort_keys=True, default=str)
    with _locked(path.parent):
        rows = read_table(path) if path.exists() else []
        if any(existing["run_id"] == row["run_id"] for existing in rows):
            return  # already there (a second process finished the same run): nothing to add
        text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows) + line + "\n"
        write_text(path, text)


def merge_tables(folder: str | os.PathLike) -> Path:
    """Merge the results files of one folder (shards, earlier chunks) into ``results.jsonl``.

    The merged file is written (atomically) before any other file is removed, so an
    interruption leaves every row somewhere. Call it when no sweep is writing to the folder.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"no results folder at {folder}")
    files = [path for path in table_files(folder) if path.parent == folder]
    rows = read_results(*files)  # a damaged file stops the merge before anything changes
    if not rows:
        raise ResultsError(f"{folder} holds no results to merge")
    rows.sort(key=lambda r: (r.get("experiment", ""), r.get("phi", 0), r.get("family", ""), r.get("seed", 0), r["run_id"]))
    target = folder / "results.jsonl"
    with _locked(folder):
        write_text(target, "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows))
    for path in files:
        if path != target:
            path.unlink()
    return target


def result_row(run: Run, record: dict) -> dict:
    """The table's row for a finished run: what the sweep knows about it, then the record."""
    s, base = run.spec, run.baseline
    row = dict(record)
    row.update({
        "table_version": TABLE_VERSION, "run_id": run.run_id, "code_version": CODE_VERSION,
        "experiment": run.experiment, "family": s.family, "label": s.label, "phi": s.phi, "seed": run.seed,
        "width": s.width, "depth": s.depth, "resolution": s.resolution,
        "width_factor": s.width / base.width, "depth_factor": s.depth / base.depth,
        "resolution_factor": s.resolution / base.resolution,
        "alpha": s.alpha, "beta": s.beta, "gamma": s.gamma,
        "upsampled": s.resolution > NATIVE_RESOLUTION,
        "target_macs_factor": s.target, "macs_factor": run.macs / base.macs, "baseline_macs": base.macs,
        "baseline": dataclasses.asdict(base),
        "quick_mode": bool(run.train.get("quick", False)),
    })
    row.setdefault("macs", run.macs)
    return row


# --- the runner ------------------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What a call of ``run_sweep`` did."""

    trained: list[str] = dataclasses.field(default_factory=list)  # run ids finished now
    skipped: list[str] = dataclasses.field(default_factory=list)  # finished before
    busy: list[str] = dataclasses.field(default_factory=list)  # being trained by another process
    left: list[str] = dataclasses.field(default_factory=list)  # not started: the time budget ran out
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.busy and not self.left

    def __str__(self) -> str:
        text = (f"{len(self.trained)} trained, {len(self.skipped)} already done, "
                f"{len(self.busy)} in progress elsewhere, {len(self.left)} left for the next call "
                f"({self.seconds:.0f} s)")
        return text


def default_out() -> Path:
    return settings.results_dir() / "sweeps"


def default_runs_dir() -> Path:
    # One store for every sweep's run folders: a run id names a run wherever its row goes.
    return settings.results_dir() / "sweep-runs"


def run_sweep(
    runs: Sequence[Run],
    out: str | os.PathLike | None = None,
    *,
    shard: Shard | None = None,
    runs_dir: str | os.PathLike | None = None,
    train_fn: Callable | None = None,
    data=None,
    max_minutes: float | None = None,
    progress: bool = True,
    command: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> SweepReport:
    """Train every run of this shard that is not finished yet; return what was done.

    ``out``: the tables' folder (one sub-folder per experiment); ``runs_dir``: the run folders
    with the checkpoints (default ``<results folder>/sweep-runs``). ``train_fn``: the trainer, with the
    signature of ``effnet_lab.train.train`` (tests pass a fake one). ``data``: a loaded
    ``CifarData`` (default: loaded once, when the first run starts). ``max_minutes``: start
    no run that the cost model says would end after this budget (measured speeds correct
    it as runs finish); the rest is left for the next call.
    """
    start = time.perf_counter()
    runs = list(runs)
    if not runs:
        raise ValueError("the sweep has no runs")
    out = Path(out).expanduser() if out is not None else default_out()
    runs_dir = Path(runs_dir).expanduser() if runs_dir is not None else default_runs_dir()
    shard = shard or Shard(1, 1)
    if max_minutes is not None:
        max_minutes = check_number("max_minutes", max_minutes, exclusive_minimum=0.0)
    from .train import NonFiniteLossError, run_folder_state, train

    load_data = data is None and train_fn is None  # the real trainer: load the images once, here
    train_fn = train_fn or train
    report = SweepReport()

    def finished() -> set[tuple[str, str]]:  # read again before every run: other processes add rows too
        return finished_runs(runs, out)

    mine = shard_runs(runs, shard)
    done = finished()  # a damaged table stops the sweep here, before any training
    check_one_precision(runs, out)  # and so does a table of the other precision
    model = cost_model(runs[0].train.get("device"))
    correction, timed = 1.0, 0  # measured / predicted seconds of the whole runs trained so far
    for number, run in enumerate(mine, 1):
        if (run.table, run.run_id) in done or (run.table, run.run_id) in finished():
            report.skipped.append(run.run_id)
            continue
        run_dir = runs_dir / run.run_id
        # A finished run folder without its row (the table was lost, say on a GPU machine whose
        # results folder was replaced) gives its record back at once; a started one trains only
        # what is left. Neither time is a whole run's: both stay out of the speed correction,
        # and a finished run needs no time from the budget.
        state = run_folder_state(run_dir)
        restored, whole_run = state == "finished", state == "new"
        predicted = 0.0 if restored else model.run_seconds(run) * correction
        elapsed = time.perf_counter() - start
        if max_minutes is not None and elapsed + predicted > max_minutes * 60:
            report.left.append(run.run_id)
            continue
        with _locked(run_dir, blocking=False) as claimed:
            if not claimed:
                report.busy.append(run.run_id)
                log(f"[{number}/{len(mine)}] {run.describe()}: being trained by another process, skipped")
                continue
            if (run.table, run.run_id) in finished():  # finished by another process meanwhile
                report.skipped.append(run.run_id)
                continue
            if load_data and data is None:
                from .data import load_cifar

                data = load_cifar(run.train.get("dataset", "cifar10"), run.train.get("data"), progress=progress)
            log(f"[{number}/{len(mine)}] {run.describe()} (id {run.run_id}, "
                + ("finished earlier: its row comes back from its record)" if restored else f"~{predicted:.0f} s)"))
            model_config = run.model_config()
            from .model import build

            run_start = time.perf_counter()
            try:
                network = build(model_config, seed=run.train["seed"])  # the seed decides the initial weights too
                record = train_fn(network, run.train_config(), data=data, run_dir=run_dir,
                                  progress=progress, model_spec=_model_spec(run), command=command)
            except NonFiniteLossError as error:  # a diverged run is a result too: recorded, not retried
                log(f"    failed: {error}")
                record = {"test_accuracy": None, "status": "failed", "error": str(error)}
            seconds = time.perf_counter() - run_start
            append_row(out / run.table / shard.file_name, result_row(run, record))
        report.trained.append(run.run_id)
        if whole_run:
            timed += 1
            correction = _updated(correction, predicted / correction, seconds, timed)
        accuracy = record.get("test_accuracy")
        log(f"    test accuracy {accuracy:.2%} in {seconds:.0f} s" if isinstance(accuracy, float)
            else f"    done in {seconds:.0f} s")
    report.seconds = time.perf_counter() - start
    return report


def _updated(correction: float, predicted: float, measured: float, count: int) -> float:
    """Running mean of measured / predicted time, so later predictions use this device's speed."""
    ratio = measured / max(predicted, 1e-9)
    return ratio if count == 1 else correction + (ratio - correction) / count


def _model_spec(run: Run) -> dict:
    """How the model was built, for the record: only what defines the network, so that two
    experiments sharing a run (the same id) share its run folder too."""
    base = run.baseline
    return {"variant": None, "width": run.spec.width, "depth": run.spec.depth, "stem": "cifar",
            "dropout": base.dropout, "drop_path_rate": base.drop_path_rate}


def finished_runs(runs: Sequence[Run], out: str | os.PathLike | None = None) -> set[tuple[str, str]]:
    """(table, run id) of every run that has a row in its experiment's table under ``out``."""
    out = Path(out).expanduser() if out is not None else default_out()
    done = set()
    for table in {run.table for run in runs}:
        if (out / table).exists():
            done |= {(table, row["run_id"]) for row in read_results(out / table)}
    return done


def status(runs: Sequence[Run], out: str | os.PathLike | None = None) -> list[bool]:
    """For each run, whether it is finished (has a row in its table under ``out``)."""
    done = finished_runs(runs, out)
    return [(run.table, run.run_id) in done for run in runs]


def check_one_precision(runs: Sequence[Run], out: str | os.PathLike | None = None) -> None:
    """A clear ResultsError if a table under ``out`` holds runs of another precision than ``runs``'.

    fp32 and bf16 runs of one model have different run ids, so a table would take both, and
    its figures would average them as if they were seeds.
    """
    out = Path(out).expanduser() if out is not None else default_out()
    for table in dict.fromkeys(run.table for run in runs):
        if not (out / table).exists():
            continue
        amp = {run.train.get("amp", True) for run in runs if run.table == table}
        other = [row for row in read_results(out / table) if row.get("config", {}).get("amp", True) not in amp]
        if other and len(amp) == 1:
            theirs, ours = ("bf16 autocast", "fp32") if amp == {False} else ("fp32", "bf16 autocast")
            raise ResultsError(f"{out / table} holds {len(other)} runs trained in {theirs}, and these would train "
                               f"in {ours}: one table, one precision. Train them with the table's precision "
                               "(--no-amp: fp32), or into another --out; nothing was changed")


# --- the command line ---------------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sweep`` with ``python -m effnet_lab``'s subcommands."""
    parser = subparsers.add_parser(
        "sweep", help="run scaling experiments (resumable, shardable)",
        description="Train every run of the named experiments that is not finished yet, appending one row per "
                    "run to a results table. Rerun the same command to continue after an interruption.",
    )
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT",
                        help="one or more of: " + ", ".join(f"{e.name} ({e.description})" for e in EXPERIMENTS.values()))
    parser.add_argument("--quick", action="store_true", default=None,
                        help=f"quick mode: a tiny baseline, a few hundred images, one epoch (also {settings.QUICK_ENV}=1)")
    parser.add_argument("--phis", nargs="+", type=float, help="the phis to scale to (default: the experiment's own)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: 0 1; one seed for grid and width-grid)")
    parser.add_argument("--epochs", type=int, help="training epochs of every run")
    parser.add_argument("--batch-size", type=int, help="training batch size of every run")
    parser.add_argument("--shard", default="1/1", help="run shard i of n (1 <= i <= n), e.g. 2/4; every shard "
                                                       "writes its own results file, read_results merges them")
    parser.add_argument("--out", help="folder of the results tables (default: <results folder>/sweeps)")
    parser.add_argument("--runs-dir", help="folder of the run folders with checkpoints "
                                           "(default: <results folder>/sweep-runs)")
    parser.add_argument("--data", help=f"folder or .tar.gz with the images (default: ${settings.DATA_ENV} or found)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: the GPU when there is one)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", default=None,
                        help="train in fp32 on CUDA instead of bf16 autocast (other runs: other run ids, another table)")
    parser.add_argument("--max-minutes", type=float,
                        help="start no run that would end after this many minutes (the rest waits for the next call)")
    parser.add_argument("--list", action="store_true", help="print the runs, their cost and status; train nothing")
    parser.add_argument("--merge", action="store_true",
                        help="merge each experiment's results files (shards) into one results.jsonl; train nothing")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(run=main)
    return parser


def main(args: argparse.Namespace) -> int:
    shard = Shard.parse(args.shard)
    overrides = {}
    for name in ("batch_size", "data", "device", "amp"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    runs = plan(args.experiments, quick=args.quick, phis=args.phis, seeds=args.seeds, epochs=args.epochs, **overrides)
    out = Path(args.out).expanduser() if args.out else default_out()
    on_cpu = str(overrides.get("device") or settings.default_device()).startswith("cpu")
    if on_cpu and scale(args.quick).name == "quick" and "OMP_NUM_THREADS" not in os.environ:
        import torch

        # Quick mode's networks are tiny: extra CPU threads only wait for each other (on a busy
        # 2-core machine the quick comparison took 398 s with two threads, 39 s with one).
        torch.set_num_threads(1)
    if args.merge:
        for table in dict.fromkeys(run.table for run in runs):
            if (out / table).is_dir():
                print(f"merged into {merge_tables(out / table)}")
        return 0
    mine = shard_runs(runs, shard)
    finished = status(mine, out)
    model = cost_model(overrides.get("device"))
    todo = [run for run, done in zip(mine, finished) if not done]
    print(f"{len(runs)} runs in {', '.join(args.experiments)} ({scale(args.quick).name} scale); shard {shard}: "
          f"{len(mine)} runs, {len(mine) - len(todo)} done, {len(todo)} to do, about "
          f"{estimate_seconds(todo, model) / 60:.1f} min on {model.name}. Tables: {out}")
    if args.list:
        for run, done in zip(mine, finished):
            print(f"  {'done' if done else 'todo'}  {run.run_id}  {run.experiment:<10} "
                  f"{run.describe()}  ~{model.run_seconds(run):.0f} s")
        return 0
    report = run_sweep(runs, out, shard=shard, runs_dir=args.runs_dir, max_minutes=args.max_minutes,
                       progress=args.progress, command=getattr(args, "command_line", None))
    print(f"shard {shard}: {report}")
    if report.left:
        print("time budget reached: run the same command again to continue")
    return 0

