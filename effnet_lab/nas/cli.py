"""The command line of the search: ``python -m effnet_lab nas ...`` (``--help`` for the options).

    python -m effnet_lab nas --quick --policy both --out runs/nas     # the proxy: seconds on a CPU
    python -m effnet_lab nas --evaluator train --policy both            # real child training (a GPU)

Rerunning the same command continues an interrupted search from its folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..checks import check_int, check_number
from .evaluate import EVALUATORS, PROXY_WARNING, EvaluationCache, make_evaluator
from .figures import save_figures, write_readme
from .search import POLICIES, Search, run_round_robin
from .space import DEFAULT_TARGET_MACS, Reward

def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "nas",
        help="a MnasNet-style architecture search on CIFAR (lesson 01)",
        description="Search CIFAR architectures with an LSTM controller (REINFORCE) or at random, rewarding "
        "ACC * (MACs/T)^w. Rerun the same command to continue an interrupted search. The train evaluator "
        "follows the 'nas-child' recipe of effnet_lab/recipes.py (its quick sizes with --quick); --per-class, "
        "--val-per-class and --epochs override it.",
    )
    parser.add_argument("--steps", type=int, default=None, help="samples per policy (default 100; 30 in quick mode)")
    parser.add_argument("--evaluator", choices=EVALUATORS, default="proxy",
                        help="proxy: a made-up formula, seconds (NOT a real evaluation); train: short real training")
    parser.add_argument("--policy", choices=POLICIES + ("both",), default="controller",
                        help="controller, random, or both (in turns, same budget each)")
    parser.add_argument("--out", default=None, help="folder for the logs and checkpoints (default <results>/nas/<evaluator>-seed<S>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="quick mode (also EFFNET_LAB_QUICK=1)")
    parser.add_argument("--target-macs", type=float, default=DEFAULT_TARGET_MACS, help="T of the reward, in MACs")
    parser.add_argument("--w", type=float, default=-0.07, help="the reward's exponent w (default -0.07)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds; no new child starts after it (rerun to continue)")
    parser.add_argument("--per-class", type=int, default=None, help="train evaluator: training images per class")
    parser.add_argument("--val-per-class", type=int, default=None,
                        help="train evaluator: held-out training images per class that score a child")
    parser.add_argument("--epochs", type=int, default=None, help="train evaluator: epochs per child")
    parser.add_argument("--data", default=None, help="train evaluator: dataset location (else EFFNET_LAB_DATA)")
    parser.add_argument("--device", default=None, help="train evaluator: cpu, cuda (default: the GPU when there is one)")
    parser.add_argument("--no-plots", action="store_true", help="do not write figures into --out")
    parser.set_defaults(run=main)
    return parser


def main(args: argparse.Namespace) -> int:
    from ..settings import quick_mode, results_dir

    start = time.monotonic()
    quick = quick_mode(True if args.quick else None)
    steps = args.steps if args.steps is not None else (30 if quick else 100)
    steps = check_int("--steps (the search budget)", steps, minimum=1)
    if args.time_limit is not None:
        check_number("--time-limit", args.time_limit, exclusive_minimum=0.0)
    evaluator = make_evaluator(args.evaluator, quick, args.seed, per_class=args.per_class,
                               val_per_class=args.val_per_class, epochs=args.epochs, data=args.data, device=args.device)
    reward = Reward(args.target_macs, args.w)
    out = Path(args.out) if args.out else results_dir() / "nas" / f"{args.evaluator}-seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    # One cache for the policies of this folder: a child one of them evaluated is not trained again.
    cache = EvaluationCache(out / "evaluations.jsonl")
    policies = POLICIES if args.policy == "both" else (args.policy,)
    command = getattr(args, "command_line", None)
    searches = [Search(evaluator=evaluator, policy=p, reward=reward, seed=args.seed, out=out, cache=cache,
                       verbose=False, command=command) for p in policies]
    if not evaluator.real:
        print(PROXY_WARNING)
    finished = run_round_robin(searches, steps, deadline=start + args.time_limit if args.time_limit else None)
    for search in searches:
        best = search.best()
        distinct = len({r["arch"] for r in search.records})
        print(f"{search.policy.name}: {search.step_count}/{steps} samples, {distinct} distinct children; "
              f"best reward {best['reward']:.4f} (accuracy {best['accuracy']:.3f}, {best['macs'] / 1e6:.1f}M MACs): {best['arch']}"
              if best else f"{search.policy.name}: no samples yet")
    print(f"{time.monotonic() - start:.1f} s this run; log in {out}"
          + ("" if finished else "; stopped at the time limit: rerun the same command to continue"))
    if not args.no_plots and all(s.records for s in searches):
        paths = save_figures({s.policy.name: s.records for s in searches}, out, reward)
        print("figures: " + ", ".join(str(p) for p in paths))
    write_readme(out)
    return 0
