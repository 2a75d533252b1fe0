"""The search loop of lesson 01: a policy proposes, an evaluator scores, the reward teaches.

``Controller`` is an LSTM that samples a child's decisions one at a time, each conditioned
on the previous one; ``Reinforce`` trains it with the policy gradient and a moving-average
baseline. ``RandomPolicy`` is the baseline that learns nothing. ``Search`` runs one policy
for a budget of samples, with a JSON-lines log of every sampled child and a checkpoint after
every step, so an interrupted search continues where it stopped; evaluations are cached by
architecture, so no child is trained twice. ``run_round_robin`` lets several policies take
turns on the same budget; ``pareto_front``, ``winners_by_w`` and ``success_rate`` read the
results.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from ..checks import check_choice, check_int, check_number
from ..files import append_jsonl, read_jsonl, save_torch, write_json
from .evaluate import PROXY_WARNING, EvaluationCache, KnownAnswerEvaluator, ProxyEvaluator
from .space import DEFAULT_TARGET_MACS, Reward, SearchSpace

# --- the policies: the LSTM controller trained with REINFORCE, and random search -----------


@dataclass
class ControllerSample:
    choices: tuple[int, ...]
    log_prob: torch.Tensor  # log P(choices): the sum over decisions
    entropy: torch.Tensor  # summed entropy of each decision's distribution
    probs: list[torch.Tensor]  # each decision's distribution (for plots and tests)


class Controller(nn.Module):
    """An LSTM that writes an architecture one decision at a time (Zoph & Le 2017, ENAS).

    Step i: the cell reads an embedding of decision i-1's answer (a learned start vector
    for the first), and a small linear head per decision turns its state into the logits of
    decision i. Because the state carries over, later answers can depend on earlier ones.

    ``logit_bound`` c squashes the logits to c * tanh(z / c), as ENAS does (Pham et al.
    2018): no option's probability can reach zero, so a controller that committed early to
    a wrong answer still samples the alternative now and then, and can change its mind.
    """

    def __init__(self, decision_sizes: Sequence[int], hidden_size: int = 64, logit_bound: float | None = 2.5) -> None:
        super().__init__()
        if not decision_sizes:
            raise ValueError("the search space is empty: the controller needs at least one decision")
        self.decision_sizes = tuple(check_int("decision size", n, minimum=1) for n in decision_sizes)
        hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.logit_bound = None if logit_bound is None else check_number("logit_bound", logit_bound, exclusive_minimum=0.0)
        self.start = nn.Parameter(torch.zeros(1, hidden_size))
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden_size) for n in self.decision_sizes)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in self.decision_sizes)
        # Small weights, as in ENAS: the first policy is close to uniform, so early samples
        # explore the whole space.
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -0.1, 0.1)

    def forward(self, choices: Sequence[int] | None = None, generator: torch.Generator | None = None) -> ControllerSample:
        """Sample an architecture, or (with ``choices``) score a given one."""
        if choices is not None and len(choices) != len(self.decision_sizes):
            raise ValueError(f"choices must hold {len(self.decision_sizes)} integers, got {len(choices)}")
        hidden = torch.zeros_like(self.start)
        state = (hidden, hidden)
        x = self.start
        chosen, log_probs, entropies, all_probs = [], [], [], []
        for i, head in enumerate(self.heads):
            state = self.cell(x, state)
            logits = head(state[0])[0]
            if self.logit_bound is not None:
                logits = self.logit_bound * torch.tanh(logits / self.logit_bound)
            log_p = torch.log_softmax(logits, dim=0)  # log-probabilities of the options
            probs = log_p.exp()
            if choices is None:
                choice = int(torch.multinomial(probs.detach(), 1, generator=generator))
            else:
                choice = int(choices[i])
            chosen.append(choice)
            log_probs.append(log_p[choice])
            entropies.append(-(probs * log_p).sum())
            all_probs.append(probs)
            x = self.embeddings[i](torch.tensor([choice]))
        return ControllerSample(tuple(chosen), torch.stack(log_probs).sum(), torch.stack(entropies).sum(), all_probs)


class Reinforce:
    """REINFORCE (Williams 1992) with a moving-average baseline and an entropy bonus.

    loss = -(R - b) * log P(choices) - entropy_weight * H;   b <- decay * b + (1 - decay) * R

    The baseline b is the recent average reward: children better than usual (R > b) have
    their decisions made more likely, worse ones less likely. The first reward sets b.
    """

    def __init__(self, controller: Controller, lr: float = 0.005, baseline_decay: float = 0.9, entropy_weight: float = 0.0):
        self.controller = controller
        self.lr = check_number("lr", lr, exclusive_minimum=0.0)
        self.baseline_decay = check_number("baseline_decay", baseline_decay, minimum=0.0)
        if self.baseline_decay >= 1.0:
            raise ValueError(f"baseline_decay must be below 1, got {baseline_decay}")
        self.entropy_weight = check_number("entropy_weight", entropy_weight, minimum=0.0)
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=self.lr)
        self.baseline: float | None = None

    def step(self, choices: Sequence[int], reward: float) -> dict:
        reward = check_number("reward", reward)
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        sample = self.controller(choices)
        loss = -advantage * sample.log_prob - self.entropy_weight * sample.entropy
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        return {"advantage": advantage, "baseline": self.baseline, "log_prob": sample.log_prob.item(),
                "entropy": sample.entropy.item()}

    def state_dict(self) -> dict:
        return {"controller": self.controller.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]


@dataclass(frozen=True)
class ControllerSettings:
    hidden_size: int = 64
    logit_bound: float | None = 2.5
    lr: float = 0.005
    baseline_decay: float = 0.9
    entropy_weight: float = 0.0


class ControllerPolicy:
    """Proposes with the LSTM controller and learns from each reward."""

    name = "controller"

    def __init__(self, space: SearchSpace, seed: int = 0, settings: ControllerSettings = ControllerSettings()):
        with torch.random.fork_rng(devices=[]):  # seed the initial weights, leave the global RNG alone
            torch.manual_seed(seed)
            self.controller = Controller(space.decision_sizes, settings.hidden_size, settings.logit_bound)
        self.trainer = Reinforce(self.controller, settings.lr, settings.baseline_decay, settings.entropy_weight)
        self.generator = torch.Generator().manual_seed(seed)

    def propose(self) -> tuple[int, ...]:
        with torch.no_grad():
            return self.controller(generator=self.generator).choices

    def update(self, choices: Sequence[int], reward: float) -> dict:
        return self.trainer.step(choices, reward)

    def probabilities(self, choices: Sequence[int]) -> float:
        """P(choices) under the current policy."""
        with torch.no_grad():
            return float(self.controller(choices).log_prob.exp())

    def state_dict(self) -> dict:
        return {**self.trainer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)
        self.generator.set_state(state["generator"])


class RandomPolicy:
    """The baseline: every decision uniformly at random, learning nothing."""

    name = "random"

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        self.generator = torch.Generator().manual_seed(seed)

    def propose(self) -> tuple[int, ...]:
        return self.space.sample(self.generator)

    def update(self, choices: Sequence[int], reward: float) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


POLICIES = ("controller", "random")


def make_policy(name: str, space: SearchSpace, seed: int = 0, settings: ControllerSettings = ControllerSettings()):
    check_choice("policy", name, POLICIES)
    return ControllerPolicy(space, seed, settings) if name == "controller" else RandomPolicy(space, seed)


# --- the search: log, checkpoint, resume -------------------------------------------------


def _provenance(evaluator, command: list[str] | None = None) -> dict:
    from .. import __version__
    from ..settings import data_source, default_device, device_name, git_commit

    return {
        "command": " ".join(command) if command else None,
        "device": device_name(default_device()) if getattr(evaluator, "real", False) else "cpu",
        "data_source": (getattr(evaluator, "data_source", None) or data_source()) if getattr(evaluator, "real", False) else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "effnet_lab_version": __version__,
        "torch": torch.__version__,
    }


class Search:
    """One search: a policy proposes, the evaluator scores, the reward teaches the policy.

    With ``out``, every sampled child is appended to ``out/<policy>.jsonl`` and the
    policy's state is saved to ``out/<policy>.pt`` after every step; a new ``Search`` on the
    same folder continues from there (settings must match). Evaluations go to
    ``out/evaluations.jsonl``, shared by the policies searching in that folder.

    The budget is counted in samples: each policy gets the same number of proposals. A
    proposal of a child seen before costs no training (the cache) but uses up a sample.
    """

    def __init__(self, space: SearchSpace | None = None, evaluator=None, policy: str = "controller", *,
                 reward: Reward = Reward(), seed: int = 0, controller: ControllerSettings = ControllerSettings(),
                 out: str | Path | None = None, cache: EvaluationCache | None = None, verbose: bool = True,
                 command: Sequence[str] | None = None):
        self.space = space if space is not None else SearchSpace()
        if not isinstance(self.space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace, got {type(self.space).__name__}")
        self.evaluator = evaluator if evaluator is not None else ProxyEvaluator()
        if not isinstance(reward, Reward):
            raise TypeError(f"reward must be a Reward, got {type(reward).__name__}")
        self.reward = reward
        self.seed = check_int("seed", seed)
        self.policy = make_policy(policy, self.space, self.seed, controller)
        self.settings = {
            "policy": policy, "seed": self.seed, "space": self.space.to_dict(), "reward": asdict(reward),
            "controller": asdict(controller) if policy == "controller" else None,
            "evaluator": self.evaluator.signature(),
        }
        self.out = Path(out) if out is not None else None
        self.command = list(command) if command else None
        self.records: list[dict] = []
        self._replay: list[dict] = []  # logged steps whose policy update the checkpoint lacks
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            self.cache = cache if cache is not None else EvaluationCache(self.out / "evaluations.jsonl")
            self._resume()
        else:
            self.cache = cache if cache is not None else EvaluationCache()
        if verbose and not getattr(self.evaluator, "real", False):
            print(PROXY_WARNING if isinstance(self.evaluator, ProxyEvaluator) else
                  f"{self.evaluator.name} evaluator: a synthetic score, NOT a real evaluation.")

    # files
    @property
    def log_path(self) -> Path:
        return self.out / f"{self.policy.name}.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.out / f"{self.policy.name}.pt"

    @property
    def settings_path(self) -> Path:
        return self.out / f"{self.policy.name}.json"

    def _resume(self) -> None:
        if self.settings_path.exists():
            saved = json.loads(self.settings_path.read_text())
            differing = sorted(k for k in self.settings if saved.get("settings", {}).get(k) != self.settings[k])
            if differing:
                raise ValueError(
                    f"{self.out} holds a {self.policy.name} search with other settings ({', '.join(differing)}); "
                    "use another --out folder, or the same settings to continue it"
                )
        else:
            write_json(self.settings_path, {"settings": self.settings, "provenance": _provenance(self.evaluator, self.command)})
        logged = read_jsonl(self.log_path, repair=True)
        done = 0
        if self.checkpoint_path.exists():
            state = torch.load(self.checkpoint_path, weights_only=True)
            self.policy.load_state_dict(state["policy"])
            done = state["step"]
        # The log is written before the checkpoint, so it may be one step ahead: that step
        # is replayed (same proposal, logged evaluation) without logging it again.
        if not done <= len(logged) <= done + 1:
            raise ValueError(
                f"{self.log_path} holds {len(logged)} steps but the checkpoint {self.checkpoint_path} is at step {done}: "
                "they do not belong together; start in a new folder"
            )
        self.records = logged[:done]
        self._replay = logged[done:]

    @property
    def step_count(self) -> int:
        return len(self.records)

    def step(self) -> dict:
        """Propose one child, evaluate it (or reuse its evaluation), learn from its reward."""
        step = self.step_count
        choices = self.policy.propose()
        config = self.space.decode(choices)
        if self._replay:
            record = self._replay.pop(0)
            if tuple(record["choices"]) != choices:
                raise RuntimeError(f"{self.log_path}: step {step} does not match the checkpoint; start in a new folder")
            self.policy.update(choices, record["reward"])
        else:
            evaluation, cached = self.cache.evaluate(self.evaluator, config)
            reward = self.reward(evaluation["accuracy"], evaluation["macs"])
            update = self.policy.update(choices, reward)
            record = {
                "step": step, "policy": self.policy.name, "arch": self.space.describe(choices), "choices": list(choices),
                "stages": self.space.stages(choices),
                "accuracy": evaluation["accuracy"], "macs": evaluation["macs"], "params": evaluation["params"],
                "reward": reward, "evaluator": self.evaluator.name, "real_evaluation": bool(getattr(self.evaluator, "real", False)),
                "cached": cached, "eval_seconds": evaluation.get("eval_seconds"),
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **update,
            }
            # What else the evaluator reported (a real one: training time, device, data copy).
            record.update({k: v for k, v in evaluation.items() if k not in record})
            if self.out is not None:
                append_jsonl(self.log_path, record)
        self.records.append(record)
        if self.out is not None:
            save_torch(self.checkpoint_path, {"step": self.step_count, "policy": self.policy.state_dict()})
        return record

    def run(self, steps: int, *, deadline: float | None = None, progress: bool = True) -> list[dict]:
        """Search until ``steps`` samples have been taken in total (a rerun continues)."""
        run_round_robin([self], steps, deadline=deadline, progress=progress)
        return self.records

    def best(self) -> dict | None:
        return max(self.records, key=lambda r: r["reward"], default=None)


def run_round_robin(searches: Sequence[Search], steps: int, *, deadline: float | None = None, progress: bool = True) -> bool:
    """Step several searches in turn (one sample each) until each has ``steps`` samples.

    With ``deadline`` (a ``time.monotonic()`` value) no new step starts after it: the
    searches stop cleanly and a rerun continues them. Returns True when all finished.
    """
    steps = check_int("steps (the search budget)", steps, minimum=1)
    remaining = sum(max(0, steps - s.step_count) for s in searches)
    bar = _progress(remaining, progress, "NAS: " + " + ".join(s.policy.name for s in searches))
    try:
        while any(s.step_count < steps for s in searches):
            for search in searches:
                if search.step_count >= steps:
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                record = search.step()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{record['policy']} reward {record['reward']:.3f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return True


def _progress(total: int, enabled: bool, description: str):
    if not enabled or total == 0:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description)


def read_log(path: str | Path) -> list[dict]:
    """The records of a search log (``out/<policy>.jsonl``), in step order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no search log at {path}")
    return read_jsonl(path)


