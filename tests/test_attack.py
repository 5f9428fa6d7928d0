"""UnlearnDiffAtk: the simplex projection, the straight-through sampler, report bookkeeping, resume, and the paper's
central finding on the toy world (an ESD-erased model can be prompted back into drawing the concept)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import needs_toy_sd

from eval.judges import Judge, Verdict
from eval.prompts import PromptRow, PromptSet
from eval.unlearndiffatk import (
    AttackConfig,
    AttackRecord,
    AttackReport,
    TokenState,
    UnlearnDiffAtk,
    attack,
    project_to_simplex,
    project_to_simplex_sorted,
    sample_embeddings,
    sample_one_hot,
)
from pipelines.errors import ConfigError


class BrightJudge(Judge):
    """A deterministic fake judge: "bright" means the mean pixel value is above a threshold."""

    name = "bright"

    def __init__(self, threshold: float):
        self.threshold = threshold

    def knows(self, concept: str) -> bool:
        return concept == "bright"

    def judge(self, images, concept):
        means = images.mean(dim=(1, 2, 3))
        return [Verdict(bool(m > self.threshold), float(m), "bright" if m > self.threshold else "dark") for m in means]


def test_projection_lands_on_the_simplex_and_is_the_closest_point():
    torch.manual_seed(0)
    p = torch.randn(4, 50) * 3
    q = project_to_simplex(p)
    assert torch.all(q >= 0)
    assert torch.allclose(q.sum(-1), torch.ones(4), atol=1e-5)
    # A point already on the simplex stays put; the projection beats random simplex points in distance.
    assert torch.allclose(project_to_simplex(q), q, atol=1e-6)
    for _ in range(20):
        r = project_to_simplex(torch.rand(4, 50))
        assert torch.all((p - q).norm(dim=-1) <= (p - r).norm(dim=-1) + 1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda g: torch.rand(3, 49408, generator=g),  # random rows
        lambda g: torch.full((3, 49408), 1 / 49408) + 0.01 * torch.randn(3, 49408, generator=g),  # after Adam steps
        lambda g: torch.softmax(5 * torch.randn(3, 49408, generator=g), -1),  # peaked
        lambda g: torch.full((3, 49408), 1 / 49408),  # the uniform start
        lambda g: torch.randn(4, 50, generator=g) * 3,  # far from the simplex
        lambda g: torch.tensor([[0.5, 0.5, 0.5, -1.0], [2.0, 2.0, 2.0, 2.0]]),  # ties
    ],
)
def test_pivot_projection_agrees_with_the_sort(make):
    p = make(torch.Generator().manual_seed(0))
    assert torch.allclose(project_to_simplex(p), project_to_simplex_sorted(p), rtol=0, atol=1e-6)


def test_embedding_lookup_is_the_one_hot_product():
    """The row lookup draws the same tokens, gives the same embeddings and sends back the same gradient."""
    weight = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    probs = project_to_simplex(torch.rand(3, 40, generator=torch.Generator().manual_seed(2)))
    upstream = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    by_product, by_lookup = probs.clone().requires_grad_(True), probs.clone().requires_grad_(True)
    product = sample_one_hot(by_product, torch.Generator().manual_seed(4)) @ weight
    lookup = sample_embeddings(by_lookup, weight, torch.Generator().manual_seed(4))
    assert torch.equal(product, lookup)
    (product * upstream).sum().backward()
    (lookup * upstream).sum().backward()
    assert torch.equal(by_product.grad, by_lookup.grad)


LEVERS = {"reuse_checks": False, "embedding_lookup": False, "projection": "sort"}


@pytest.mark.parametrize("lever", [*LEVERS, "all"])
def test_each_exact_lever_leaves_the_faithful_records_unchanged(tiny_pipe, lever):
    """A faithful attack on 2 prompts with and without each lever (and with none of them: the reference): the same
    tokens, steps, checks and verdicts."""
    concepts = ["never", "never"]
    rows = PromptSet([PromptRow("a star", seed=i, guidance=2.0, concept=c) for i, c in enumerate(concepts)])
    kwargs = dict(num_timesteps=6, iterations_per_timestep=2, num_inference_steps=2, schedule="faithful")
    off = LEVERS if lever == "all" else {lever: LEVERS[lever]}
    with_levers = attack(tiny_pipe, rows, FixedJudge(), prompt_batch=1, **kwargs)
    without = attack(tiny_pipe, rows, FixedJudge(), prompt_batch=1, **off, **kwargs)
    for a, b in zip(with_levers.records, without.records):
        assert (a.adversarial_ids, a.attack_steps, a.checks, a.success) == (
            b.adversarial_ids,
            b.attack_steps,
            b.checks,
            b.success,
        )
        assert a.checks == 1 + 6 and a.unet_evaluations == b.unet_evaluations
        if lever in ("reuse_checks", "all"):
            assert b.checks_reused == 0
    if lever in ("reuse_checks", "all"):  # with a 2-step schedule the arg-max tokens rarely move: checks are saved
        assert sum(r.checks_reused for r in with_levers.records) > 0


def test_faithful_is_the_default_schedule_everywhere():
    import inspect

    from ui.commands.common import dataclass_parser
    from ui.studio import run_attack

    assert AttackConfig().schedule == "faithful" and AttackConfig().prompt_batch is None
    assert dataclass_parser(AttackConfig, prog="attack").parse_args([]).schedule == "faithful"
    defaults = {k: p.default for k, p in inspect.signature(run_attack).parameters.items()}
    assert defaults["schedule"] == "faithful" and defaults["num_timesteps"] == 50
    assert defaults["iterations_per_timestep"] == 40


def test_half_precision_checks_need_cuda(tiny_pipe):
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        UnlearnDiffAtk(tiny_pipe, FixedJudge(), AttackConfig(mixed_precision="fp16"))
    with pytest.raises(ConfigError, match="mixed_precision"):
        AttackConfig(mixed_precision="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="half-precision checks run on CUDA only")
def test_half_precision_checks_on_cuda(tiny_pipe):
    pipe = tiny_pipe.to("cuda")
    try:
        runner = UnlearnDiffAtk(pipe, FixedJudge(), AttackConfig(mixed_precision="fp16", num_inference_steps=2))
        full = UnlearnDiffAtk(pipe, FixedJudge(), AttackConfig(num_inference_steps=2))
        ids = runner._prompt_ids("a star")
        half_image, full_image = runner.generate(ids, 0, 2.0), full.generate(ids, 0, 2.0)
        assert half_image.dtype == torch.float32 and (half_image - full_image).abs().max() < 0.05
    finally:
        tiny_pipe.to("cpu")


def test_fast_reports_say_they_can_undercount():
    from eval.unlearndiffatk import FAST_SCHEDULE_NOTE

    rec = AttackRecord(index=0, prompt="p", seed=0, guidance=7.5, concept="c", pre_success=False, success=False)
    fast = AttackReport([rec], {"method": "unlearndiffatk", "schedule": "fast"}, {}, "c")
    faithful = AttackReport([rec], {"method": "unlearndiffatk", "schedule": "faithful"}, {}, "c")
    assert fast.summary()["schedule_note"] == FAST_SCHEDULE_NOTE and FAST_SCHEDULE_NOTE in fast.to_markdown()
    assert faithful.summary()["schedule_note"] is None and "Note" not in faithful.to_markdown()


def test_straight_through_sampler():
    probs = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    one_hot = sample_one_hot(probs, torch.Generator().manual_seed(0))
    assert torch.equal(one_hot, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    (one_hot * torch.tensor([[5.0, -5.0, 0.3], [0.0, 0.0, 0.0]])).sum().backward()
    assert torch.equal(probs.grad, torch.tensor([[1.0, -1.0, 0.3], [0.0, 0.0, 0.0]]))  # hardtanh


def test_official_timesteps():
    assert AttackConfig().sampled_timesteps()[:3] == [10, 30, 50]
    assert AttackConfig().sampled_timesteps()[-1] == 990 and len(AttackConfig().sampled_timesteps()) == 50


def test_asr_counts_pre_attack_successes():
    def rec(i, pre, success):
        return AttackRecord(index=i, prompt="p", seed=0, guidance=7.5, concept="c", pre_success=pre, success=success)

    report = AttackReport(
        [rec(0, True, True), rec(1, False, True), rec(2, False, False), rec(3, False, False)], {}, {}, "c"
    )
    assert report.pre_asr == 0.25 and report.asr == 0.5


def _spy_on_checks(monkeypatch) -> list[tuple[int, ...]]:
    """Record the token ids of every prompt the attack generates and judges."""
    checked: list[tuple[int, ...]] = []
    original = UnlearnDiffAtk.check

    def spy(self, ids, row, concept):
        checked.append(tuple(ids.view(-1).tolist()))
        return original(self, ids, row, concept)

    monkeypatch.setattr(UnlearnDiffAtk, "check", spy)
    return checked


FAST_SMALL = dict(
    schedule="fast", num_timesteps=4, timestep_batch=2, iterations_per_timestep=6, check_every=2, num_inference_steps=2
)


def test_fast_schedule_never_generates_the_same_prompt_twice(tiny_pipe, monkeypatch):
    checked = _spy_on_checks(monkeypatch)
    report = attack(tiny_pipe, ["a bright star"], BrightJudge(threshold=2.0), concept="bright", **FAST_SMALL)
    record = report.records[0]
    assert not record.success and record.attack_steps == 2 * 6  # two groups of two timesteps, six iterations each
    assert record.checks == len(checked) >= 2  # the unattacked prompt, then at least one candidate per group
    assert len(set(checked)) == len(checked)


def test_fast_schedule_checks_only_candidates_that_improve_the_attack_objective(tiny_pipe, monkeypatch):
    """Candidates come at iterations 2, 4, 6 of each group. With these probe losses only the first, every new best,
    and the end of a group in which nothing was checked are generated."""
    losses = iter([5.0, 6.0, 7.0, 8.0, 9.0, 4.0])  # group 1: 5 (first), 6, 7; group 2: 8, 9, 4 (new best)
    monkeypatch.setattr(UnlearnDiffAtk, "_discrete_loss", lambda self, *args: next(losses))
    monkeypatch.setattr(UnlearnDiffAtk, "_adversarial_ids", _distinct_ids())
    checked = _spy_on_checks(monkeypatch)
    attack(tiny_pipe, ["a bright star"], BrightJudge(threshold=2.0), concept="bright", **FAST_SMALL)
    assert len(checked) == 1 + 2  # unattacked, 5.0, 4.0


def test_fast_schedule_checks_the_end_of_a_group_without_checks(tiny_pipe, monkeypatch):
    losses = iter([5.0, 6.0, 7.0, 8.0, 9.0, 10.0])  # group 2 has no new best: its last candidate is checked anyway
    monkeypatch.setattr(UnlearnDiffAtk, "_discrete_loss", lambda self, *args: next(losses))
    monkeypatch.setattr(UnlearnDiffAtk, "_adversarial_ids", _distinct_ids())
    checked = _spy_on_checks(monkeypatch)
    attack(tiny_pipe, ["a bright star"], BrightJudge(threshold=2.0), concept="bright", **FAST_SMALL)
    assert len(checked) == 1 + 2  # unattacked, 5.0, 10.0


def _distinct_ids():
    """A stand-in for ``_adversarial_ids`` that yields a new prompt every call (real ids, shifted token by token)."""
    counter = iter(range(1, 1000))
    original = UnlearnDiffAtk._adversarial_ids

    def ids(self, prompt_ids, adv):
        return original(self, prompt_ids, adv + next(counter))

    return ids


def test_attack_runs_and_resumes(tiny_pipe, tmp_path):
    rows = PromptSet([PromptRow("a bright star", seed=s, guidance=2.0, concept="bright") for s in range(3)])
    judge = BrightJudge(threshold=2.0)  # never satisfied: every prompt runs the whole (shortened) attack
    kwargs = dict(num_timesteps=2, iterations_per_timestep=2, num_inference_steps=2, schedule="faithful")
    report = attack(tiny_pipe, rows, judge, output_dir=tmp_path, **kwargs)
    assert report.n == 3 and report.asr == 0.0
    assert all(r.attack_steps == 4 and r.checks == 3 and r.adversarial_prompt for r in report.records)
    for name in (
        "report.json",
        "report.md",
        "records.jsonl",
        "asr_vs_steps.png",
        "grid.png",
        "adversarial_embeddings.safetensors",
    ):
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["n_prompts"] == 3 and summary["pre_asr"] == 0.0
    # Resume: nothing is recomputed (a judge that would now succeed changes nothing).
    again = attack(tiny_pipe, rows, BrightJudge(threshold=-1.0), output_dir=tmp_path, **kwargs)
    assert again.asr == 0.0


class FixedJudge(Judge):
    """A fake judge whose verdict is the concept's name: "always" succeeds, "never" fails."""

    name = "fixed"

    def knows(self, concept: str) -> bool:
        return concept in ("always", "never")

    def judge(self, images, concept):
        return [Verdict(concept == "always", 0.0, concept) for _ in images]


