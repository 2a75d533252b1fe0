"""The one reader of what training writes: run records and the shipped benchmark outputs (lessons 05-07).

A sweep writes one folder per run, ``OUT/<table>/<run_id>/record.json``: the training record
with a ``run`` section (experiment, family, phi, seed...). ``read_runs`` turns folders of them
into flat rows, ``to_frame`` into a DataFrame; every figure reads through them. Then the
statistics that let lesson 05 ask "at the same MACs, does compound scaling beat scaling one
dimension?" honestly: criteria fixed below before any run, ``compare_families`` (seeds paired,
95% intervals), ``criteria_report`` and the one-sentence ``verdict``. Last, the readers of the
shipped speed and transfer measurements. pandas is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .stats import t_quantile

# --- the criteria, stated before any run -------------------------------------------------------
# Seed-to-seed standard deviation of test accuracy (points) pooled over configurations:
# the 10,000-image test set alone scatters about 0.3 points at 88% accuracy, so a stable
# recipe should not add much more than that.
MAX_POOLED_SD = 0.5
# Any single configuration's SD: an SD from 3 seeds lands anywhere from 0.16 to 1.9 times
# the true one (95% of the time), so with 13 configurations at a true 0.4 some would pass
# 0.5 nineteen times in twenty; past 1.0 one does so about once in forty.
MAX_CONFIG_SD = 1.0
# A first-epoch train loss at or above ln(10), the loss of a uniform guess over 10 classes,
# means the run was still at chance after an epoch: a recipe that lets that happen is unstable.
CHANCE_LOSS = math.log(10)
# Twice the epochs may move the baseline's mean accuracy by less than this (points): more
# and the comparison measures how fast models train, not how well they scale.
MAX_CONVERGENCE_SHIFT = 1.0
# Seeds per configuration, the same seeds in every family so differences pair up: with 3
# pairs the 95% interval's t factor is 4.30; with 2 it is 12.7 and says almost nothing.
MIN_SEEDS = 3
CONFIDENCE = 0.95
# The paper's effect at equal FLOPs on ImageNet with long schedules (Tan & Le, 2019): compound
# scaling beat the best single dimension by roughly 0.7 to 1.4 points on ResNet-50 and
# MobileNets (its Table 3) and by about 2 points on B0 grown to about 1.8B FLOPs (Table 7).
PAPER_EFFECT = "+0.7 to +1.4 points for ResNet-50 and MobileNets, about +2 for B0 at ~1.8B FLOPs (ImageNet)"

SINGLE_AXES = ("width", "depth", "resolution")
FAMILIES = ("baseline", *SINGLE_AXES, "compound")
# TrainConfig fields that do not change what a run measures.
NOT_RECIPE = {"seed", "data", "device", "eval_batch_size", "compile"}


class ResultsError(ValueError):
    """A run record that cannot be used: damaged, or not a sweep's."""


# --- run records --------------------------------------------------------------------------------


def _load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsError(f"run record {path} is damaged ({type(error).__name__}): move it aside and rerun "
                           "its sweep, which trains that run again") from None


def read_runs(*sources: str | os.PathLike) -> list[dict]:
    """Every sweep run under the given folders (searched recursively) or record.json files, as
    flat rows: the record's fields with its ``run`` section's merged in, plus ``epochs`` (from
    its config), ``first_epoch_train_loss`` and ``record_file``. A run two experiments share
    appears once per table. Records without a ``run`` section inside a folder (a single
    training's) are left out; one named directly is refused."""
    rows, seen = [], set()
    for source in map(lambda s: Path(s).expanduser(), sources):
        if not source.exists():
            raise FileNotFoundError(f"no results file or folder at {source}")
        for path in [source] if source.is_file() else sorted(source.rglob("record.json")):
            record = _load(path)
            run = record.get("run") if isinstance(record, dict) else None
            if run is None and path != source and isinstance(record, dict):
                continue  # a single training's record, not a sweep's
            if not isinstance(run, dict) or "run_id" not in run:
                raise ResultsError(f"run record {path} has no sweep 'run' section with a run_id: it is not a "
                                   "sweep's record, read it with json.load instead")
            if (run.get("table"), run["run_id"]) in seen:
                continue
            seen.add((run.get("table"), run["run_id"]))
            row = {k: v for k, v in record.items() if k != "run"}
            row.update(run)
            curve, config = record.get("accuracy_curve") or [], record.get("config") or {}
            row["first_epoch_train_loss"] = curve[0].get("train_loss") if curve else None
            row["epochs"] = config.get("epochs", record.get("epochs"))
            row["record_file"] = str(path)
            rows.append(row)
    return rows


