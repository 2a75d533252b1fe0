"""Scaling experiments on CIFAR (lesson 05), as data: which way should a network grow?

1. **The experiments.** ``plan("compare")`` lists every training run of the main
   comparison: the baseline (phi = 0), width-only, depth-only and resolution-only scaling,
   and compound scaling with the paper's (alpha, beta, gamma) = (1.2, 1.1, 1.15), each at
   phi = 1, 2, 3, for three seeds. ``plan("convergence")`` trains the baseline and the phi = 1
   models twice as long (is the recipe long enough?), ``plan("pilot")`` the baseline under
   each candidate recipe (``recipes.CANDIDATES``), ``plan("grid")`` the paper's step 2 (a
   small grid of (alpha, beta, gamma) at phi = 1), ``plan("width-grid")`` the Figure-4 sweep
   (width at fixed depth and resolution) and ``plan("saturation")`` the longer single-axis
   sweep of Figure 3.

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

A run's id is a hash of everything that decides its result (model, input size, training
settings, seed, ``CODE_VERSION``): ``effnet_lab.sweep`` trains a plan into one run folder per
id, ``effnet_lab.results`` reads them back, ``effnet_lab.timing`` says how long a plan takes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from . import recipes, settings
from .checks import check_int, check_number
from .model import EfficientNetConfig
from .profile import macs_from_config
from .scaling import CompoundScaling
from .timing import CPU_MEASURED, H100_ASSUMED, CostModel, cost_model, estimate_seconds  # noqa: F401

# Bump when a change to the model, data or training code changes what a run produces:
# every run id changes with it, so old results are never mistaken for new ones.
CODE_VERSION = 3
NATIVE_RESOLUTION = 32  # CIFAR's images: beyond this the loader only interpolates
MAC_TOLERANCE = 0.10  # a scaled model's counted MACs must be within 10% of its target
PAPER = CompoundScaling(1.2, 1.1, 1.15)

# TrainConfig fields that may change without changing a run's result (the training engine
# lets a run resume across them too): they stay out of the run id.
NOT_IN_RUN_ID = ("data", "device", "eval_batch_size", "compile")


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
    zero_init_last_bn: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_number("width", self.width, exclusive_minimum=0.0))
        object.__setattr__(self, "depth", check_number("depth", self.depth, exclusive_minimum=0.0))
        object.__setattr__(self, "resolution", check_int("resolution", self.resolution, minimum=8))

    def config(self, width: float, depth: float, resolution: int) -> EfficientNetConfig:
        """The configuration of the network with *absolute* width and depth multipliers."""
        return EfficientNetConfig(width=width, depth=depth, num_classes=self.num_classes, dropout=self.dropout,
                                  stem="cifar", drop_path_rate=self.drop_path_rate, resolution=resolution,
                                  zero_init_last_bn=self.zero_init_last_bn)

    @property
    def macs(self) -> int:
        return macs_from_config(self.config(self.width, self.depth, self.resolution), self.resolution)


@dataclass(frozen=True)
class Scale:
    """Everything a sweep's size depends on: the baseline, the recipe, the seeds, the phis."""

    name: str
    baseline: Baseline
    seeds: tuple[int, ...]
    max_phi: float | None = None  # phis above it are left out of the experiments' defaults

    @property
    def train(self) -> dict:
        return recipes.fields("comparison", quick=self.name == "quick")


# Full scale (a GPU): three seeds, so that each comparison has a confidence interval.
FULL = Scale("full", Baseline(width=0.5, depth=1.0, resolution=21), seeds=(0, 1, 2))
# Quick mode (a CPU, minutes): a smaller baseline on 16 px (one block per stage), one seed,
# phi <= 2. Its residual blocks start as the identity (zero_init_last_bn): in two epochs the
# depth-scaled models then learn as the shallow ones do, where otherwise the deepest stayed
# near chance. Its accuracies illustrate the mechanics; they answer nothing.
QUICK = Scale("quick", Baseline(width=0.25, depth=0.25, resolution=16, zero_init_last_bn=True), seeds=(0,),
              max_phi=2.0)


def scale(quick: bool | None = None) -> Scale:
    """QUICK when quick mode is on (``EFFNET_LAB_QUICK=1`` or ``quick=True``), else FULL."""
    return QUICK if settings.quick_mode(quick) else FULL


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
                    lambda w: macs_from_config(base.config(base.width * w, depth, resolution), resolution), goal, nominal)


@lru_cache(maxsize=1024)
def _match_depth(base: Baseline, target: float, nominal: float) -> float:
    goal = target * base.macs
    return _closest(_grid(max(0.1, nominal / 1.6), nominal * 1.6, 0.01),
                    lambda d: macs_from_config(base.config(base.width, base.depth * d, base.resolution), base.resolution),
                    goal, nominal)


@lru_cache(maxsize=1024)
def _match_resolution(base: Baseline, target: float, nominal: float) -> int:
    goal = target * base.macs
    candidates = range(max(8, int(nominal / 1.6)), int(nominal * 1.6) + 2)
    return _closest(candidates, lambda r: macs_from_config(base.config(base.width, base.depth, r), r), goal, nominal)


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
            factor = macs_from_config(config, resolution) / base.macs
            family = "baseline" if (w, d, r) == (1.0, 1.0, 1.0) else "width-at-dr"
            label = "baseline" if family == "baseline" else f"d={d:g} r={r:g} w={w:g}"
            specs.append(ModelSpec(family, 0.0, round(base.width * w, 4), round(base.depth * d, 4), resolution,
                                   round(factor, 3), label))
    return specs