def pareto_front(records: Iterable[dict]) -> list[dict]:
    """Children that no other child beats on both accuracy (higher) and MACs (lower)."""
    unique = {r["arch"]: r for r in records}.values()
    front, best_accuracy = [], -1.0
    for record in sorted(unique, key=lambda r: (r["macs"], -r["accuracy"])):
        if record["accuracy"] > best_accuracy:
            front.append(record)
            best_accuracy = record["accuracy"]
    return front


def winners_by_w(records: Iterable[dict], ws: Iterable[float], target_macs: float = DEFAULT_TARGET_MACS) -> list[tuple[float, dict]]:
    """For each exponent w, the child with the highest reward among ``records``."""
    unique = list({r["arch"]: r for r in records}.values())
    if not unique:
        raise ValueError("records is empty: run a search first")
    return [(w, max(unique, key=lambda r: Reward(target_macs, w)(r["accuracy"], r["macs"]))) for w in ws]


def success_rate(policy: str, seeds: Iterable[int], steps: int, space: SearchSpace | None = None,
                 evaluator: KnownAnswerEvaluator | None = None, controller: ControllerSettings = ControllerSettings()) -> list[bool]:
    """On a known-answer problem: per seed, did the policy sample the best child within ``steps``?"""
    space = space if space is not None else SearchSpace()
    evaluator = evaluator if evaluator is not None else KnownAnswerEvaluator()
    outcomes = []
    for seed in seeds:
        search = Search(space, evaluator, policy, seed=seed, controller=controller, reward=Reward(w=0.0), verbose=False)
        found = False
        for _ in range(steps):
            record = search.step()
            if evaluator.is_best(space.decode(record["choices"])):
                found = True
                break
        outcomes.append(found)
    return outcomes