def to_frame(results):
    """A pandas DataFrame of finished runs, from a DataFrame, a list of rows, or run folders/files;
    with ``accuracy`` (%) and ``mmacs`` (millions of MACs) added. Refuses tables that mix scales
    or precisions (their runs would be averaged as if they were seeds)."""
    import pandas as pd

    if isinstance(results, pd.DataFrame):
        frame = results.copy()
    elif isinstance(results, (str, os.PathLike)):
        frame = pd.DataFrame(read_runs(results))
    elif isinstance(results, Sequence) and results and all(isinstance(i, (str, os.PathLike)) for i in results):
        frame = pd.DataFrame(read_runs(*results))
    elif isinstance(results, Sequence) and all(isinstance(item, dict) for item in results):
        frame = pd.DataFrame(list(results))
    else:
        raise TypeError("results must be a folder of run records (or record.json files), a list of rows, "
                        f"or a pandas DataFrame; got {type(results).__name__}")
    if frame.empty:
        raise ValueError("the results table is empty: run a sweep first (python -m effnet_lab sweep compare --quick)")
    missing = {"run_id", "family", "test_accuracy", "macs"} - set(frame.columns)
    if missing:
        raise ValueError(f"these rows are not sweep results: columns {sorted(missing)} are missing")
    # A run kept by two tables under one family counts once; under two (the grid's alpha = gamma = 1
    # candidate is the width-only model at phi = 1), once for each, so each experiment's figure finds it.
    frame = frame.drop_duplicates(["run_id", "family"])
    frame = frame[frame["test_accuracy"].notna()].copy()  # runs that failed (a diverged loss) have no accuracy
    if frame.empty:
        raise ValueError("no run in these results finished with an accuracy (every run failed)")
    scales = {json.dumps(b, sort_keys=True, default=str) for b in frame["baseline"]} if "baseline" in frame else set()
    quick = set(frame["quick_mode"].astype(bool)) if "quick_mode" in frame else {False}
    if len(scales) > 1 or len(quick) > 1:
        raise ValueError("these results mix sweeps of different scales (different baselines or quick and full "
                         "mode): plot each scale's table separately")
    precisions = set(frame["precision"].dropna()) if "precision" in frame else set()
    if len(precisions) > 1:
        raise ValueError(f"these results mix precisions ({', '.join(sorted(precisions))}): plot each precision's "
                         "table separately")
    frame["accuracy"] = 100 * frame["test_accuracy"].astype(float)
    frame["mmacs"] = frame["macs"].astype(float) / 1e6
    return frame


def as_rows(results) -> list[dict]:
    """Rows as dicts (missing values None) from rows, run folders or files, or a DataFrame."""
    if isinstance(results, (str, os.PathLike)):
        results = read_runs(results)
    elif hasattr(results, "to_dict"):
        results = results.astype(object).where(results.notna(), None).to_dict("records")
    elif results and all(isinstance(item, (str, os.PathLike)) for item in results):
        results = read_runs(*results)
    unique = {}  # a run kept under two families (the grid's alpha = gamma = 1 is width at phi 1) stays in both
    for row in results:
        unique.setdefault((row["run_id"], row.get("family")), row)
    return list(unique.values())


# The run fields that, with the recipe (config), say which model was trained how (not the
# seed, nor the experiment, table or label, which only say where a run is kept).
_RUN_FIELDS = {"code_version", "recipe", "family", "phi", "width", "depth", "resolution", "alpha", "beta",
               "gamma", "baseline", "epochs", "quick_mode", "precision"}


def _configuration(row: dict) -> str:
    """What a run is apart from its seed: its run fields and its recipe."""
    fields = {k: v for k, v in row.items() if k in _RUN_FIELDS}
    fields["config"] = {k: v for k, v in (row.get("config") or {}).items() if k not in NOT_RECIPE}
    return json.dumps(fields, sort_keys=True, default=str)


