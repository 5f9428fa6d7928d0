"""``erasure-studio demo``: open the Erasure Studio (``ui.app.build_demo``) in the browser."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.errors import ConfigError, ModelNotFoundError

from .common import PROG, Parser, default_device

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def cmd_demo(argv: Sequence[str]) -> int:
    """``erasure-studio demo``: open the studio in the browser (binds 127.0.0.1 unless ``--host`` says otherwise)."""
    parser = Parser(
        prog=f"{PROG} demo",
        description="Open the Erasure Studio in the browser: erase, compare, attack, score and keep artifacts.",
    )
    parser.add_argument("--model", default="toy", help="Base diffusion model: 'toy' or a local diffusers folder.")
    parser.add_argument(
        "--gan_model", default="toy", help="Base GAN: 'toy', a StyleGAN2 bundle folder or a rosinality checkpoint."
    )
    parser.add_argument("--judge", default="toy", help="Judge of concepts (toy, nudenet, imagenet, clip:..., ...).")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="Address to bind (default 127.0.0.1, this machine only; 0.0.0.0 opens the studio to the network).",
    )
    parser.add_argument("--port", type=int, default=None, help="Port (default: 7860, or the next free one).")
    parser.add_argument("--output_dir", default="runs/studio", help="Where erasures are saved as artifact folders.")
    parser.add_argument(
        "--root",
        default=None,
        help="The one folder whose files the page may read and write: model and artifact paths typed into the page "
        "must lie inside it (default: the folder above --output_dir, i.e. runs/). The --model and --gan_model given "
        "here are trusted wherever they are.",
    )
    parser.add_argument("--device", default=None, help="Device (default: cuda if available, else cpu).")
    parser.add_argument(
        "--num_inference_steps", type=int, default=None, help="Sampler steps of previews and comparisons."
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="Settings preset the Erase tab starts from: 'toy' or 'paper' (default: the one that fits the model: "
        "'toy' for the toy world, 'paper' for a real model).",
    )
    args = parser.parse_args(list(argv))
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a port number; give 1-65535")
    for flag, value in (("--model", args.model), ("--gan_model", args.gan_model)):
        if value != "toy" and not Path(value).expanduser().exists():
            raise ModelNotFoundError(f"{flag} {value}: no such folder or file; give 'toy' or a local path")
    output_dir = Path(args.output_dir).expanduser()
    if args.root is None:
        root = output_dir.resolve().parent
    else:
        root = Path(args.root).expanduser()
        if not root.is_dir():
            raise ModelNotFoundError(f"--root {args.root}: no such folder; create it or give another")
    if root.resolve() not in (output_dir.resolve(), *output_dir.resolve().parents):
        raise ConfigError(f"--output_dir {args.output_dir} is outside --root {args.root}; put it inside that folder")
    if args.host not in LOOPBACK_HOSTS:
        print(
            f"{PROG} demo: warning: --host {args.host} opens the studio to the network: anyone who can reach this "
            f"machine can run jobs on it and read model and artifact folders under {root.resolve()} by path",
            file=sys.stderr,
        )
    # Imported here, not at the top: the command table imports this module for every command, and gradio is slow
    # to import (and optional). ``app.build_demo`` is looked up at call time so that tests can stand in for it.
    from ui import app

    app.import_gradio()
    demo = app.build_demo(
        model=args.model,
        gan_model=args.gan_model,
        judge=args.judge,
        output_dir=output_dir,
        device=args.device or default_device(),
        num_inference_steps=args.num_inference_steps,
        preset=args.preset,
        root=root,
    )
    demo.launch(server_name=args.host, server_port=args.port, ssr_mode=False, show_error=False, inbrowser=False)
    return 0
