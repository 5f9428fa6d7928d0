"""The studio (ui/app.py, ui/studio.py, ui/widgets.py): its handlers called directly on the tiny pipeline, bad
input, and one in-process server.

Everything runs on ``pipelines.tiny.tiny_sd(0)`` with a pixel-statistics judge, at 2 sampler steps, so the suite needs
neither the toy weights nor a browser. The browser test is tests/test_browser.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import socket
import sys
import typing
import zipfile

import pytest
import torch

gr = pytest.importorskip("gradio")

from doubles import tiny_bundle  # noqa: E402

import erasure  # noqa: E402
from eval.judges import Judge, Verdict  # noqa: E402
from pipelines.toy.world import compare_prompts, concept_kind, preview_prompts, prompt_role  # noqa: E402
from ui import app, widgets  # noqa: E402
from ui import studio as handlers  # noqa: E402
from ui.cli import main  # noqa: E402
from ui.commands import demo as demo_command  # noqa: E402

STEPS = 2  # sampler steps of every preview and comparison


class RednessJudge(Judge):
    """Knows the toy world's concepts; "sees" a concept where red outweighs blue by more than ``threshold``."""

    name = "redness"

    def __init__(self, threshold: float = 0.0):
        self.threshold = threshold

    def knows(self, concept: str) -> bool:
        return concept_kind(concept) is not None

    def judge(self, images, concept):
        redness = (images[:, 0] - images[:, 2]).mean(dim=(1, 2))
        return [
            Verdict(bool(r > self.threshold), 1 / (1 + math.exp(-10 * r)), concept if r > self.threshold else "other")
            for r in redness.tolist()
        ]


class ProgressRecorder:
    """Stands in for ``gr.Progress``: records every call."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, value, desc=None, total=None, unit="steps"):
        self.calls.append((value, desc))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and where another job keeps a core busy two threads were
    measured 100x slower (OpenMP waiting on the busy core); restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def demo(tiny_pipe, tmp_path_factory):
    built = app.build_demo(
        model=tiny_pipe,
        judge=RednessJudge(),
        output_dir=tmp_path_factory.mktemp("runs"),
        num_inference_steps=STEPS,
        seeds=(0,),
        save_samples=False,
    )
    yield built
    built.close()


@pytest.fixture(scope="module")
def studio(demo) -> handlers.Studio:
    return demo.studio


@pytest.fixture(scope="module")
def erased(studio, tiny_pipe):
    """A session after a 2-step ESD erasure of 'star', with the updates it yielded, the progress calls and the base
    UNet's weights from before the run."""
    base_unet = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}
    session = handlers.Session()
    progress = ProgressRecorder()
    updates = list(
        handlers.run_erase(studio, session, "tiny-random-sd-0", "esd", "star", {"max_train_steps": 2}, progress)
    )
    return session, updates, progress, base_unet


def _message(excinfo) -> str:
    return str(excinfo.value)


# ---------------------------------------------------------------- settings and methods


def test_every_method_gets_controls_from_its_config_dataclass(demo):
    rendered = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    for name in erasure.list_methods():
        cls = erasure.get_config_class(name)
        specs = widgets.setting_specs(name)
        assert [s.name for s in specs] == [f.name for f in dataclasses.fields(cls) if f.name != "concept"]
        by_name = {s.name: s for s in specs}
        for field_name, value in cls.presets.get("toy", {}).items():
            assert by_name[field_name].value == value, (name, field_name)  # controls start from the toy preset
        assert all(s.help == cls.help()[s.name] for s in specs)
        key = [s.name for s in specs if s.key]
        assert {"max_train_steps", "learning_rate", "seed"} <= set(key) and 3 <= len(key) <= 6
        assert len(key) < len(specs)  # the rest sit under "Advanced"
        assert all(f"setting-{name}-{s.name}" in rendered for s in specs)
        method = erasure.get_method_class(name)
        summary = widgets.method_summary(name)
        assert method.summary in summary and method.paper in summary

    esd = {s.name: s for s in widgets.setting_specs("esd")}
    hints = typing.get_type_hints(erasure.get_config_class("esd"))
    assert esd["train_method"].kind == "choice"
    assert esd["train_method"].choices == typing.get_args(hints["train_method"])
    assert esd["max_train_steps"].kind == "int" and esd["negative_guidance"].kind == "float"
    assert esd["gradient_checkpointing"].kind == "bool" and not esd["gradient_checkpointing"].key
    assert esd["erase_from"].kind == "text" and esd["erase_from"].optional