def _points(row: dict) -> float | None:
    """Test accuracy in points, None for a failed run."""
    value = row.get("test_accuracy")
    return None if value is None or value != value else 100 * float(value)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


# --- the comparison -----------------------------------------------------------------------------


def _comparison(rows: list[dict]) -> tuple[list[dict], int]:
    """The rows of the comparison's recipe (the one most scaled models were trained with; other
    recipes, such as a pilot's candidates, are left out) and its length in epochs."""
    scaled = [row for row in rows if row.get("family") in SINGLE_AXES + ("compound",)]
    if not scaled:
        raise ResultsError("no scaled models (width, depth, resolution, compound) in these results: "
                           "run python -m effnet_lab sweep compare first")
    recipe = statistics.mode(row.get("recipe") for row in scaled)
    return [row for row in rows if row.get("recipe") == recipe], statistics.mode(row.get("epochs") for row in scaled)


def _members(rows: list[dict], family: str, phi: float, epochs: int) -> list[dict]:
    return [r for r in rows if r.get("family") == family and r.get("phi") == phi and r.get("epochs") == epochs]


def _by_seed(rows: list[dict], family: str, phi: float, epochs: int) -> dict:
    return {r["seed"]: _points(r) for r in _members(rows, family, phi, epochs) if _points(r) is not None}


def compare_families(results) -> list[dict]:
    """For each phi and each single axis: compound minus that axis, paired by seed, in points,
    with its 95% interval (Student's t, n - 1 degrees of freedom) and the verdict it gives;
    each model's mean accuracy, training seconds and images/s; the best single axis at that phi
    (picked after the fact, by mean); and the paper's effect size for scale."""
    rows, epochs = _comparison(as_rows(results))
    table = []
    for phi in sorted({row["phi"] for row in rows if row.get("family") == "compound" and row.get("epochs") == epochs}):
        compound = _by_seed(rows, "compound", phi, epochs)
        singles = {axis: _by_seed(rows, axis, phi, epochs) for axis in SINGLE_AXES}
        means = {axis: _mean(seeds.values()) for axis, seeds in singles.items() if seeds}
        best = max(means, key=means.get) if means else None
        for axis, single in singles.items():
            if not single:
                continue
            differences = [compound[seed] - single[seed] for seed in sorted(compound.keys() & single.keys())]
            n = len(differences)
            mean = statistics.fmean(differences) if n else None
            low = high = None
            if n >= 2:
                half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * statistics.stdev(differences) / math.sqrt(n)
                low, high = mean - half, mean + half
            verdict = ("not enough seeds" if n < 2 else "ahead" if low > 0 else "behind" if high < 0 else "tie")
            timing = {}
            for name, family in (("compound", "compound"), ("single", axis)):
                members = _members(rows, family, phi, epochs)
                timing[f"{name}_accuracy"] = _mean(_points(r) for r in members)
                timing[f"{name}_seconds"] = _mean(r.get("train_seconds") for r in members)
                timing[f"{name}_images_per_second"] = _mean(r.get("images_per_second") for r in members)
            table.append({"phi": phi, "single_axis": axis, "pairs": n, "mean_difference": mean, "ci_low": low,
                          "ci_high": high, "verdict": verdict, "best_single_axis": best, "epochs": epochs,
                          **timing, "paper_effect": PAPER_EFFECT})
    if not table:
        raise ResultsError("no phi has both compound and single-axis runs at the comparison's length")
    return table


# --- the criteria -------------------------------------------------------------------------------


def _stability(rows: list[dict]) -> dict:
    groups = defaultdict(list)
    for row in rows:
        if _points(row) is not None:
            groups[_configuration(row)].append(_points(row))
    sds = [statistics.stdev(values) for values in groups.values() if len(values) >= 2]
    pooled = math.sqrt(statistics.fmean([sd * sd for sd in sds])) if sds else None
    at_chance = [row["run_id"] for row in rows if (row.get("first_epoch_train_loss") or 0) >= CHANCE_LOSS]
    failed = [row["run_id"] for row in rows if row.get("status") == "failed"]
    passed = None if pooled is None else pooled <= MAX_POOLED_SD and max(sds) <= MAX_CONFIG_SD
    passed = False if at_chance or failed else passed
    return {"pooled_sd": pooled, "max_pooled_sd": MAX_POOLED_SD, "worst_sd": max(sds) if sds else None,
            "max_config_sd": MAX_CONFIG_SD, "configurations": len(sds), "runs_at_chance": at_chance,
            "chance_loss": CHANCE_LOSS, "failed_runs": failed, "pass": passed}