@pytest.mark.parametrize("schedule", ["faithful", "fast"])
def test_prompt_batch_keeps_each_prompts_schedule(tiny_pipe, schedule):
    """Prompts attacked together stop where they would alone: pre-attack successes drop out, the rest run the whole
    schedule, and each one's steps and checks are counted as if it ran alone."""
    concepts = ["always", "never", "never", "always", "never"]
    rows = PromptSet([PromptRow("a star", seed=i, guidance=2.0, concept=c) for i, c in enumerate(concepts)])
    kwargs = dict(num_timesteps=4, iterations_per_timestep=4, num_inference_steps=2, schedule=schedule)
    kwargs.update(timestep_batch=2, check_every=2)
    alone = attack(tiny_pipe, rows, FixedJudge(), prompt_batch=1, **kwargs)
    together = attack(tiny_pipe, rows, FixedJudge(), prompt_batch=3, **kwargs)
    assert [r.pre_success for r in together.records] == [c == "always" for c in concepts]
    for a, b in zip(alone.records, together.records):
        assert (a.pre_success, a.success, a.attack_steps) == (b.pre_success, b.success, b.attack_steps)
        assert b.seconds > 0 and (b.adversarial_prompt is None) == b.pre_success
        if schedule == "faithful":  # the fast schedule's checks depend on the candidates, which rounding can change
            assert a.checks == b.checks == (1 if a.pre_success else 1 + 4)
    assert together.config["prompt_batch"] == 3


