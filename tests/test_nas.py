"""The architecture search of lesson 01: space, controller, REINFORCE, reward, cache, log, resume."""

import argparse
import json
import math
import zlib

import pytest
import torch

from effnet_lab import nas
from effnet_lab.model import build
from effnet_lab.nas import (
    Controller,
    ControllerPolicy,
    EvaluationCache,
    ProxyEvaluator,
    Reward,
    Search,
    SearchSpace,
    arch_key,
    mnas_reward,
    pareto_front,
    success_rate,
    winners_by_w,
)

# Fields of a log record that depend on the wall clock or on what was cached, not on the search.
VOLATILE = {"time", "eval_seconds", "cached"}


class HashEvaluator:
    """Cheap and deterministic: a different 'accuracy' and 'MACs' for every architecture,
    and a count of how many children it was asked to evaluate."""

    name = "hash"
    real = False

    def __init__(self, fail_at_call: int | None = None):
        self.calls = 0
        self.fail_at_call = fail_at_call

    def signature(self):
        return {"name": self.name}

    def __call__(self, config):
        self.calls += 1
        if self.fail_at_call is not None and self.calls == self.fail_at_call:
            raise KeyboardInterrupt("simulated interruption")
        h = zlib.crc32(arch_key(config).encode())
        return {"accuracy": 0.5 + (h % 1000) / 2500, "macs": 1e6 * (1 + h % 97), "params": h % 5000}


def tiny_space(**overrides):
    """Two architectures only: kernel 3 or 5 in a single stage (so repeats are certain)."""
    settings = dict(base=((16, 1),), expand_ratios=(1,), layers=(1,), se=(False,), head_channels=32)
    settings.update(overrides)
    return SearchSpace(**settings)


def stable(records):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


# --- the search space -----------------------------------------------------------------


def test_default_space_size_and_decisions():
    space = SearchSpace()
    assert space.decision_sizes == (2, 3, 3, 2) * 4
    assert space.size == (2 * 3 * 3 * 2) ** 4
    assert [d.name for d in space.decisions()[:4]] == ["kernel", "expand", "layers", "se"]