def _ranking(rows: list[dict], epochs: int) -> list[str]:
    means = {f: _mean(_by_seed(rows, f, 1, epochs).values()) for f in SINGLE_AXES + ("compound",)}
    return sorted((f for f in means if means[f] is not None), key=lambda f: -means[f])


def _convergence(rows: list[dict], epochs: int) -> dict:
    base, long = (_mean(_by_seed(rows, "baseline", 0, e).values()) for e in (epochs, 2 * epochs))
    shift = None if base is None or long is None else long - base
    ranking, long_ranking = _ranking(rows, epochs), _ranking(rows, 2 * epochs)
    measured = shift is not None and len(ranking) >= 2 and set(ranking) == set(long_ranking)
    return {"epochs": epochs, "long_epochs": 2 * epochs, "baseline_shift": shift, "max_shift": MAX_CONVERGENCE_SHIFT,
            "ranking": ranking, "long_ranking": long_ranking,
            "pass": (abs(shift) < MAX_CONVERGENCE_SHIFT and ranking == long_ranking) if measured else None}


def _seeds(rows: list[dict], comparison: list[dict], epochs: int) -> dict:
    counts = defaultdict(set)
    for row in rows:
        if row.get("epochs") == epochs and row.get("family") in FAMILIES and _points(row) is not None:
            counts[_configuration(row)].add(row["seed"])
    fewest = min(len(seeds) for seeds in counts.values())
    fewest_pairs = min(entry["pairs"] for entry in comparison)
    return {"fewest_seeds": fewest, "fewest_pairs": fewest_pairs, "min_seeds": MIN_SEEDS,
            "pass": fewest >= MIN_SEEDS and fewest_pairs >= MIN_SEEDS}


def criteria_report(results) -> dict:
    """Each criterion's numbers, its threshold and whether it passes (``pass``: True, False, or
    None when the runs to measure it are not there): stability, convergence, seeds."""
    rows = as_rows(results)
    compared, epochs = _comparison(rows)
    return {"stability": _stability(rows), "convergence": _convergence(compared, epochs),
            "seeds": _seeds(compared, compare_families(rows), epochs),
            "quick_mode": any(bool(row.get("quick_mode")) for row in rows)}


def _phrase(entry: dict) -> str:
    axis, pairs = entry["single_axis"], entry["pairs"]
    if entry["verdict"] == "not enough seeds":
        return f"not yet comparable with {axis} ({pairs} seed pair{'s' * (pairs != 1)})"
    words = {"ahead": "ahead of", "behind": "behind", "tie": "tied with"}[entry["verdict"]]
    return (f"{words} {axis} ({entry['mean_difference']:+.1f} points, 95% CI {entry['ci_low']:+.1f} "
            f"to {entry['ci_high']:+.1f})")


def _problems(criteria: dict) -> list[str]:
    """What keeps the differences from being trusted, criterion by criterion."""
    stability, convergence, seeds = criteria["stability"], criteria["convergence"], criteria["seeds"]
    problems = []
    if stability["pass"] is None:
        problems.append("stability is not measured (no configuration has 2 seeds)")
    elif not stability["pass"]:
        numbers = ([f"pooled SD {stability['pooled_sd']:.2f} vs {MAX_POOLED_SD}", f"worst {stability['worst_sd']:.2f} "
                    f"vs {MAX_CONFIG_SD}"] if stability["pooled_sd"] is not None else [])
        numbers += [f"{len(stability['runs_at_chance'])} at chance after one epoch", f"{len(stability['failed_runs'])} failed"]
        problems.append(f"the recipe fails the stability criterion ({', '.join(numbers)})")
    if convergence["pass"] is None:
        problems.append(f"convergence is not measured (no baseline and phi = 1 runs at {convergence['long_epochs']} epochs)")
    elif not convergence["pass"]:
        problems.append(f"the recipe fails the convergence criterion (twice the epochs moves the baseline "
                        f"{convergence['baseline_shift']:+.1f} points, ranking {' > '.join(convergence['ranking'])} "
                        f"becomes {' > '.join(convergence['long_ranking'])})")
    if not seeds["pass"]:
        problems.append(f"there are too few seeds ({seeds['fewest_pairs']} pairs, {MIN_SEEDS} needed)")
    return problems