def test_control_values_convert_to_config_values_or_name_the_field():
    specs = {s.name: s for s in widgets.setting_specs("esd")}
    layout = [("esd", s) for s in specs.values()]
    values = [widgets.format_setting(s) for s in specs.values()]
    settings = handlers.settings_from_controls(layout, "esd", values)
    erasure.make_config("esd", concept="star", **settings)  # the starting values make a valid config
    assert settings["erase_from"] is None
    assert settings["max_train_steps"] == erasure.get_config_class("esd").presets["toy"]["max_train_steps"]
    assert widgets.convert_setting(specs["max_train_steps"], 7.0) == 7
    with pytest.raises(erasure.base.ConfigError, match="max_train_steps must be a whole number"):
        widgets.convert_setting(specs["max_train_steps"], 2.5)
    with pytest.raises(erasure.base.ConfigError, match="learning_rate is empty"):
        widgets.convert_setting(specs["learning_rate"], None)
    with pytest.raises(erasure.base.ConfigError, match="train_method='esd-z' is not allowed"):
        widgets.convert_setting(specs["train_method"], "esd-z")
    layers = {s.name: s for s in widgets.setting_specs("advunlearn")}["layers"]
    assert layers.kind == "int_list" and widgets.convert_setting(layers, "0, 1 3") == [0, 1, 3]
    with pytest.raises(gr.Error, match="learning_rate is empty"):
        handlers.settings_from_controls(
            layout, "esd", [None if s.name == "learning_rate" else v for s, v in zip(specs.values(), values)]
        )


def test_picking_a_gan_method_switches_the_model_box_and_warns_when_the_toy_gan_is_missing(studio):
    summary, model, notice = handlers.on_method_change(studio, "adapt_then_unlearn", "tiny-random-sd-0")
    atu = erasure.get_method_class("adapt_then_unlearn")
    assert atu.summary in summary and atu.paper in summary and "GAN" in summary
    assert model == "toy"
    if not handlers.toy_is_built("gan"):
        assert "toy build --stages gan" in notice
    _, model, notice = handlers.on_method_change(studio, "esd", "toy")
    assert model == "tiny-random-sd-0" and notice == ""
    _, model, _ = handlers.on_method_change(studio, "esd", "/my/own/sd")  # a typed path is never overwritten
    assert model == "/my/own/sd"


def test_compare_prompts_hold_the_concept_its_paraphrases_and_other_concepts():
    prompts = compare_prompts("star")
    roles = [prompt_role(p, "star") for p in prompts]
    assert ("concept", "star") in roles and ("paraphrase", "star") in roles
    assert {judged for role, judged in roles if role == "other"} == {"circle", "square", "triangle"}
    assert prompt_role("two plus signs", "cross") == ("paraphrase", "cross")
    assert preview_prompts("star") == ["a red star", "a red pentagram", "a green circle", "a blue square"]
    assert prompt_role("a photo of Van Gogh", "Van Gogh") == ("concept", "Van Gogh")


# ---------------------------------------------------------------- the handlers on the tiny pipeline


