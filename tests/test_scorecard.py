"""The scorecard: numbers consistent with the metric modules, every output written, and the eval command."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from torch import nn

from eval.judges import Judge, Verdict, register_judge
from eval.scorecard import LEADERBOARD_COLUMNS, Scorecard, read_attack_report, scorecard
from pipelines.errors import ConfigError
from ui.cli import main

FORGET = ["a bright sunny beach", "a white snowy field"]
PARAPHRASES = ["a luminous scene", "a glowing room"]
RETAIN = {"dark": ["a night sky", "a dark cave"]}
UTILITY = ["a cup of tea", "a red bicycle", "a quiet street"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ThresholdJudge(Judge):
    """A judge of two made-up concepts: "bright" when the mean pixel is above the median level, "dark" otherwise."""

    name = "test-threshold"
    level = 0.5

    def knows(self, concept: str) -> bool:
        return concept in ("bright", "dark")

    def judge(self, images: torch.Tensor, concept: str) -> list[Verdict]:
        out = []
        for mean in images.mean(dim=(1, 2, 3)).tolist():
            seen = "bright" if mean > self.level else "dark"
            out.append(Verdict(success=seen == concept, score=mean, label=seen))
        return out


@pytest.fixture(autouse=True, scope="module")
def threshold_judge():
    """Registers the made-up judge for this module only, so other modules see the stock registry."""
    register_judge("test-threshold")(ThresholdJudge)
    yield
    judges = importlib.import_module("eval.judges")
    judges._JUDGES.pop("test-threshold", None)
    judges._CACHE.pop("test-threshold", None)


class MeanColourFeatures(nn.Module):
    """A cheap 6-d feature extractor (per-channel mean and standard deviation)."""

    num_features = 6

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)


@pytest.fixture(scope="module")
def tiny_clip_backbone(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from eval.clip_score import ClipBackbone
    from pipelines.toy.models import write_clip_tokenizer

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path_factory.mktemp("clip-tokenizer")))
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, **small
        ),
        vision_config=dict(image_size=32, patch_size=8, **small),
        projection_dim=16,
    )
    torch.manual_seed(0)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    return ClipBackbone.from_transformers(CLIPModel(config), processor, "tiny-random-clip")


@pytest.fixture(scope="module")
def tiny_card(tiny_pipe, other_tiny_pipe, tiny_clip_backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("scorecard")
    card = scorecard(
        other_tiny_pipe,
        tiny_pipe,
        "bright",
        ThresholdJudge(),
        prompts=FORGET,
        paraphrases=PARAPHRASES,
        retain=RETAIN,
        clip=tiny_clip_backbone,
        fid_features=MeanColourFeatures(),
        reference_images=torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
        utility_prompts=UTILITY,
        attack_report={"pre_asr": 0.25, "asr": 0.75, "concept": "bright", "n_prompts": 4},
        seeds=2,
        num_inference_steps=2,
        output_dir=out,
    )
    return card, out


def test_scorecard_rates_agree_with_concept_rates_and_accuracies(tiny_card, tiny_pipe, other_tiny_pipe):
    from eval.rates import concept_rates

    card, _ = tiny_card
    sets = {"bright": FORGET, **RETAIN}
    for role, pipe in (("base", tiny_pipe), ("erased", other_tiny_pipe)):
        expected = concept_rates(pipe, sets, ThresholdJudge(), seeds=2, num_inference_steps=2)["rates"]
        para = concept_rates(pipe, {"bright": PARAPHRASES}, ThresholdJudge(), seeds=2, num_inference_steps=2)
        assert card.rates["forget"][role] == pytest.approx(expected["bright"])
        assert card.rates["retain"]["dark"][role] == pytest.approx(expected["dark"])
        assert card.rates["paraphrases"][0][role] == pytest.approx(para["rates"]["bright"])
        # UA is the share of forget samples the judge does not see the concept in; IRA the retain accuracy.
        assert card.accuracy[role]["ua"] == pytest.approx(1 - expected["bright"])
        assert card.accuracy[role]["ira"] == pytest.approx(expected["dark"])
        assert card.accuracy[role]["cra"] is None  # no labels in another domain
    assert card.rates["forget"]["samples"] == 4 and card.rates["retain"]["dark"]["samples"] == 4
    assert card.sampling["num_inference_steps"] == 2 and card.sampling["guidance_scale"] == 7.5
    assert card.sampling["scheduler"] == "DDIMScheduler" and card.sampling["seeds"] == 2


def test_scorecard_leaderboard_clip_distances_and_attack(tiny_card):
    card, _ = tiny_card
    base_row, erased_row = card.leaderboard()
    assert erased_row["pre-ASR"] == 0.25 and erased_row["ASR"] == 0.75
    assert base_row["pre-ASR"] is None and base_row["ASR"] is None
    assert erased_row["FID"] == card.distances["erased_vs_reference"]["value"]
    assert base_row["FID"] == card.distances["base_vs_reference"]["value"]
    assert erased_row["CLIP"] == card.clip["erased"]["advunlearn"]["value"]
    assert card.clip["erased"]["torchmetrics"]["backbone"] == "tiny-random-clip"
    assert card.clip["erased"]["advunlearn"]["num_samples"] == len(UTILITY)
    distance = card.distances["erased_vs_base"]
    assert distance["metric"] == "FD-MeanColourFeatures" and distance["feature_dim"] == 6
    assert (distance["num_real"], distance["num_fake"]) == (len(UTILITY), len(UTILITY))
    assert card.distances["erased_vs_reference"]["num_real"] == 6


def test_scorecard_markdown_json_and_files(tiny_card):
    card, out = tiny_card
    markdown = card.to_markdown()
    assert "| model | pre-ASR | ASR | FID | CLIP | UA | IRA | CRA |" in markdown
    assert markdown.index("| model | pre-ASR") < markdown.index("### Definitions")
    for column in LEADERBOARD_COLUMNS:
        assert f"- **{column}**:" in markdown
    assert "FD-MeanColourFeatures" in markdown and "NOT comparable with published FID" in markdown
    assert "25.0%" in markdown and "75.0%" in markdown
    data = json.loads(card.to_json())
    assert "samples" not in data
    assert data["leaderboard"][1]["ASR"] == 0.75 and set(data["definitions"]) == set(LEADERBOARD_COLUMNS)
    for name in ("scorecard.json", "scorecard.md"):
        assert (out / name).read_text()
    assert Scorecard.load(out).to_markdown() == markdown
    for name in ("samples.png", "rates.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    from PIL import Image

    grid = Image.open(out / "samples.png")
    assert grid.width > grid.height  # rows: 2 forget, 1 paraphrase, 1 retain prompt; columns: 2 seeds x 2 models


def test_read_attack_report_accepts_dicts_files_folders_percentages_and_objects(tmp_path):
    assert read_attack_report(None) is None
    assert read_attack_report({"pre_asr": 0.1, "asr": 0.4}) == {"pre_asr": 0.1, "asr": 0.4}
    assert read_attack_report({"summary": {"pre_asr": 10, "asr": 40}}) == {"pre_asr": 0.1, "asr": 0.4}
    folder = tmp_path / "attack"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"pre_asr": 0.2, "asr": 0.6, "concept": "star", "n_prompts": 5}))
    from_folder = read_attack_report(folder)
    assert from_folder["asr"] == 0.6 and from_folder["n_prompts"] == 5
    assert from_folder["source"] == str(folder / "report.json")
    assert read_attack_report(folder / "report.json")["pre_asr"] == 0.2

    class Report:
        def summary(self):
            return {"pre_asr": 0.5, "asr": 1.0, "attack": "unlearndiffatk"}

    assert read_attack_report(Report()) == {"pre_asr": 0.5, "asr": 1.0, "attack": "unlearndiffatk"}
    with pytest.raises(ConfigError, match="lacks the keys"):
        read_attack_report({"asr": 0.5})
    with pytest.raises(ConfigError, match="does not exist"):
        read_attack_report(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_attack_report(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="not a rate"):
        read_attack_report({"pre_asr": -1, "asr": 0.5})


def test_bad_input_fails_before_any_sampling(tmp_path):
    never_used = object()  # sampling from it would crash: the checks must come first
    with pytest.raises(ConfigError, match="does not exist"):
        scorecard(never_used, never_used, "bright", ThresholdJudge(), attack_report=tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="does not know"):
        scorecard(never_used, never_used, "purple", ThresholdJudge())
    with pytest.raises(ConfigError, match="seeds"):
        scorecard(never_used, never_used, "bright", ThresholdJudge(), seeds=0)


def test_prompt_sets_are_checked_before_the_metric_networks_load(monkeypatch):
    import importlib

    def must_not_load(*args, **kwargs):
        raise AssertionError("a metric network loaded before the prompt sets were checked")

    # The modules, not the functions of the same name that ``eval`` exports.
    monkeypatch.setattr(importlib.import_module("eval.clip_score"), "load_clip", must_not_load)
    monkeypatch.setattr(importlib.import_module("eval.fid"), "load_feature_extractor", must_not_load)
    never_used = object()
    with pytest.raises(ConfigError, match="at least one prompt"):
        scorecard(never_used, never_used, "bright", ThresholdJudge(), prompts=[], clip="toy", fid_features="toy")
    with pytest.raises(ConfigError, match="give prompts"):
        scorecard(never_used, never_used, "bright", ThresholdJudge(), clip="toy", fid_features="toy")


def test_non_toy_concepts_need_prompts_and_existing_files(tmp_path):
    never_used = object()
    judge = ThresholdJudge()
    with pytest.raises(ConfigError, match="give prompts"):
        scorecard(never_used, never_used, "bright", judge, clip=None, fid_features=None)
    with pytest.raises(ConfigError, match="retain lists the erased concept"):
        scorecard(
            never_used,
            never_used,
            "bright",
            judge,
            prompts=FORGET,
            retain={"bright": FORGET},
            clip=None,
            fid_features=None,
        )
    with pytest.raises(ConfigError, match="no prompt set"):
        scorecard(
            never_used,
            never_used,
            "bright",
            judge,
            prompts=FORGET,
            clip=None,
            fid_features=MeanColourFeatures(),
            utility_prompts=tmp_path / "x.csv",
        )


def test_eval_command_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "no-such-model")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("erasure-studio: error:") and "--concept" in err and "\n" not in err
    assert main(["eval"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model" in err


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory, tiny_pipe):
    """A one-step ESD artifact of the tiny pipeline, saved without a sample grid; its base saved as a folder."""
    import erasure

    base = tmp_path_factory.mktemp("models") / "tiny-sd"
    tiny_pipe.save_pretrained(base)
    result = erasure.erase("esd", tiny_pipe, concept="bright", max_train_steps=1, num_inference_steps=4)
    return result.save(tmp_path_factory.mktemp("runs") / "esd-bright"), base


def test_eval_command_writes_a_scorecard_for_an_artifact(tiny_artifact, tmp_path, capsys):
    artifact, base = tiny_artifact
    (tmp_path / "forget.csv").write_text("prompt\n" + "\n".join(FORGET) + "\n")
    (tmp_path / "retain.csv").write_text("concept,prompt\n" + "\n".join(f"dark,{p}" for p in RETAIN["dark"]) + "\n")
    (tmp_path / "captions.csv").write_text(
        "prompt,evaluation_seed\n" + "\n".join(f"{p},{i}" for i, p in enumerate(UTILITY))
    )
    (tmp_path / "attack.json").write_text(json.dumps({"pre_asr": 0.0, "asr": 0.5}))
    out = tmp_path / "scorecard"
    argv = (
        f"eval {artifact} --base {base} --judge test-threshold --prompts {tmp_path / 'forget.csv'} "
        f"--retain {tmp_path / 'retain.csv'} --captions {tmp_path / 'captions.csv'} --clip none --fid_features none "
        f"--seeds 1 --num_inference_steps 2 --attack_report {tmp_path / 'attack.json'} --output_dir {out} --device cpu"
    )
    code = main(argv.split())
    assert code == 0
    printed = capsys.readouterr().out
    assert "| model | pre-ASR | ASR | FID | CLIP | UA | IRA | CRA |" in printed
    data = json.loads((out / "scorecard.json").read_text())
    assert data["concept"] == "bright" and data["attack"]["asr"] == 0.5
    assert "esd" in data["models"]["erased"]
    assert data["rates"]["forget"]["samples"] == len(FORGET)
    assert (out / "samples.png").exists() and (out / "rates.png").exists()


@pytest.mark.slow
def test_scorecard_esd_toy_artifact(tmp_path, esd_star):
    _, artifact = esd_star
    # The default 2 seeds (12 star samples): the toy ESD preset leaves about a fifth of the stars (toy_quality.json).
    card = scorecard(str(artifact), None, "star", "toy", output_dir=tmp_path / "eval", seeds=2)
    assert card.forget_rate["base"] >= 0.7
    assert card.forget_rate["erased"] <= 0.5 * card.forget_rate["base"]
    assert card.accuracy["erased"]["ua"] > card.accuracy["base"]["ua"]
    assert card.rates["paraphrases"] and card.clip and card.distances["erased_vs_reference"]["metric"] == "FD-toy"
    assert (tmp_path / "eval" / "scorecard.md").exists()
