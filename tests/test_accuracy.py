"""UA / IRA / CRA: hand-computed values on a fixture, label parsing, and the judge and pipeline plumbing."""

from __future__ import annotations

import pytest
import torch

from eval.accuracy import (
    Prediction,
    accuracy_from_pipeline,
    judge_predictions,
    toy_labelled_prompts,
    toy_labels,
    ua_ira_cra,
)
from eval.judges import Judge, Verdict
from pipelines.errors import ConfigError


def fixture_predictions() -> list[Prediction]:
    """Erasing the object "star". Hand-computed below."""
    p = Prediction
    return [
        # star prompts (4): the judge sees star once -> UA = 3/4
        p("object", "star", "star"),
        p("object", "star", "circle"),
        p("object", "star", "circle"),
        p("object", "star", "square"),
        # other objects: circle 2/2 = 1.0, square 3/4 = 0.75 -> IRA = (1.0 + 0.75) / 2 = 0.875 (per-image: 5/6)
        p("object", "circle", "circle"),
        p("object", "circle", "circle"),
        p("object", "square", "square"),
        p("object", "square", "star"),
        p("object", "square", "square"),
        p("object", "square", "square"),
        # colours of the same images: red 2/3, blue 1/1 -> CRA = (2/3 + 1) / 2 = 5/6 (per-judgement: 3/4)
        p("colour", "red", "red"),
        p("colour", "red", "red"),
        p("colour", "red", "blue"),
        p("colour", "blue", "blue"),
    ]


def test_ua_ira_cra_equal_hand_computed_values():
    result = ua_ira_cra(fixture_predictions(), "star", "object")
    assert result.ua == pytest.approx(0.75)
    assert result.ira == pytest.approx(0.875)
    assert result.cra == pytest.approx(5 / 6)
    assert result.counts == {"UA": 4, "IRA": 6, "CRA": 4}
    assert result.per_concept["object"] == pytest.approx({"star": 0.25, "circle": 1.0, "square": 0.75})
    assert result.per_concept["colour"] == pytest.approx({"red": 2 / 3, "blue": 1.0})
    assert result.to_dict()["ua"] == pytest.approx(0.75)


def test_the_erased_kind_decides_which_records_are_in_domain():
    """Erasing the colour "red" from the same records: UA and IRA come from colours, CRA from objects."""
    result = ua_ira_cra(fixture_predictions(), "red", "colour")
    assert result.ua == pytest.approx(1 / 3)
    assert result.ira == pytest.approx(1.0)
    assert result.cra == pytest.approx((0.25 + 1.0 + 0.75) / 3)


def test_metrics_without_records_are_none_and_no_records_is_an_error():
    objects_only = [p for p in fixture_predictions() if p.kind == "object"]
    assert ua_ira_cra(objects_only, "star", "object").cra is None
    assert ua_ira_cra(objects_only, "heart", "object").ua is None
    assert ua_ira_cra([Prediction("object", "star", "star")], "star", "object").ira is None
    with pytest.raises(ConfigError):
        ua_ira_cra([], "star", "object")


def test_toy_labels_read_synonyms_plurals_and_multi_word_names():
    assert toy_labels("a hollow red moon") == {"style": "outline", "colour": "red", "object": "crescent"}
    assert toy_labels("a plus sign") == {"object": "cross"}
    assert toy_labels("Two purple pentagrams on a white background") == {"colour": "purple", "object": "star"}
    assert toy_labels("a photo of a dog") == {}


def test_toy_labelled_prompts_follow_the_rates_grid():
    from eval.rates import toy_prompt_sets

    labelled = toy_labelled_prompts("pentagram")
    grid = toy_prompt_sets("star")
    assert [p for p, _ in labelled] == [p for prompts in grid.values() for p in prompts]
    assert labelled[0][1] == {"object": "circle", "colour": "red"}
    assert sum(lab["object"] == "star" for _, lab in labelled) == len(grid["star"])


class ThresholdJudge(Judge):
    """A judge of made-up concepts: "bright" when the mean pixel is above 0.5, "dark" otherwise."""

    name = "threshold"

    def knows(self, concept: str) -> bool:
        return concept in ("bright", "dark")

    def judge(self, images: torch.Tensor, concept: str) -> list[Verdict]:
        verdicts = []
        for mean in images.mean(dim=(1, 2, 3)).tolist():
            seen = "bright" if mean > 0.5 else "dark"
            verdicts.append(Verdict(success=seen == concept, score=mean, label=seen))
        return verdicts


def test_judge_predictions_ask_the_judge_per_label():
    images = torch.stack([torch.full((3, 4, 4), v) for v in (0.9, 0.8, 0.1, 0.7)])
    labels = [{"tone": "bright"}, {"tone": "bright"}, {"tone": "bright"}, {"tone": "dark"}]
    predictions = judge_predictions(images, labels, ThresholdJudge())
    assert sorted((p.target, p.predicted) for p in predictions) == [
        ("bright", "bright"),
        ("bright", "bright"),
        ("bright", "dark"),
        ("dark", "bright"),
    ]
    result = ua_ira_cra(predictions, "bright", "tone")
    assert result.ua == pytest.approx(1 / 3) and result.ira == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="labels for every image"):
        judge_predictions(images, labels[:2], ThresholdJudge())


class ObjectBlindJudge(Judge):
    """Sees a star in every image and every colour it is asked about: UA 0, IRA 0, CRA 1 by construction."""

    name = "object-blind"

    def knows(self, concept: str) -> bool:
        return True

    def judge(self, images: torch.Tensor, concept: str) -> list[Verdict]:
        from pipelines.toy.world import COLOURS

        label = concept if concept in COLOURS else "star"
        return [Verdict(success=label == concept, score=1.0, label=label) for _ in range(len(images))]


def test_accuracy_from_pipeline_generates_judges_and_aggregates(tiny_pipe):
    result = accuracy_from_pipeline(tiny_pipe, "star", ObjectBlindJudge(), num_inference_steps=2)
    assert (result.ua, result.ira, result.cra) == (0.0, 0.0, 1.0)
    assert result.counts == {"UA": 6, "IRA": 42, "CRA": 48}  # 8 objects x 6 colours, one seed
    assert result.kind == "object" and result.concept == "star"