def pilot_specs(base: Baseline, phis: Sequence[float] = ()) -> list[ModelSpec]:
    """The baseline alone: the pilot trains it under each candidate recipe."""
    return [baseline_spec(base)]


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    specs: Callable[[Baseline, Sequence[float]], list[ModelSpec]]
    phis: tuple[float, ...]  # default phis
    seeds: int | None = None  # None: the scale's seeds; else the first this many of them
    folder: str | None = None  # results folder name (default: the experiment's name)
    epochs_factor: int = 1  # the recipe's epochs times this
    candidates: bool = False  # one run per candidate recipe (recipes.CANDIDATES)

    @property
    def table(self) -> str:
        return self.folder or self.name


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("pilot", "the baseline under each candidate recipe: every seed, and one seed twice as long",
                   pilot_specs, (), candidates=True),
        Experiment("compare", "baseline; width, depth, resolution and compound scaling at phi = 1, 2, 3",
                   compare_specs, (1.0, 2.0, 3.0)),
        Experiment("convergence", "the baseline and the phi = 1 models trained twice as long (one seed)",
                   compare_specs, (1.0,), seeds=1, epochs_factor=2),
        Experiment("grid", "step 2: (alpha, beta, gamma) with alpha*beta^2*gamma^2 = 2 at phi = 1, ranked",
                   grid_specs, (1.0,), seeds=1),
        Experiment("width-grid", "Figure 4: width scaling at (depth, resolution) = (1,1), (1,1.3), (2,1), (2,1.3)",
                   width_grid_specs, (), seeds=1),
        # The comparison's families at more phis, one seed, in the comparison's own folder: the
        # runs the two share (same id) are trained once.
        Experiment("saturation", "Figure 3: the comparison's families at phi = 0.5 ... 4 (one seed)",
                   compare_specs, (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0), seeds=1, folder="compare"),
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
    recipe: str = "comparison"  # its name, or the candidate's (the pilot)

    @property
    def seed(self) -> int:
        return self.train["seed"]

    @property
    def table(self) -> str:
        return _experiment(self.experiment).table

    def model_config(self) -> EfficientNetConfig:
        return self.baseline.config(self.spec.width, self.spec.depth, self.spec.resolution)

    def build_model(self):
        """A fresh network for this run: its seed decides the initial weights too."""
        from .model import build

        return build(self.model_config(), seed=self.seed)

    def train_config(self, **overrides):
        from .train import TrainConfig

        return TrainConfig(**{**self.train, **overrides})

    @property
    def macs(self) -> int:
        return macs_from_config(self.model_config(), self.spec.resolution)

    @property
    def run_id(self) -> str:
        """12 hex digits of a hash of everything that decides the run's result."""
        train = {k: v for k, v in self.train_config().to_dict().items() if k not in NOT_IN_RUN_ID}
        identity = {"code_version": CODE_VERSION, "model": dataclasses.asdict(self.model_config()), "train": train}
        return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def describe(self) -> str:
        s = self.spec
        recipe = "" if self.recipe == "comparison" else f", recipe {self.recipe}"
        return (f"{s.label} (w {s.width:g}, d {s.depth:g}, r {s.resolution}px, "
                f"{self.macs / self.baseline.macs:.2f}x MACs, {self.train['epochs']} epochs{recipe}) seed {self.seed}")


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

    def add(name: str, model: ModelSpec, baseline: Baseline, fields: dict, seed: int, recipe: str) -> None:
        run = Run(name, model, baseline, dict(fields, resolution=model.resolution, seed=seed), recipe)
        run.train_config()  # bad training settings fail here, before anything runs
        # Listed once per results folder: a run two experiments share is trained once.
        if (run.table, run.run_id) not in seen:
            seen.add((run.table, run.run_id))
            runs.append(run)

    for name in names:
        spec = _experiment(name)
        spec_phis = check_phis(phis) if phis is not None else tuple(
            phi for phi in spec.phis if chosen.max_phi is None or phi <= chosen.max_phi)
        run_seeds = seeds if seeds is not None else chosen.seeds[: spec.seeds or None]
        fields = dict(train, epochs=train["epochs"] * spec.epochs_factor)
        for model in spec.specs(chosen.baseline, spec_phis):
            if not spec.candidates:
                for seed in run_seeds:
                    add(name, model, chosen.baseline, fields, seed, "comparison")
                continue
            # The pilot: every candidate on every seed, and on the first seed twice as long.
            for candidate, changes in recipes.CANDIDATES.items():
                model_changes = {k: v for k, v in changes.items() if k in Baseline.__dataclass_fields__}
                baseline = dataclasses.replace(chosen.baseline, **model_changes)
                candidate_fields = dict(fields, **{k: v for k, v in changes.items() if k not in model_changes})
                for seed in run_seeds:
                    add(name, model, baseline, candidate_fields, seed, candidate)
                longer = dict(candidate_fields, epochs=2 * candidate_fields["epochs"])
                add(name, model, baseline, longer, run_seeds[0], candidate)
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
            "epochs": run.train["epochs"], "recipe": run.recipe, "run_id": run.run_id,
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
