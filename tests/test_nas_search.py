"""The search of lesson 01: controller, REINFORCE, random search, cache, log, resume, results."""

import json
import math
import time

import pytest
import torch

from effnet_lab import nas
from effnet_lab.nas import (
    Controller,
    ControllerPolicy,
    EvaluationCache,
    ProxyEvaluator,
    Reward,
    Search,
    SearchSpace,
    pareto_front,
    success_rate,
    winners_by_w,
)
from nas_helpers import HashEvaluator, parse, stable, tiny_space

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread


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
    real_save = nas.search.save_torch
    saves = {"n": 0}

    def crash_on_5th_save(path, state):
        saves["n"] += 1
        if saves["n"] == 5:  # the 5th step is logged, its checkpoint never written
            raise KeyboardInterrupt("simulated crash")
        real_save(path, state)

    monkeypatch.setattr(nas.search, "save_torch", crash_on_5th_save)
    with pytest.raises(KeyboardInterrupt):
        Search(SearchSpace(), HashEvaluator(), "controller", seed=1, out=out, verbose=False).run(steps, progress=False)
    monkeypatch.setattr(nas.search, "save_torch", real_save)
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


# --- results helpers -------------------------------------------------------------------------


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


def test_the_time_limit_stops_cleanly_and_a_rerun_continues(tmp_path):
    searches = [Search(SearchSpace(), HashEvaluator(), p, seed=0, out=tmp_path, verbose=False) for p in ("controller", "random")]
    assert nas.run_round_robin(searches, 10, deadline=time.monotonic(), progress=False) is False
    assert all(s.step_count == 0 for s in searches)
    assert nas.run_round_robin(searches, 3, progress=False) is True
    assert [s.step_count for s in searches] == [3, 3]


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, -3])
def test_a_budget_of_zero_or_below_is_refused(steps):
    with pytest.raises(ValueError, match="budget"):
        Search(SearchSpace(), HashEvaluator(), "random", verbose=False).run(steps, progress=False)
    with pytest.raises(ValueError, match="budget"):
        args = parse(["--steps", str(steps), "--no-plots"])
        args.run(args)


def test_bad_policy_and_controller():
    with pytest.raises(ValueError, match="policy"):
        Search(SearchSpace(), HashEvaluator(), "evolution", verbose=False)
    with pytest.raises(ValueError, match="empty"):
        Controller([])