def test_erase_two_steps_shows_progress_loss_before_and_after(erased, tiny_pipe):
    session, updates, progress, base_unet = erased
    first, last = updates[0], updates[-1]
    assert first.before is not None and first.after is None and first.loss is None  # base preview, then training
    assert "Done" in last.status and "esd" in last.status and str(session.artifact_dir) in last.status
    assert list(last.loss["step"]) == [1, 2] and set(last.loss["series"]) == {"loss"}
    assert last.before.size == last.after.size
    assert (2, 2) in [call[0] for call in progress.calls]  # callback(step, total, logs) -> gr.Progress
    assert (session.artifact_dir / "erasure.json").is_file()
    assert session.method == "esd" and session.concept == "star" and session.base is tiny_pipe
    # A real effect: the trained cross-attention weights moved, the base pipeline did not.
    key = session.result.trained_keys["unet"][0]
    assert not torch.equal(session.erased.unet.state_dict()[key], tiny_pipe.unet.state_dict()[key])
    assert session.erased.unet is not tiny_pipe.unet and session.erased.text_encoder is tiny_pipe.text_encoder
    assert all(torch.equal(v, base_unet[k]) for k, v in tiny_pipe.unet.state_dict().items())


def test_compare_puts_base_and_erased_side_by_side_with_verdicts(studio, erased):
    session = erased[0]
    update = handlers.run_compare(studio, session, "", "0 1", ProgressRecorder())
    table = update.table
    assert list(table["prompt"]) == compare_prompts("star")
    assert {"concept", "paraphrase", "other"} == set(table["role"])
    assert all(cell.endswith("/2") for cell in table["base: shows it"])
    width, height = update.grid.size
    assert width >= 4 * 96 and height >= 6 * 96  # 6 prompts are rows; 2 base then 2 erased seeds are columns
    custom = handlers.run_compare(studio, session, "a red star\n\na blue heart", "3", None)
    assert list(custom.table["prompt"]) == ["a red star", "a blue heart"]
    assert list(custom.table["judged for"]) == ["star", "heart"]


def test_attack_with_a_tiny_schedule_reports_the_adversarial_prompt(studio, erased, monkeypatch):
    session = erased[0]
    monkeypatch.setattr(studio, "_judge", RednessJudge(threshold=2.0))  # never satisfied: the attack runs fully
    update = handlers.run_attack(studio, session, "a red star", 0, 2.0, 2, 2, 2, "fast", ProgressRecorder())
    record = session.attack_report.records[0]
    assert "Attack failed" in update.status and "| attacked |" in update.status
    assert update.adversarial_prompt == record.adversarial_prompt
    assert update.adversarial_prompt.endswith("a red star") and update.adversarial_prompt != "a red star"
    # 2 timesteps in one call x 2 iterations, plus one 2-timestep probe of the one candidate the fast schedule checks
    assert record.attack_steps == 2 and record.unet_evaluations == 2 * 2 + 2
    assert update.original_image.size == update.attacked_image.size and update.original_image.width >= 128
    assert session.attack_report.asr == 0.0


def test_score_shows_the_scorecard_or_says_it_is_missing(studio, erased, monkeypatch):
    session = erased[0]
    monkeypatch.setitem(sys.modules, "eval.scorecard", None)  # as if eval/scorecard.py were not there
    with pytest.warns(UserWarning, match="scorecard is not available"):
        missing = handlers.run_score(studio, session, 1, False, False)
    assert "scorecard is not available" in missing.markdown and missing.json is None
    monkeypatch.undo()
    pytest.importorskip("eval.scorecard")
    update = handlers.run_score(studio, session, 1, False, False, ProgressRecorder())
    assert "Scorecard" in update.markdown and "ASR" in update.markdown and "![" not in update.markdown
    assert update.json["concept"] == "star" and {r["model"] for r in update.json["leaderboard"]} == {"base", "erased"}
    assert update.chart.width > 100


