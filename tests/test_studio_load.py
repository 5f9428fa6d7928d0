"""The studio shared by several people at once: a real server, ten ``gradio_client`` sessions, the toy world.

Every heavy event (erase, compare, attack, score, load) shares one slot of Gradio's queue, so the sessions wait in
line instead of being turned away; each session's erased model stays its own. Also: ``--root`` confinement of the
paths typed into the page, and the warning ``--host 0.0.0.0`` prints.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from pipelines.errors import ConfigError  # noqa: E402
from ui import app  # noqa: E402
from ui import studio as handlers  # noqa: E402
from ui.cli import main  # noqa: E402

CONCEPTS = ("star", "heart", "circle", "square", "triangle", "cross", "diamond", "crescent", "red", "blue")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.skipif(not handlers.toy_is_built("sd"), reason="the toy world is not built")
def test_ten_sessions_wait_in_line_and_keep_their_own_results(tmp_path, monkeypatch, one_torch_thread):
    from gradio_client import Client
    from gradio_client.utils import Status

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    demo = app.build_demo(
        model="toy", judge="toy", output_dir=tmp_path / "runs", num_inference_steps=2, seeds=(0,), save_samples=False
    )
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    clients = [Client(f"http://127.0.0.1:{port}/", verbose=False) for _ in CONCEPTS]
    try:
        # Submitted one after another, each once the server has it, so that the queue's order is the list's order.
        jobs, ranks = [], []
        for client, concept in zip(clients, CONCEPTS):
            job = client.submit("toy", "esd", concept, {"max_train_steps": 1}, api_name="/erase")
            deadline = time.monotonic() + 60
            while (status := job.status()).code in (Status.STARTING, Status.JOINING_QUEUE) and not job.done():
                assert time.monotonic() < deadline, "the server did not take the job"
                time.sleep(0.05)
            ranks.append(status.rank)
            jobs.append(job)
        statuses = [job.result(timeout=600)[0] for job in jobs]
        for concept, status in zip(CONCEPTS, statuses):
            assert status.startswith(f"**Done:** '{concept}' erased"), status
        # Waiting, not turned away: the later sessions were told their place in the line.
        assert max(r for r in ranks if r is not None) >= 1, ranks
        # Queue order: the artifacts were written in the order the sessions asked (one run at a time).
        folders = sorted((tmp_path / "runs").iterdir(), key=lambda p: (p / "erasure.json").stat().st_mtime_ns)
        assert [f.name.split("-")[1] for f in folders] == list(CONCEPTS)

        # Each session compares its own erased model: its own concept, none of the others'.
        compares = [client.submit("", "0", api_name="/compare") for client in clients]
        for concept, job in zip(CONCEPTS, compares):
            status = job.result(timeout=600)[0]
            assert f"stop showing '{concept}'" in status, status
        assert all(job.status().code == Status.FINISHED for job in compares)
        assert demo.studio.lock.locked() is False  # the server is still up and idle
    finally:
        for client in clients:
            client.close()
        demo.close()


def test_root_confines_typed_paths(tmp_path):
    root = tmp_path / "runs"
    (root / "studio").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    studio = handlers.Studio(output_dir=root / "studio", root=root)
    assert studio.confine(str(root / "studio" / "a")) == root / "studio" / "a"
    for path in (outside, root / ".." / "elsewhere", root / "escape", Path("/etc")):
        with pytest.raises(ConfigError, match="outside the studio's root"):
            studio.confine(str(path))
    with pytest.raises(ConfigError, match="outside the studio's root"):
        studio.load_model(str(outside), handlers.STABLE_DIFFUSION)
    update = handlers.load_artifact(studio, handlers.Session(), str(outside))
    assert "outside the studio's root" in update.status
    with pytest.raises(ConfigError, match="output folder"):
        handlers.Studio(output_dir=outside, root=root)
    # The model the studio was started with is the operator's, trusted wherever it is.
    assert str(outside) in handlers.Studio(model=str(outside), output_dir=root / "studio", root=root)._trusted


def test_cmd_demo_root_and_network_warning(tmp_path, monkeypatch, capsys):
    built = []

    class _FakeDemo:
        def launch(self, **options):
            self.launched = options

    def fake_build_demo(**options):
        built.append(options)
        return _FakeDemo()

    monkeypatch.setattr(app, "build_demo", fake_build_demo)
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert built[-1]["root"] == (tmp_path / "runs").resolve()
    assert "warning" not in capsys.readouterr().err
    assert main(["demo", "--host", "0.0.0.0"]) == 0
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0 opens the studio to the network" in err and len(err.strip().splitlines()) == 1
    assert main(["demo", "--root", str(tmp_path / "missing")]) == 2
    assert "--root" in capsys.readouterr().err
    (tmp_path / "data").mkdir()
    assert main(["demo", "--root", str(tmp_path / "data")]) == 2  # runs/studio is not inside data/
    assert "outside --root" in capsys.readouterr().err
    assert main(["demo", "--root", str(tmp_path / "data"), "--output_dir", str(tmp_path / "data" / "s")]) == 0
    assert built[-1]["root"] == tmp_path / "data"