def verdict(results) -> str:
    """One sentence, computed from ``compare_families`` and ``criteria_report``: what the paired
    differences say at each phi, and whether the criteria allow them to be trusted."""
    rows = as_rows(results)
    if any(bool(row.get("quick_mode")) for row in rows):
        return ("These are quick-mode runs (small models, briefly trained on a few hundred images): their numbers "
                "illustrate the mechanics of the comparison and answer nothing about compound scaling.")
    table = compare_families(rows)
    sentence = "; ".join(f"at phi = {phi:g} compound scaling is " + ", ".join(_phrase(e) for e in table if e["phi"] == phi)
                         for phi in sorted({e["phi"] for e in table}))
    sentence, problems = sentence[0].upper() + sentence[1:], _problems(criteria_report(rows))
    if problems:
        return f"{sentence}; but {' and '.join(problems)}, so these differences are not yet to be trusted."
    return (f"{sentence}; the recipe meets the stability, convergence and seed criteria, so these are CIFAR's "
            f"answers at this budget (the paper's effect: {PAPER_EFFECT}).")


# --- the shipped measurements -------------------------------------------------------------------


def shipped_scaling(shipped_root: str | os.PathLike | None, experiment: str = "compare"):
    """The shipped results folder of ``experiment`` a lesson should plot, and its label: the
    full-scale GPU runs (``scaling-gpu/``) when there are any, named by their GPU and, until the
    plan is complete, by how many of its runs are in; else the CPU quick-mode runs
    (``scaling-quick/``); else ``None`` and why."""
    if shipped_root is None:
        return None, "no shipped results here: they are in the project's results/ folder (clone it to plot them)"
    gpu = Path(shipped_root) / "scaling-gpu" / experiment
    if gpu.is_dir() and read_runs(gpu):
        frame = to_frame(gpu)
        devices = ", ".join(sorted(set(frame["device"].dropna())))
        precision = ", ".join(sorted(set(frame["precision"].dropna()))) if "precision" in frame else ""
        label = f"shipped: full scale on {devices}" + (f", {precision}" if precision else "")
        from .experiments import plan

        planned = len(plan(experiment, quick=False))
        return gpu, label + (f" ({len(frame)} of {planned} runs so far)" if len(frame) < planned else "")
    quick = Path(shipped_root) / "scaling-quick" / experiment
    if quick.is_dir():
        return quick, "shipped: CPU quick mode (the full-scale GPU results are not in results/scaling-gpu/ yet)"
    return None, f"no shipped {experiment} results in {shipped_root}"


def throughput_table(*paths: str | os.PathLike):
    """One row per measured configuration from ``benchmarks/throughput.py`` JSON files (or
    folders of them): images per second of effnet_lab, timm and torchvision, and effnet_lab's
    ratio to the faster of the two (the target is at least 1.0 on a GPU)."""
    import pandas as pd

    missing = [str(path) for path in paths if not Path(path).exists()]
    if missing:
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    files = [f for path in map(Path, paths) for f in (sorted(path.glob("throughput*.json")) if path.is_dir() else [path])]
    rows = []
    for file in files:
        measured = json.loads(file.read_text())
        rows += [{"device": measured["device"], "config": f"{result['config']} ({result['resolution']} px)",
                  "batch": result["batch_size"], "precision": result["precision"], "compiled": result["compile"],
                  **{f"{name} (img/s)": round(v, 1) for name, v in result["images_per_second"].items()},
                  "vs faster peer": round(result["images_per_second"]["effnet_lab"] / max(
                      result["images_per_second"]["timm"], result["images_per_second"]["torchvision"]), 3),
                  "date": measured["date"][:10], "file": file.name} for result in measured["results"]]
    if not rows:
        raise ValueError(f"no throughput measurements in {', '.join(map(str, paths))}")
    return pd.DataFrame(rows)