def test_a_one_step_generator_erases_compares_scores_and_loads_in_the_studio(studio, tiny_pipe):
    """SFD's artifact is a one-step generator: the Erase, Compare and Score tabs and loading take it like any model."""
    from pipelines.one_step import OneStepPipeline

    session = handlers.Session()
    settings = {"max_train_steps": 2, "initial_generator": "", "init_from_teacher": True, "override": "circle"}
    settings["batch_size"] = 2
    updates = list(handlers.run_erase(studio, session, "tiny-random-sd-0", "sfd", "star", settings, None))
    assert "Done" in updates[-1].status and isinstance(session.erased, OneStepPipeline)
    compare = handlers.run_compare(studio, session, "a red star\na blue heart", "0", None)
    assert list(compare.table["prompt"]) == ["a red star", "a blue heart"] and compare.grid.size[0] > 0
    score = handlers.run_score(studio, session, 1, False, False, None)
    assert "Scorecard" in score.markdown and {r["model"] for r in score.json["leaderboard"]} == {"base", "erased"}
    loaded = handlers.Session()
    assert "Loaded" in handlers.load_artifact(studio, loaded, str(session.artifact_dir)).status
    assert isinstance(loaded.erased, OneStepPipeline)


def test_artifact_zip_and_load_round_trip(studio, erased, tmp_path):
    session = erased[0]
    archive, status = handlers.zip_artifact(studio, session)
    assert archive.endswith(".zip") and "zip" in status
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert f"{session.artifact_dir.name}/erasure.json" in names
    assert f"{session.artifact_dir.name}/unet_partial.safetensors" in names

    fresh = handlers.Session()
    update = handlers.load_artifact(studio, fresh, str(session.artifact_dir))
    assert "Loaded" in update.status and "esd" in update.status and "sha256" in update.status
    assert update.loss is not None  # loss.png
    assert fresh.method == "esd" and fresh.concept == "star" and fresh.base is session.base
    prompts, attack_prompt = handlers.session_prompts(fresh)
    assert attack_prompt == "a red star" and "a red pentagram" in prompts
    # The loaded artifact draws exactly what the in-memory erased model drew.
    from pipelines.sd import generate

    kwargs = dict(seeds=[0], num_inference_steps=STEPS)
    assert torch.allclose(
        generate(fresh.erased, ["a red star"], **kwargs), generate(session.erased, ["a red star"], **kwargs)
    )


# ---------------------------------------------------------------- bad input: a message in the page, never a traceback


def test_bad_erase_input_gets_a_message(studio):
    session = handlers.Session()

    def erase(model="tiny-random-sd-0", method="esd", concept="star", settings=None):
        return list(handlers.run_erase(studio, session, model, method, concept, settings or {"max_train_steps": 1}))

    cases = [
        (dict(concept="   "), "concept is empty"),
        (dict(concept="unicorn"), "does not know the concept 'unicorn'"),
        (dict(model="/no/such/folder"), "/no/such/folder does not exist"),
        (dict(method="esdx"), "unknown method 'esdx'; did you mean 'esd'"),
        (dict(settings={"max_train_step": 2}), "did you mean 'max_train_steps'"),
        (dict(settings={"max_train_steps": -1}), "max_train_steps must be a positive number"),
        (dict(settings="{not json"), "settings are not valid JSON"),
    ]
    for kwargs, message in cases:
        with pytest.raises(gr.Error, match=message) as excinfo:
            erase(**kwargs)
        assert "Traceback" not in _message(excinfo)
    if not handlers.toy_is_built("gan"):
        with pytest.raises(gr.Error, match="toy GAN's weights are missing.*toy build --stages gan"):
            erase(model="toy", method="adapt_then_unlearn", concept="circle", settings={"max_train_steps": 2})
    assert not studio.lock.locked() and session.erased is None  # nothing half-done is left behind


def test_a_second_run_while_one_is_going_is_told_to_wait(studio, erased):
    session = erased[0]
    assert studio.lock.acquire(blocking=False)  # a run is going
    try:
        with pytest.warns(UserWarning, match="Another run is going"):
            updates = list(handlers.run_erase(studio, handlers.Session(), "", "esd", "star", {"max_train_steps": 1}))
        assert len(updates) == 1 and "Busy" in updates[0].status
        with pytest.warns(UserWarning, match="Another run is going"):
            updates = [
                handlers.run_compare(studio, session, "", "0"),
                handlers.run_attack(studio, session, "a red star"),
                handlers.run_score(studio, session),
                handlers.load_artifact(studio, handlers.Session(), str(session.artifact_dir)),
            ]
        assert all("Busy" in update[0] for update in updates)
        assert handlers.stop_run(studio).startswith("Stopping")
    finally:
        studio.lock.release()
        studio.stop_requested.clear()
    assert handlers.stop_run(studio) == "Nothing is running."