@pytest.mark.parametrize("seed", range(6))
def test_every_sampled_architecture_builds_and_runs_on_32x32(seed):
    space = SearchSpace(widths=(0.75, 1.0, 1.25))  # with the optional width decision too
    choices = space.sample(torch.Generator().manual_seed(seed))
    model = build(space.decode(choices)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("choices", [[0, 0, 0, 0] * 4, [1, 2, 2, 1] * 4])
def test_the_smallest_and_largest_children_build_and_run(choices):
    model = build(SearchSpace().decode(choices)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_a_child_trains():
    model = build(SearchSpace().decode([0, 0, 0, 1] * 4))
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_decode_follows_the_choices():
    space = SearchSpace()
    choices = [1, 2, 1, 1, 0, 0, 0, 0, 1, 1, 2, 0, 0, 2, 0, 1]
    config = space.decode(choices)
    assert config.stem == "cifar" and config.num_classes == 10
    assert [(s.kernel_size, s.expand_ratio, s.repeats, s.se_ratio > 0) for s in config.stages] == [
        (5, 6, 2, True), (3, 1, 1, False), (5, 3, 3, False), (3, 6, 1, True)]
    assert space.describe(choices) == "k5 e6 x2 se | k3 e1 x1 | k5 e3 x3 | k3 e6 x1 se"
    model = build(config)
    assert [len(stage) for stage in model.stages] == [2, 1, 3, 1]
    se_blocks = [not isinstance(block.se, torch.nn.Identity) for stage in model.stages for block in stage]
    assert se_blocks == [True, True, False, False, False, False, True]


def test_width_decision_scales_the_stage_channels():
    space = SearchSpace(widths=(0.75, 1.0, 1.25))
    assert len(space.decisions()) == 20
    narrow = space.decode([0, 0, 0, 0, 0] * 4)
    wide = space.decode([0, 0, 0, 0, 2] * 4)
    # 0.75x and 1.25x of (16, 24, 40, 80), rounded as the core rounds widths: to a multiple of 8,
    # never more than 10% below (24 x 0.75 = 18 -> 16 is too far below -> 24).
    assert [s.channels for s in narrow.stages] == [16, 24, 32, 64]
    assert [s.channels for s in wide.stages] == [24, 32, 48, 104]


def test_measure_uses_the_core_counters():
    from effnet_lab.profile import count_macs, count_params

    config = SearchSpace().decode([1, 1, 1, 1] * 4)
    model = build(config)
    assert nas.measure(config) == (count_macs(model, 32), count_params(model))


# --- the controller and REINFORCE -----------------------------------------------------------


def test_controller_probabilities_are_valid():
    space = SearchSpace()
    controller = Controller(space.decision_sizes)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        sample = controller(generator=generator)
        assert len(sample.choices) == len(space.decision_sizes)
        for probs, n, choice in zip(sample.probs, space.decision_sizes, sample.choices):
            assert probs.shape == (n,)
            assert torch.all((probs >= 0) & (probs <= 1))
            assert torch.isclose(probs.sum(), torch.tensor(1.0), atol=1e-6)
            assert 0 <= choice < n
        expected = sum(math.log(p[c].item()) for p, c in zip(sample.probs, sample.choices))
        assert sample.log_prob.item() == pytest.approx(expected, abs=1e-5)
        # Scoring the sampled choices gives the same probability as sampling them did.
        assert controller(sample.choices).log_prob.item() == pytest.approx(sample.log_prob.item(), abs=1e-6)
        assert sample.entropy.item() > 0


def test_controller_conditions_later_decisions_on_earlier_ones():
    controller = Controller((3, 3))
    torch.nn.init.normal_(controller.embeddings[0].weight, std=2.0)
    second = [controller([first, 0]).probs[1] for first in range(3)]
    assert not torch.allclose(second[0], second[1])


def test_one_reinforce_step_raises_the_probability_of_a_rewarded_sequence():
    space = SearchSpace()
    policy = ControllerPolicy(space, seed=0)
    choices = policy.propose()
    before = policy.probabilities(choices)
    policy.trainer.baseline = 0.0  # reward 1 against baseline 0: advantage +1
    policy.update(choices, 1.0)
    assert policy.probabilities(choices) > before


def test_a_reward_below_the_baseline_lowers_the_probability():
    policy = ControllerPolicy(SearchSpace(), seed=1)
    choices = policy.propose()
    before = policy.probabilities(choices)
    policy.trainer.baseline = 1.0
    policy.update(choices, 0.2)
    assert policy.probabilities(choices) < before


def test_the_moving_average_baseline():
    trainer = ControllerPolicy(SearchSpace(), seed=0).trainer
    choices = [0] * 16
    first = trainer.step(choices, 0.5)
    assert first["advantage"] == 0.0 and trainer.baseline == 0.5  # the first reward sets it
    second = trainer.step(choices, 1.0)
    assert second["advantage"] == pytest.approx(0.5)
    assert trainer.baseline == pytest.approx(0.9 * 0.5 + 0.1 * 1.0)


def test_controller_finds_the_known_best_architecture_more_often_than_random_search():
    # Known answer: kernel 5 and expand ratio 6 in every stage (1 child in 6**4 = 1296 has
    # both; layers and SE do not matter). Same budget for both policies: 100 samples.
    seeds, budget = range(5), 100
    controller = success_rate("controller", seeds, budget)
    random = success_rate("random", seeds, budget)
    # Random search hits it with probability 1 - (1 - 1/1296)**100 = 7% per seed.
    assert sum(controller) >= 4
    assert sum(controller) >= sum(random) + 3


# --- the reward ----------------------------------------------------------------------


@pytest.mark.parametrize("accuracy, macs, target, w", [
    (0.8, 20e6, 10e6, -0.07), (0.8, 5e6, 10e6, -0.07), (0.9, 400e6, 400e6, -0.07),
    (0.5, 3e6, 25e6, -0.3), (0.7, 1e8, 25e6, 0.0),
])
def test_reward_matches_the_formula(accuracy, macs, target, w):
    expected = accuracy * (macs / target) ** w
    assert Reward(target, w)(accuracy, macs) == pytest.approx(expected, rel=1e-12)
    assert mnas_reward(accuracy, macs, target, w) == pytest.approx(expected, rel=1e-12)


def test_reward_details():
    reward = Reward(10e6, -0.07)
    assert reward(0.8, 10e6) == pytest.approx(0.8)  # at the target the reward is the accuracy
    assert reward(0.8, 20e6) < 0.8 < reward(0.8, 5e6)  # costlier children pay
    # Doubling the MACs must buy 2**0.07 - 1 = 5% relative accuracy to keep the reward.
    assert reward(0.8 * 2 ** 0.07, 20e6) == pytest.approx(reward(0.8, 10e6))
    # MnasNet's hard-ish constraint: free below T, punished above it.
    hard = Reward(10e6, w=0.0, w_above=-1.0)
    assert hard(0.8, 5e6) == pytest.approx(0.8)
    assert hard(0.8, 20e6) == pytest.approx(0.4)


def test_the_target_does_not_change_the_ranking_with_one_exponent():
    a, b = (0.80, 10e6), (0.84, 40e6)
    for target in (1e6, 25e6, 400e6):
        reward = Reward(target, -0.07)
        assert reward(*a) / reward(*b) == pytest.approx(Reward(25e6, -0.07)(*a) / Reward(25e6, -0.07)(*b))


# --- the cache, the log and resuming ------------------------------------------------------


def test_the_cache_prevents_retraining():
    evaluator = HashEvaluator()
    search = Search(tiny_space(), evaluator, "random", seed=0, verbose=False)
    records = search.run(12, progress=False)
    distinct = {r["arch"] for r in records}
    assert len(distinct) == 2  # 12 samples of a 2-child space
    assert evaluator.calls == 2
    assert sum(r["cached"] for r in records) == 10
    # A second policy sharing the cache trains nothing new either.
    Search(tiny_space(), evaluator, "controller", seed=0, cache=search.cache, verbose=False).run(6, progress=False)
    assert evaluator.calls == 2


def test_the_cache_file_is_shared_and_survives_a_restart(tmp_path):
    evaluator = HashEvaluator()
    Search(tiny_space(), evaluator, "random", seed=0, out=tmp_path, verbose=False).run(5, progress=False)
    # Another policy in the same folder, with a new cache object (as after a restart).
    Search(tiny_space(), evaluator, "controller", seed=0, out=tmp_path, verbose=False).run(5, progress=False)
    seen = {r["arch"] for p in ("random", "controller") for r in nas.read_log(tmp_path / f"{p}.jsonl")}
    assert evaluator.calls == len(seen)
    lines = nas.read_jsonl(tmp_path / "evaluations.jsonl")
    assert len(lines) == evaluator.calls
    # An evaluator with another signature does not reuse those numbers.
    cache = EvaluationCache(tmp_path / "evaluations.jsonl")
    _, cached = cache.evaluate(ProxyEvaluator(), tiny_space().decode([0]))
    assert not cached


@pytest.mark.parametrize("policy", ["controller", "random"])
def test_resume_after_an_interruption_gives_the_uninterrupted_log(tmp_path, policy):
    steps = 14
    whole = Search(SearchSpace(), HashEvaluator(), policy, seed=3, out=tmp_path / "whole", verbose=False)
    whole.run(steps, progress=False)

    # Interrupted while evaluating the 6th new child, then rerun.
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        Search(SearchSpace(), HashEvaluator(fail_at_call=6), policy, seed=3, out=out, verbose=False).run(steps, progress=False)
    logged = nas.read_log(out / f"{policy}.jsonl")
    assert 0 < len(logged) < steps
    resumed = Search(SearchSpace(), HashEvaluator(), policy, seed=3, out=out, verbose=False)
    assert resumed.step_count == len(logged)
    resumed.run(steps, progress=False)

    expected = stable(nas.read_log(tmp_path / "whole" / f"{policy}.jsonl"))
    assert stable(nas.read_log(out / f"{policy}.jsonl")) == expected
    assert [r["step"] for r in expected] == list(range(steps))


def test_resume_when_the_log_is_one_step_ahead_of_the_checkpoint(tmp_path, monkeypatch):
    steps = 8
    Search(SearchSpace(), HashEvaluator(), "controller", seed=1, out=tmp_path / "whole", verbose=False).run(steps, progress=False)

    out = tmp_path / "cut"
    real_save = nas.save_torch
    saves = {"n": 0}

    def crash_on_5th_save(path, state):
        saves["n"] += 1
        if saves["n"] == 5:  # the 5th step is logged, its checkpoint never written
            raise KeyboardInterrupt("simulated crash")
        real_save(path, state)

    monkeypatch.setattr(nas, "save_torch", crash_on_5th_save)
    with pytest.raises(KeyboardInterrupt):
        Search(SearchSpace(), HashEvaluator(), "controller", seed=1, out=out, verbose=False).run(steps, progress=False)
    monkeypatch.setattr(nas, "save_torch", real_save)
    assert len(nas.read_log(out / "controller.jsonl")) == 5
    # A half-written line at the end (a crash inside the write) is dropped on resume.
    with open(out / "controller.jsonl", "a") as f:
        f.write('{"step": 5, "polic')
    evaluator = HashEvaluator()
    Search(SearchSpace(), evaluator, "controller", seed=1, out=out, verbose=False).run(steps, progress=False)
    assert stable(nas.read_log(out / "controller.jsonl")) == stable(nas.read_log(tmp_path / "whole" / "controller.jsonl"))


def test_a_finished_search_is_not_repeated(tmp_path):
    evaluator = HashEvaluator()
    Search(SearchSpace(), evaluator, "random", seed=0, out=tmp_path, verbose=False).run(4, progress=False)
    calls = evaluator.calls
    search = Search(SearchSpace(), evaluator, "random", seed=0, out=tmp_path, verbose=False)
    assert len(search.run(4, progress=False)) == 4
    assert evaluator.calls == calls
    assert len(nas.read_log(tmp_path / "random.jsonl")) == 4


def test_resuming_with_other_settings_is_refused(tmp_path):
    Search(tiny_space(), HashEvaluator(), "random", seed=0, out=tmp_path, verbose=False).run(2, progress=False)
    with pytest.raises(ValueError, match="seed"):
        Search(tiny_space(), HashEvaluator(), "random", seed=1, out=tmp_path, verbose=False)
    with pytest.raises(ValueError, match="reward"):
        Search(tiny_space(), HashEvaluator(), "random", seed=0, reward=Reward(w=-0.2), out=tmp_path, verbose=False)


def test_log_records_hold_what_the_lesson_plots(tmp_path):
    search = Search(SearchSpace(), ProxyEvaluator(), "controller", seed=0, out=tmp_path, verbose=False)
    search.run(3, progress=False)
    record = nas.read_log(tmp_path / "controller.jsonl")[0]
    for name in ("step", "policy", "arch", "choices", "stages", "accuracy", "macs", "params", "reward",
                 "evaluator", "real_evaluation", "baseline", "advantage", "log_prob", "entropy"):
        assert name in record, name
    assert record["evaluator"] == "proxy" and record["real_evaluation"] is False
    assert record["reward"] == pytest.approx(Reward()(record["accuracy"], record["macs"]))
    settings = json.loads((tmp_path / "controller.json").read_text())
    assert settings["settings"]["evaluator"]["name"] == "proxy"
    assert "git_commit" in settings["provenance"] and "date" in settings["provenance"]


def test_the_proxy_says_it_is_not_a_real_evaluation(capsys):
    Search(SearchSpace(), ProxyEvaluator(), "random", seed=0)
    assert "NOT a real evaluation" in capsys.readouterr().out


def test_the_proxy_is_deterministic_and_prefers_compute_with_diminishing_returns():
    space, proxy = SearchSpace(), ProxyEvaluator()
    small, large = space.decode([0, 0, 0, 0] * 4), space.decode([1, 2, 2, 1] * 4)
    assert proxy(small) == proxy(small)
    assert 0.1 <= proxy(small)["accuracy"] < proxy(large)["accuracy"] <= 0.99


# --- results helpers, figures, exercises -------------------------------------------------------


def test_pareto_front_and_winners_by_w():
    records = [
        {"arch": "a", "accuracy": 0.70, "macs": 5e6},
        {"arch": "b", "accuracy": 0.80, "macs": 20e6},
        {"arch": "c", "accuracy": 0.75, "macs": 30e6},  # beaten by b on both
        {"arch": "d", "accuracy": 0.86, "macs": 80e6},
    ]
    assert [r["arch"] for r in pareto_front(records)] == ["a", "b", "d"]
    winners = dict((w, r["arch"]) for w, r in winners_by_w(records, [0.0, -0.07, -1.0], target_macs=20e6))
    assert winners[0.0] == "d"  # accuracy only
    assert winners[-1.0] == "a"  # cost dominates
    assert winners[-0.07] == "b"


def test_figures_are_made(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    logs = {p: Search(SearchSpace(), HashEvaluator(), p, seed=0, verbose=False).run(12, progress=False)
            for p in ("controller", "random")}
    for record in logs["controller"] + logs["random"]:
        record["accuracy"] = min(record["accuracy"], 0.99)
    paths = nas.save_figures(logs, tmp_path)
    assert [p.name for p in paths] == ["progress.png", "pareto.png", "winners_by_w.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    fig = nas.plot_reward_surface()
    assert len(fig.axes) >= 3
    import matplotlib.pyplot as plt

    plt.close("all")


# --- the command line ----------------------------------------------------------------------


def parse(argv):
    parser = argparse.ArgumentParser()
    nas.add_parser(parser.add_subparsers())
    return parser.parse_args(["nas", *argv])


def test_quick_search_from_the_command_line_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "quick"
    argv = ["--steps", "6", "--evaluator", "proxy", "--policy", "both", "--out", str(out), "--quick", "--no-plots"]
    assert parse(argv).run(parse(argv)) == 0
    printed = capsys.readouterr().out
    assert "NOT a real evaluation" in printed and "controller: 6/6 samples" in printed and "random: 6/6" in printed
    argv[1] = "8"
    args = parse(argv)
    args.run(args)
    assert [r["step"] for r in nas.read_log(out / "controller.jsonl")] == list(range(8))
    assert [r["step"] for r in nas.read_log(out / "random.jsonl")] == list(range(8))


def test_the_time_limit_stops_cleanly_and_a_rerun_continues(tmp_path):
    searches = [Search(SearchSpace(), HashEvaluator(), p, seed=0, out=tmp_path, verbose=False) for p in ("controller", "random")]
    import time

    assert nas.run_round_robin(searches, 10, deadline=time.monotonic(), progress=False) is False
    assert all(s.step_count == 0 for s in searches)
    assert nas.run_round_robin(searches, 3, progress=False) is True
    assert [s.step_count for s in searches] == [3, 3]


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(base=()), "empty"),
    (dict(kernel_sizes=()), "empty"),
    (dict(expand_ratios=()), "empty"),
    (dict(kernel_sizes=(3,), expand_ratios=(6,), layers=(2,), se=(True,)), "empty"),
    (dict(kernel_sizes=(3, 4)), "odd"),
    (dict(expand_ratios=(0.5, 6)), "expand_ratios"),
    (dict(layers=(0, 1)), "layers"),
    (dict(base=((16, 3),)), "stride"),
    (dict(widths=(0.0, 1.0)), "widths"),
    (dict(kernel_sizes=(3, 3)), "repeated"),
])
def test_bad_search_spaces(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SearchSpace(**kwargs)


@pytest.mark.parametrize("target", [0, -1.0, -25e6, math.nan, math.inf])
def test_target_of_zero_or_below_is_refused(target):
    with pytest.raises(ValueError, match="target_macs"):
        Reward(target_macs=target)


def test_bad_reward_inputs():
    with pytest.raises(TypeError, match="w"):
        Reward(w="-0.07")
    with pytest.raises(ValueError, match="accuracy"):
        Reward()(1.5, 10e6)
    with pytest.raises(ValueError, match="macs"):
        Reward()(0.8, 0)


@pytest.mark.parametrize("steps", [0, -3])
def test_a_budget_of_zero_or_below_is_refused(steps):
    with pytest.raises(ValueError, match="budget"):
        Search(SearchSpace(), HashEvaluator(), "random", verbose=False).run(steps, progress=False)
    with pytest.raises(ValueError, match="budget"):
        args = parse(["--steps", str(steps), "--no-plots"])
        args.run(args)


def test_bad_choices_policy_and_evaluator():
    space = SearchSpace()
    with pytest.raises(ValueError, match="16"):
        space.decode([0, 1])
    with pytest.raises(ValueError, match=r"choices\[1\]"):
        space.decode([0, 3] + [0] * 14)
    with pytest.raises(TypeError, match="choices"):
        space.decode("k5e6")
    with pytest.raises(ValueError, match="policy"):
        Search(space, HashEvaluator(), "evolution", verbose=False)
    with pytest.raises(ValueError, match="evaluator"):
        nas.make_evaluator("oracle")
    with pytest.raises(ValueError, match="empty"):
        Controller([])
    with pytest.raises(ValueError, match="time-limit"):
        args = parse(["--steps", "2", "--time-limit", "0", "--no-plots"])
        args.run(args)
