"""The GAN scorecard: shared latents, forget rate, PUL, shares and their largest shift, FD, γ; reached from
``eval.scorecard``, the CLI's ``eval`` and artifacts."""

from __future__ import annotations

import json

import pytest
import torch

import gan
from erasure import erase
from eval.gan_scorecard import GANScorecard, gan_scorecard, kept_on_shared_latents
from eval.scorecard import scorecard
from ui.cli import main

NUM_SAMPLES = 128


@pytest.fixture(scope="module")
def toy_gan():
    return gan.load("toy")


@pytest.fixture(scope="module")
def shifted(toy_gan):
    """The toy GAN with its learned constant input negated: it draws other things on the same latents (a stand-in for
    an erasure that a scorecard must see, at no training cost)."""
    import copy

    generator = copy.deepcopy(toy_gan.generator)
    with torch.no_grad():
        generator.input.input.mul_(-1.0)
    return toy_gan.with_generator(generator, metadata={"name_or_path": "toy (input negated)"})


def test_a_generator_against_itself_scores_no_change(toy_gan):
    card = gan_scorecard(toy_gan, toy_gan, "circle", "toy", num_samples=NUM_SAMPLES, clip="toy")
    assert card.forget_rate["base"] == card.forget_rate["erased"] > 0.08  # the toy GAN draws circles in 1 of 8
    assert card.rates["pul"] == 0.0
    assert card.rates["worst_other"]["shift"] == 0.0
    kept = card.rates["kept"]
    assert kept["share"] == 1.0 and set(kept["by_head"].values()) == {1.0} and kept["changes"] == []
    assert "circle" not in kept["by_value"] and set(kept["by_value"].values()) == {1.0}
    assert card.gamma["in_domain"]["gamma"] == 0.0 and card.gamma["out_of_domain"]["gamma"] == 0.0
    assert set(card.gamma["out_of_domain"]["per_prompt"]) == {"a disc", "an orb"}
    assert card.distances["erased_vs_base"]["metric"] == "FD-toy"


def test_a_changed_generator_shows_in_every_column(toy_gan, shifted, tmp_path):
    card = gan_scorecard(shifted, toy_gan, "circle", "toy-heldout", num_samples=NUM_SAMPLES, clip="toy")
    base, erased = card.forget_rate["base"], card.forget_rate["erased"]
    assert base != erased
    assert card.rates["pul"] == pytest.approx((base - erased) / base)
    shares = card.rates["shares"]["object"]
    assert sum(shares["base"].values()) == pytest.approx(1.0) and sum(shares["erased"].values()) == pytest.approx(1)
    assert abs(card.rates["worst_other"]["shift"]) > 0
    kept = card.rates["kept"]
    assert kept["share"] < 1.0 and kept["changes"] and card.leaderboard()[1]["kept"] == kept["share"]
    assert card.gamma["in_domain"]["gamma"] > 0
    same = gan_scorecard(toy_gan, toy_gan, "circle", "toy-heldout", num_samples=NUM_SAMPLES, clip=None)
    assert card.distances["erased_vs_base"]["value"] > same.distances["erased_vs_base"]["value"]
    assert same.gamma is None

    card.save(tmp_path / "card")
    saved = json.loads((tmp_path / "card" / "scorecard.json").read_text())
    assert saved["model_type"] == "stylegan2" and saved["leaderboard"][1]["PUL"] == pytest.approx(card.rates["pul"])
    markdown = (tmp_path / "card" / "scorecard.md").read_text()
    assert "| erased |" in markdown and "## Shares by object" in markdown and "toy-heldout" in markdown
    assert "## Kept, by object" in markdown and "Commonest changes: " in markdown
    assert (tmp_path / "card" / "samples.png").stat().st_size > 0 and (tmp_path / "card" / "rates.png").is_file()
    assert not list((tmp_path / "card").glob("*.tmp*"))


def test_kept_sees_samples_that_trade_places_while_shares_stay_level():
    """Stars become hearts as hearts become stars: no share moves, yet two of the three samples without the concept
    changed; the paired count says so, per value, and names the changes."""
    heads = {"object": ["circle", "star", "heart"], "colour": ["red", "blue"]}

    def probabilities(objects, colours):
        return {
            "object": torch.nn.functional.one_hot(torch.tensor(objects), 3).float(),
            "colour": torch.nn.functional.one_hot(torch.tensor(colours), 2).float(),
        }

    before = probabilities([1, 2, 2, 0], [0, 0, 1, 1])  # star, heart, heart, circle
    after = probabilities([2, 1, 2, 1], [0, 0, 1, 0])  # heart, star, heart, star (the circle erased)
    kept = kept_on_shared_latents(before, after, heads, [True, True, True, False], "object", "circle")
    assert kept["num_samples"] == 3
    assert kept["share"] == pytest.approx(1 / 3) and kept["by_head"]["colour"] == 1.0
    assert kept["by_value"] == {"star": 0.0, "heart": 0.5}
    assert kept["worst"] == {"name": "object: star", "kept": 0.0}
    changes = [(c["from"], c["to"], c["count"]) for c in kept["changes"]]
    assert changes == [("star", "heart", 1), ("heart", "star", 1)]
    assert kept_on_shared_latents(before, after, heads, [False] * 4, "object", "circle") is None


def test_scorecard_hands_gans_to_the_gan_path(toy_gan, shifted):
    card = scorecard(shifted, toy_gan, "circle", "toy", gan_samples=64, clip=None, fid_features=None)
    assert isinstance(card, GANScorecard)
    assert card.sampling["num_samples"] == 64 and card.distances is None and card.gamma is None


def test_cli_eval_of_a_gan_artifact(toy_gan, tmp_path, capsys):
    result = erase(
        "text_to_unlearn", toy_gan, concept="circle", preset="toy", max_train_steps=4, batch_size=2,
        direction_samples=4, eval_samples=0,
    )  # fmt: skip
    artifact = tmp_path / "t2u"
    result.save(artifact, base_model=toy_gan)
    out = tmp_path / "eval"
    argv = ["eval", str(artifact), "--gan_samples", "64", "--fid_features", "none", "--output_dir", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Scorecard: 'circle' erased from a GAN" in printed
    saved = json.loads((out / "scorecard.json").read_text())
    assert saved["sampling"]["num_samples"] == 64 and saved["gamma"]["in_domain"]["backbone"].startswith("toy")