def test_bad_input_on_the_other_tabs_gets_a_message(studio, erased, tmp_path):
    session = erased[0]
    empty = handlers.Session()
    for call in (
        lambda: handlers.run_compare(studio, empty, "", "0"),
        lambda: handlers.run_attack(studio, empty, "a red star"),
        lambda: handlers.run_score(studio, empty),
    ):
        with pytest.raises(gr.Error, match="no erased model yet"):
            call()
    with pytest.raises(gr.Error, match="no artifact to download"):
        handlers.zip_artifact(studio, empty)
    with pytest.raises(gr.Error, match="seeds must be whole numbers"):
        handlers.run_compare(studio, session, "", "zero one")
    with pytest.raises(gr.Error, match="attack prompt is empty"):
        handlers.run_attack(studio, session, "  ")
    with pytest.raises(gr.Error, match="k \\(prefix tokens\\) must be a whole number"):
        handlers.run_attack(studio, session, "a red star", prefix_tokens="three")
    with pytest.raises(gr.Error, match="guidance scale must be a number, got None"):
        handlers.run_attack(studio, session, "a red star", guidance=None)

    # Loading shows why a folder cannot be loaded in its status box, and leaves the session as it was.
    def load_error(path: str) -> str:
        with pytest.warns(UserWarning, match="Could not load the artifact"):
            update = handlers.load_artifact(studio, empty, path)
        assert update.samples is None and update.loss is None
        assert update.status.startswith("**Could not load the artifact:**") and "Traceback" not in update.status
        return update.status

    assert "type the path of an artifact folder" in load_error("  ")
    assert "artifact folder /no/such/artifact does not exist" in load_error("/no/such/artifact")
    assert "has no erasure.json" in load_error(str(tmp_path))
    # A tampered artifact is refused by read_manifest's sha256 check.
    copy = tmp_path / "tampered"
    shutil.copytree(session.artifact_dir, copy)
    manifest = json.loads((copy / "erasure.json").read_text())
    weights = next(name for name in manifest["files"] if name.endswith(".safetensors"))
    (copy / weights).write_bytes((copy / weights).read_bytes()[:-1] + b"\0")
    assert "does not match its sha256" in load_error(str(copy))
    assert empty.erased is None and not studio.lock.locked()


# ---------------------------------------------------------------- the GAN path (a tiny random StyleGAN2)


def test_gan_method_erases_and_compares_on_a_tiny_bundle(tmp_path):
    pytest.importorskip("gan")
    bundle = tiny_bundle(0)
    demo = app.build_demo(gan_model=bundle, judge=RednessJudge(), output_dir=tmp_path, seeds=(0,), save_samples=False)
    try:
        studio, session = demo.studio, handlers.Session()
        fast = {
            "max_train_steps": 2,
            "num_negatives": 8,
            "num_positives": 8,
            "fisher_samples": 2,
            "eval_samples": 0,
            "batch_size": 4,
            # the tiny GAN's 16x16 images: the toy judge reads 32x32
            "retain_anchor_space": "outputs",
            "output_repulsion_space": "outputs",
        }
        updates = list(handlers.run_erase(studio, session, "tiny-0", "adapt_then_unlearn", "circle", fast))
        assert "Done" in updates[-1].status and updates[-1].after is not None
        assert (session.artifact_dir / "gan_generator.safetensors").is_file()
        update = handlers.run_compare(studio, session, "", "0 1")
        assert list(update.table["seed"]) == [0, 1]
        with pytest.raises(gr.Error, match="a GAN has no prompt"):
            handlers.run_attack(studio, session, "a circle")
        loaded = handlers.Session()
        handlers.load_artifact(studio, loaded, str(session.artifact_dir))
        assert torch.allclose(loaded.erased.sample(2, seed=5), session.erased.sample(2, seed=5))
    finally:
        demo.close()