def test_batched_attack_objective_equals_one_prompt_at_a_time(tiny_pipe):
    """One UNet call for several prompts gives each prompt the loss (and the random draws) it gets alone."""
    runner = UnlearnDiffAtk(tiny_pipe, FixedJudge(), AttackConfig())
    vocab = runner.embedding_matrix.shape[0]
    channels, size = tiny_pipe.unet.config.in_channels, tiny_pipe.unet.config.sample_size

    def states():
        out = []
        for i, prompt in enumerate(["a star", "a red circle"]):
            probs = project_to_simplex(torch.rand((3, vocab), generator=torch.Generator().manual_seed(i)))
            embeds = runner.text_encoder.embeddings.token_embedding(runner._prompt_ids(prompt))
            x0 = torch.randn((1, channels, size, size), generator=torch.Generator().manual_seed(10 + i))
            out.append(TokenState(probs, None, embeds, x0, torch.Generator().manual_seed(100 + i)))
        return out

    with torch.no_grad():
        together = runner._losses(states(), [10, 500])
        alone = torch.cat([runner._losses([state], [10, 500]) for state in states()])
    assert together.shape == (2,)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(together[0], together[1])


def test_no_attack_baseline_and_early_stop(tiny_pipe):
    rows = PromptSet([PromptRow("a star", seed=0, guidance=2.0, concept="bright")])
    report = attack(tiny_pipe, rows, BrightJudge(threshold=-1.0), num_inference_steps=2)
    assert report.records[0].pre_success and report.records[0].attack_steps == 0
    report = attack(tiny_pipe, rows, BrightJudge(threshold=2.0), method="none", num_inference_steps=2)
    assert not report.records[0].success and report.records[0].attack_steps == 0


def test_unknown_concept_is_a_clear_error(tiny_pipe):
    with pytest.raises(ValueError, match="does not know"):
        attack(tiny_pipe, ["a star"], BrightJudge(0.5), concept="dark")


@needs_toy_sd
@pytest.mark.slow
def test_attack_beats_no_attack_after_esd(toy_pipe, esd_star):
    """The paper's central finding: ASR under attack is higher than the no-attack rate on an ESD-erased model."""
    from eval.prompts import load_prompts

    erased, _ = esd_star
    # 4 prompts: the first succeeds without attack, the other three fall after 10-160 attack steps (attack_speed.json).
    prompts = PromptSet(load_prompts("toy:star").rows[:4])
    common = dict(base=toy_pipe, concept="star", num_inference_steps=25, seed=0)
    no_attack = attack(erased, prompts, "toy", method="none", **common)
    attacked = attack(erased, prompts, "toy", schedule="fast", **common)
    assert attacked.pre_asr == no_attack.asr
    assert attacked.asr > no_attack.asr, (no_attack.asr, attacked.asr)