def time_to_accuracy(folder: str | os.PathLike) -> dict | None:
    """What ``benchmarks/time_to_accuracy.py`` left in ``folder``: ``curve``, ``target``, ``title``
    and a one-line ``text``. The finished run (``summary.json``, ``run/record.json``) if there is
    one; else the latest interrupted attempt (``partial.json`` in ``folder`` or an ``attempt-*``
    folder), labelled as such (``curve`` empty if it stopped before its first checkpoint); else None."""
    folder = Path(folder)
    if (folder / "summary.json").exists():
        summary = json.loads((folder / "summary.json").read_text())
        curve = json.loads((folder / "run" / "record.json").read_text())["accuracy_curve"]
        smoke = " [quick mode: not a result]" if summary["quick"] else ""
        target = f"{summary['target_accuracy']:.0%}"
        reached = (f"{target} after {summary['seconds_to_target']:.0f} s" if summary["seconds_to_target"] is not None
                   else f"{target} not reached")
        text = (f"{reached}; final {summary['final_test_accuracy']:.2%} on {summary['test_set']} after "
                f"{summary['train_seconds']:.0f} s of training ({summary['epochs']} epochs; data: "
                f"{summary['data_source']}; {summary['date'][:10]}){smoke}")
        return {"curve": curve, "target": summary["target_accuracy"], "text": text,
                "title": f"B0, cifar stem, on {summary['device']}{smoke}"}
    partials = sorted(folder.glob("partial.json")) + sorted(folder.glob("attempt-*/partial.json"), reverse=True)
    if not partials:
        return None
    partial = json.loads(partials[0].read_text())
    curve, target = partial["accuracy_curve"], f"{partial['target_accuracy']:.0%}"
    found = {"curve": curve, "target": partial["target_accuracy"], "title": "",
             "text": f"{partials[0]}: interrupted before its first checkpoint"}
    if curve:
        label = f"INTERRUPTED after epoch {partial['epochs_done']} of {partial['epochs_planned']}"
        reached = (f"{target} first after {partial['seconds_to_target']:.0f} s (epoch {partial['epoch_reaching_target']})"
                   if partial["seconds_to_target"] is not None else f"{target} not reached")
        best = max(curve, key=lambda point: point["test_accuracy"])
        found["title"] = f"B0, cifar stem, on {partial.get('device', '?')}: {label}"
        found["text"] = (f"{label} ({partials[0].parent.name}): {reached}; best {best['test_accuracy']:.2%} (epoch "
                         f"{best['epoch']}, {best['seconds']:.0f} s); stopped after {curve[-1]['seconds']:.0f} s; "
                         f"data: {partial.get('data_source', '?')}; {partial.get('run_date', partial['date'])[:10]}")
    return found


def transfer_records(folder: str | os.PathLike) -> dict:
    """The records of ``benchmarks/finetune_lite0.py`` in ``folder``: ``methods`` ({label: record}
    for the linear probe at the fine-tuning's input size, full fine-tuning and from scratch),
    ``probes`` (every linear probe, one per input size) and a one-line ``text``."""
    folder = Path(folder)
    names = {"finetune": "full fine-tuning", "scratch": "from scratch"}
    methods = {label: json.loads((folder / f"{name}.json").read_text())
               for name, label in names.items() if (folder / f"{name}.json").exists()}
    if "full fine-tuning" not in methods:
        raise FileNotFoundError(f"no finetune.json in {folder}: run benchmarks/finetune_lite0.py first")
    record = methods["full fine-tuning"]
    probes = json.loads((folder / "probe.json").read_text())["runs"] if (folder / "probe.json").exists() else []
    same_size = [r for r in probes if r["resolution"] == record["resolution"]]
    if same_size:
        methods = {"linear probe": same_size[0], **methods}
    quick = " [quick mode: not a result]" if record.get("quick_mode") else ""
    text = (f"fine-tuned Lite0: {record['test_accuracy']:.2%} on {record['test_set']} ({record['epochs']} epochs, "
            f"{record['train_seconds']:.0f} s, {record['date'][:10]}, {' '.join(record['command'])}){quick}")
    return {"methods": methods, "probes": probes, "text": text}
