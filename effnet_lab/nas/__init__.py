"""Neural architecture search, MnasNet style, small enough for a classroom (lesson 01).

EfficientNet-B0 was not designed by hand: a recurrent *controller* proposed networks one
decision at a time, each *child* network was trained and scored, and the controller was
pushed (with the policy gradient, REINFORCE) toward the decisions of well-scored children.
The score traded accuracy against cost (Tan & Le 2019, section 4, after MnasNet):

    reward(m) = ACC(m) * (MACs(m) / T) ** w        w = -0.07,  T = 400M on ImageNet

This package is that loop in miniature, for CIFAR:

- ``space``: the decisions as data (``SearchSpace``), a child's cost (``measure``), the
  reward (``Reward``).
- ``search``: the LSTM ``Controller`` and ``Reinforce``, random search, and ``Search``:
  a resumable loop with a JSON-lines log and a checkpoint after every step.
- ``evaluate``: scoring a child: a known-answer toy, a proxy formula (not an evaluation),
  real short training (``TrainEvaluator``); the cache that trains no child twice.
- ``figures``: the lesson's plots, and the README of a search folder.
- ``cli``: ``python -m effnet_lab nas``.

Everything is importable from here: ``from effnet_lab import nas; nas.SearchSpace()``.
"""

from ..files import append_jsonl, read_jsonl
from .cli import add_parser, main
from .evaluate import (
    EVALUATORS,
    PROXY_WARNING,
    EvaluationCache,
    KnownAnswerEvaluator,
    ProxyEvaluator,
    TrainEvaluator,
    make_evaluator,
    validation_split,
)
from .figures import (
    POLICY_COLORS,
    plot_pareto,
    plot_reward_surface,
    plot_search_progress,
    plot_winners_by_w,
    provenance_note,
    save_figures,
    write_readme,
)
from .search import (
    POLICIES,
    Controller,
    ControllerPolicy,
    ControllerSample,
    ControllerSettings,
    RandomPolicy,
    Reinforce,
    Search,
    make_policy,
    pareto_front,
    read_log,
    run_round_robin,
    success_rate,
    winners_by_w,
)
from .space import (
    CIFAR_BASE,
    DEFAULT_TARGET_MACS,
    RESOLUTION,
    Decision,
    Reward,
    SearchSpace,
    arch_key,
    measure,
    mnas_reward,
)
