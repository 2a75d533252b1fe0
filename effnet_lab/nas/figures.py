"""What a search shows (lesson 01): its figures, and the README of a search folder.

Everything here reads search logs (lists of records, as ``Search`` writes them), never a
printout. matplotlib is imported inside the functions, so the search runs without it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from ..files import atomic_write, read_jsonl, write_text
from ..plots import plain_log_ticks
from .search import POLICIES, pareto_front, winners_by_w
from .space import DEFAULT_TARGET_MACS, Reward

POLICY_COLORS = {"controller": "tab:blue", "random": "tab:orange"}


def provenance_note(records: Sequence[dict]) -> str:
    """One line saying how the plotted numbers were made."""
    if not records:
        return ""
    evaluators = sorted({r["evaluator"] for r in records})
    real = all(r.get("real_evaluation") for r in records)
    kind = "real short training on CIFAR-10" if real else "PROXY accuracies (made-up formula, not a real evaluation)"
    dates = sorted(r["time"][:10] for r in records if r.get("time"))
    return f"{len(records)} samples, evaluator {'/'.join(evaluators)}: {kind}" + (f"; {dates[-1]}" if dates else "")


def plot_reward_surface(ws: Sequence[float] = (0.0, -0.07, -0.3), target_macs: float = DEFAULT_TARGET_MACS,
                        macs_range: tuple[float, float] = (2e6, 2e8), accuracy_range: tuple[float, float] = (0.5, 0.95)):
    """The reward over (MACs, accuracy) for a few w: one panel per w, with iso-reward lines."""
    import matplotlib.pyplot as plt
    import numpy as np

    macs = np.geomspace(*macs_range, 200)
    accuracy = np.linspace(*accuracy_range, 200)
    M, A = np.meshgrid(macs, accuracy)
    fig, axes = plt.subplots(1, len(ws), figsize=(4.6 * len(ws), 4), sharey=True, squeeze=False)
    for ax, w in zip(axes[0], ws):
        R = A * (M / target_macs) ** w
        filled = ax.contourf(M / 1e6, A * 100, R, levels=20, cmap="viridis")
        lines = ax.contour(M / 1e6, A * 100, R, levels=8, colors="white", linewidths=0.7)
        ax.clabel(lines, fmt="%.2f", fontsize=8)
        ax.axvline(target_macs / 1e6, color="red", linestyle="--", linewidth=1, label=f"T = {target_macs / 1e6:g}M")
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_title(f"w = {w:g}")
        ax.set_xlabel("MACs (millions, log scale)")
        fig.colorbar(filled, ax=ax, label="reward")
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle("MnasNet reward ACC x (MACs/T)^w: the lines are equally rewarded children")
    fig.tight_layout()
    return fig


def plot_winners_by_w(records: Sequence[dict], ws: Sequence[float] | None = None, target_macs: float = DEFAULT_TARGET_MACS):
    """Which sampled child wins as w changes: its MACs and accuracy against w."""
    import matplotlib.pyplot as plt
    import numpy as np

    ws = list(ws) if ws is not None else list(np.round(np.linspace(-0.3, 0.0, 61), 3))
    winners = winners_by_w(records, ws, target_macs)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.step(ws, [r["macs"] / 1e6 for _, r in winners], where="mid", color="tab:blue", label="winner's MACs")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("w (the reward's cost exponent)")
    ax.set_ylabel("winner's MACs (millions, log scale)", color="tab:blue")
    twin = ax.twinx()
    twin.step(ws, [r["accuracy"] * 100 for _, r in winners], where="mid", color="tab:green", label="winner's accuracy")
    twin.set_ylabel("winner's accuracy (%)", color="tab:green")
    ax.axvline(-0.07, color="gray", linestyle=":", linewidth=1)
    ax.text(-0.07, ax.get_ylim()[1], " w = -0.07 (B0)", va="top", fontsize=8, color="gray")
    ax.set_title("The more negative w, the smaller the winning child")
    fig.text(0.01, 0.005, provenance_note(records), fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def plot_search_progress(logs: dict[str, Sequence[dict]], window: int = 10):
    """Reward per sample (dots), its moving average and the best so far, per policy."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for policy, records in logs.items():
        color = POLICY_COLORS.get(policy, None)
        steps = np.array([r["step"] for r in records])
        rewards = np.array([r["reward"] for r in records])
        ax.scatter(steps, rewards, s=8, alpha=0.35, color=color)
        if len(rewards) >= window:
            smooth = np.convolve(rewards, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, color=color, label=f"{policy}: mean of last {window}")
        ax.plot(steps, np.maximum.accumulate(rewards), color=color, linestyle="--", label=f"{policy}: best so far")
    ax.set_xlabel("sample (controller step)")
    ax.set_ylabel("reward  ACC x (MACs/T)^w")
    ax.set_title("Reward of every sample: the controller against random search, same budget")
    ax.legend(fontsize=8)
    fig.text(0.01, 0.005, provenance_note([r for rs in logs.values() for r in rs]), fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def plot_pareto(logs: dict[str, Sequence[dict]]):
    """Accuracy against MACs of every sampled child, with the Pareto front of them all."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.6))
    everything = [r for records in logs.values() for r in records]
    for policy, records in logs.items():
        unique = list({r["arch"]: r for r in records}.values())
        ax.scatter([r["macs"] / 1e6 for r in unique], [r["accuracy"] * 100 for r in unique], s=16, alpha=0.7,
                   color=POLICY_COLORS.get(policy), zorder=2, label=f"{policy} ({len(unique)} distinct children)")
    front = pareto_front(everything)
    # Under the dots (zorder), so the colour still says which policy found each front child.
    ax.plot([r["macs"] / 1e6 for r in front], [r["accuracy"] * 100 for r in front], color="black", linewidth=1.2,
            drawstyle="steps-post", zorder=1, label=f"Pareto front ({len(front)} children)")
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("MACs at 32x32 (millions, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Every sampled child: accuracy against cost")
    ax.legend(fontsize=8)
    fig.text(0.01, 0.005, provenance_note(everything), fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def save_figures(logs: dict[str, Sequence[dict]], out: str | Path, reward: Reward = Reward()) -> list[Path]:
    """Write the search's figures (progress, Pareto front, winners by w) as PNGs into ``out``."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # a command line run: no display
    import matplotlib.pyplot as plt

    out = Path(out)
    everything = [r for records in logs.values() for r in records]
    figures = {
        "progress.png": plot_search_progress(logs),
        "pareto.png": plot_pareto(logs),
        "winners_by_w.png": plot_winners_by_w(everything, target_macs=reward.target_macs),
    }
    paths = []
    for name, fig in figures.items():
        atomic_write(out / name, lambda f: fig.savefig(f, format="png", dpi=120))
        plt.close(fig)
        paths.append(out / name)
    return paths


# --- the README of a search folder ---------------------------------------------------------


def write_readme(out: str | Path) -> Path:
    """A README.md in a search folder: how its logs were made and what they hold (rewritten
    after every run, from the files themselves)."""
    out = Path(out)
    lines = [f"# Architecture search: {out.name}", "",
             "Written by `python -m effnet_lab nas` (effnet_lab/nas/, lesson 01); rerun the command to continue.", ""]
    for policy in POLICIES:
        if not (out / f"{policy}.json").exists():
            continue
        saved = json.loads((out / f"{policy}.json").read_text())
        records = read_jsonl(out / f"{policy}.jsonl")
        evaluator = saved["settings"]["evaluator"]
        provenance = saved["provenance"]
        real = bool(records and records[0].get("real_evaluation"))
        lines += [f"## {policy}", "",
                  f"- samples: {len(records)}, distinct children: {len({r['arch'] for r in records})}",
                  f"- evaluator: {json.dumps(evaluator)}"
                  + ("" if real else " (PROXY: a made-up formula, NOT a real evaluation)"),
                  f"- reward: {json.dumps(saved['settings']['reward'])}",
                  f"- seed: {saved['settings']['seed']}",
                  f"- started: {provenance['date']} by `{provenance['command'] or 'the Python API'}`",
                  f"- device: {sorted({r['device'] for r in records if r.get('device')}) or provenance['device']}",
                  f"- data: {sorted({r['data_source'] for r in records if r.get('data_source')}) or provenance['data_source']}",
                  f"- commit: {provenance['git_commit']}, effnet_lab {provenance['effnet_lab_version']}, torch {provenance['torch']}"]
        if records:
            best = max(records, key=lambda r: r["reward"])
            lines.append(f"- best reward {best['reward']:.4f} at step {best['step']}: {best['arch']} "
                         f"(accuracy {best['accuracy']:.4f}, {best['macs'] / 1e6:.1f}M MACs, {best['params']:,} parameters)")
            lines.append(f"- last sample: {records[-1]['time']}")
        lines.append("")
    lines += ["Files: `<policy>.jsonl` (one line per sampled child), `<policy>.pt` (the policy's checkpoint), "
              "`<policy>.json` (settings and provenance), `evaluations.jsonl` (the cache of evaluated children), "
              "`*.png` (figures).", ""]
    return write_text(out / "README.md", "\n".join(lines))
