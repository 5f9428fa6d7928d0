"""The command line: a working erase/sample round trip, and one clear line with exit status 2 for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ui.cli import main


@pytest.fixture(scope="module")
def other_folder(tmp_path_factory, other_tiny_pipe):
    folder = tmp_path_factory.mktemp("models") / "other-sd"
    other_tiny_pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cli_artifact(tmp_path_factory, tiny_folder):
    out = tmp_path_factory.mktemp("runs") / "esd-star"
    code = main(
        [
            "erase",
            "esd",
            "--concept",
            "star",
            "--pretrained_model_name_or_path",
            str(tiny_folder),
            "--max_train_steps",
            "2",
            "--num_inference_steps",
            "4",
            "--output_dir",
            str(out),
            "--eval_judge",
            "none",
        ]
    )
    assert code == 0
    return out


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_erase_writes_an_artifact(cli_artifact):
    manifest = json.loads((cli_artifact / "erasure.json").read_text())
    assert manifest["method"] == "esd"
    assert manifest["config"]["max_train_steps"] == 2
    assert manifest["config"]["num_inference_steps"] == 4


def test_config_file_and_flags(tmp_path, tiny_folder):
    config = tmp_path / "esd.yaml"
    config.write_text("concept: circle\nmax_train_steps: 1\nnegative_guidance: 3.0\nnum_inference_steps: 3\n")
    out = tmp_path / "run"
    code = main(
        [
            "erase",
            "esd",
            "--config",
            str(config),
            "--negative_guidance",
            "2.5",
            "--pretrained_model_name_or_path",
            str(tiny_folder),
            "--output_dir",
            str(out),
            "--eval_judge",
            "none",
        ]
    )
    assert code == 0
    cfg = json.loads((out / "erasure.json").read_text())["config"]
    assert cfg["concept"] == "circle" and cfg["max_train_steps"] == 1 and cfg["negative_guidance"] == 2.5


def test_sample_from_an_artifact(cli_artifact, tmp_path, tiny_folder):
    out = tmp_path / "samples"
    code = main(
        [
            "sample",
            str(cli_artifact),
            "--base",
            str(tiny_folder),
            "--prompt",
            "a star",
            "--seed",
            "0",
            "1",
            "--num_inference_steps",
            "3",
            "--output_dir",
            str(out),
        ]
    )
    assert code == 0
    assert (out / "grid.png").exists() and len(list(out.glob("0*.png"))) == 2


def test_methods_lists_esd(capsys):
    assert main(["methods"]) == 0
    assert "esd" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["erase", "nope", "--concept", "star"], "unknown method"),
        (["erase", "esd", "--concept", "star", "--no_such_flag", "1"], "unrecognized arguments"),
        (["erase", "esd", "--concept", "star", "--learning_rate", "abc"], "invalid float value"),
        (["erase", "esd", "--concept", "star", "--train_method", "esd-z"], "invalid choice"),
        (["erase", "esd", "--max_train_steps", "2"], "concept is empty"),
        (["erase", "esd", "--concept", "star", "--pretrained_model_name_or_path", "/no/such/model"], "not found"),
        (
            ["erase", "esd", "--concept", "star", "--pretrained_model_name_or_path", "nobody/no-such-model"],
            "not in the local Hugging Face cache",
        ),
        (["erase", "esd", "--concept", "star", "--config", "/no/such.json"], "does not exist"),
        (["frobnicate"], "unknown command"),
        (["attack", "/no/such/model", "--prompts", "toy:star", "--prompt_batch", "0"], "prompt_batch must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "never"
    code = main([*argv, "--output_dir", str(out)] if argv[0] == "erase" and argv[1] == "esd" else argv)
    assert code == 2
    assert expected in _one_line_error(capsys)
    assert not out.exists()


def test_flipped_byte_artifact(cli_artifact, tmp_path, tiny_folder, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(cli_artifact, broken)
    target = broken / "unet_partial.safetensors"
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    target.write_bytes(bytes(data))
    code = main(
        ["sample", str(broken), "--base", str(tiny_folder), "--prompt", "a star", "--output_dir", str(tmp_path / "s")]
    )
    assert code == 2
    assert "sha256" in _one_line_error(capsys)
    assert not (tmp_path / "s").exists()


def test_artifact_on_a_different_base(cli_artifact, tmp_path, other_folder, capsys):
    code = main(
        [
            "sample",
            str(cli_artifact),
            "--base",
            str(other_folder),
            "--prompt",
            "a star",
            "--output_dir",
            str(tmp_path / "s"),
        ]
    )
    assert code == 2
    assert "--allow_other_base" in _one_line_error(capsys)


def test_existing_output_needs_overwrite(cli_artifact, tiny_folder, capsys):
    before = (cli_artifact / "erasure.json").read_bytes()
    code = main(
        [
            "erase",
            "esd",
            "--concept",
            "star",
            "--pretrained_model_name_or_path",
            str(tiny_folder),
            "--max_train_steps",
            "1",
            "--output_dir",
            str(cli_artifact),
        ]
    )
    assert code == 2
    assert "--overwrite" in _one_line_error(capsys)
    assert (cli_artifact / "erasure.json").read_bytes() == before


def test_console_script_subprocess(tmp_path):
    """The installed entry point: a bad flag gives one stderr line, exit 2, and no traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "ui.cli", "erase", "esd", "--concept", "star", "--learning_rate", "abc"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "--learning_rate" in proc.stderr


def test_output_into_a_closed_pipe_stops_quietly():
    """`erasure-studio run JOBS --dry_run | head -1`: the reader goes away early; no traceback, SIGPIPE's status."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ui.cli",
            "run",
            "configs/jobs/toy-leaderboard.yaml",
            "--output_dir",
            "unused",
            "--dry_run",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=Path(__file__).resolve().parents[1],
    )
    proc.stdout.close()  # the reader is gone before the command writes (it is still importing torch)
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in stderr and not stderr.strip()