def test_text_to_unlearn_erases_from_text_alone_and_scores_with_the_gan_scorecard(tmp_path):
    """A GAN method whose only input is text: its prompts come from the one-per-line settings box, and Score gives
    the GAN scorecard (shared latents, forget rate, PUL)."""
    pytest.importorskip("gan")
    bundle = tiny_bundle(0)
    # The tiny bundle carries a redness judge calibrated on its own samples (about 30 % count as the concept).
    demo = app.build_demo(gan_model=bundle, judge=bundle.judge, output_dir=tmp_path, seeds=(0,), save_samples=False)
    try:
        studio, session = demo.studio, handlers.Session()
        fast = {
            "max_train_steps": 4,
            "prompts": ["a red circle", "a crimson disc"],
            "perceptual": "none",
            "batch_size": 2,
            "direction_samples": 4,
            "eval_samples": 0,
        }
        updates = list(handlers.run_erase(studio, session, "tiny-0", "text_to_unlearn", "circle", fast))
        assert "Done" in updates[-1].status and updates[-1].after is not None
        assert session.result.config.prompts == ["a red circle", "a crimson disc"]
        # The settings panel edits the prompts one per line.
        from ui.widgets import convert_setting, format_setting, setting_specs

        spec = next(s for s in setting_specs("text_to_unlearn") if s.name == "prompts")
        assert spec.kind == "text_list" and spec.key
        assert convert_setting(spec, " a red circle \n\na crimson disc\n") == ["a red circle", "a crimson disc"]
        assert format_setting(dataclasses.replace(spec, value=["a", "b"])) == "a\nb"
        score = handlers.run_score(studio, session, 1, clip=False, fid=False)
        assert "erased from a GAN" in score.markdown and score.json["model_type"] == "stylegan2"
        assert score.json["rates"]["pul"] is not None or score.json["rates"]["forget"]["base"] == 0
    finally:
        demo.close()


# ---------------------------------------------------------------- erasure-studio demo


class _FakeDemo:
    def __init__(self):
        self.launched: dict = {}

    def launch(self, **kwargs):
        self.launched = kwargs


def test_cmd_demo_binds_localhost_unless_told_otherwise(monkeypatch, capsys):
    built: list[tuple[dict, _FakeDemo]] = []

    def fake_build_demo(**options):
        built.append((options, _FakeDemo()))
        return built[-1][1]

    monkeypatch.setattr(app, "build_demo", fake_build_demo)
    assert demo_command.cmd_demo([]) == 0
    options, fake = built[-1]
    assert fake.launched["server_name"] == "127.0.0.1" and fake.launched["server_port"] is None
    assert options["model"] == "toy" and options["judge"] == "toy"
    assert main(["demo", "--host", "0.0.0.0", "--port", "7999"]) == 0
    assert built[-1][1].launched["server_name"] == "0.0.0.0" and built[-1][1].launched["server_port"] == 7999
    assert main(["demo", "--port", "seventy"]) == 2
    assert main(["demo", "--model", "/no/such/model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and err[0].startswith("erasure-studio demo: warning: --host 0.0.0.0 opens the studio")
    assert "invalid int value" in err[1] and "/no/such/model: no such folder" in err[2]
    assert "Traceback" not in "".join(err)


# ---------------------------------------------------------------- a real server and gradio_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_launched_studio_answers_gradio_client(demo, monkeypatch):
    from gradio_client import Client

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        assert demo.local_url.startswith(f"http://127.0.0.1:{port}")
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert "/erase" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        status, loss, before, after = client.predict(
            "tiny-random-sd-0", "esd", "star", {"max_train_steps": 2}, api_name="/erase"
        )
        assert "Done" in status and "star" in status
        assert before and after  # file paths of the before and after grids
        from gradio_client.exceptions import AppError

        with pytest.raises(AppError, match="concept is empty"):
            client.predict("tiny-random-sd-0", "esd", "", {}, api_name="/erase")
        client.close()
    finally:
        demo.close()
