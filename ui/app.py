"""The Erasure Studio in the browser: the page's layout and the wiring of its events.

```
erasure-studio demo [--model toy|PATH] [--judge toy] [--host 127.0.0.1] [--port 7860]
```

```python
from ui.app import build_demo

demo = build_demo(model="toy")          # or model=<a StableDiffusionPipeline>, gan_model=<a GANBundle>, judge=...
demo.launch(server_name="127.0.0.1")
```

Tabs:

- **Erase**: the base model, the method (every registered one, diffusion and GAN, with its paper's one-line
  summary), the concept, and the method's settings, generated from its config dataclass (``ui.widgets``) and starting
  from the preset that fits the model: ``"toy"`` on the toy world, ``"paper"`` (the paper's setting) on a real model
  (a few key fields, the rest under "Advanced"). The run shows live progress and loss, then the same prompts and
  seeds before and after, and is saved as an artifact folder.
- **Compare**: base and erased model on the same prompts and seeds, with the concept's paraphrases (toy-world
  synonyms) and other concepts, and the judge's verdict on every image.
- **Attack**: UnlearnDiffAtk on one prompt against the erased model (the paper's faithful schedule by default).
- **Score**: the scorecard of :mod:`eval.scorecard` (leaderboard columns, rates chart, JSON).
- **Artifacts**: download the current artifact folder as a zip; load an earlier artifact folder; export it as a
  merged diffusers folder, a single-file checkpoint or a LoRA.

This module holds the layout only: each event is a thin closure around a handler of :mod:`ui.studio`, where the
state (:class:`~ui.studio.Studio`, :class:`~ui.studio.Session`) and the handlers live, tested without a server.
Gradio is imported lazily, when :func:`build_demo` runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from erasure.base import PAPER_PRESET, TOY_PRESET

from .studio import (
    DEFAULT_METHOD,
    STYLEGAN2,
    Studio,
    current_artifact,
    export_artifact,
    fitting_preset,
    import_gradio,
    load_artifact,
    new_session,
    on_method_change,
    preset_settings,
    run_attack,
    run_compare,
    run_erase,
    run_score,
    session_prompts,
    settings_from_controls,
    stop_run,
    toy_is_built,
    toy_notice,
    zip_artifact,
)
from .widgets import SettingSpec, method_summary, setting_control, setting_specs


def build_demo(
    model: Any = "toy",
    *,
    gan_model: Any = "toy",
    judge: Any = "toy",
    output_dir: str | os.PathLike = "runs/studio",
    device: str | None = None,
    num_inference_steps: int | None = None,
    seeds: Sequence[int] = (0, 1),
    save_samples: bool = True,
    method: str | None = None,
    preset: str | None = None,
    max_queue_size: int = 16,
    root: str | os.PathLike | None = None,
):
    """Build the studio page.

    Args:
        model (`str` or `StableDiffusionPipeline`, defaults to `"toy"`): base model of the diffusion methods:
            ``"toy"``, a local diffusers folder, or a pipeline object (tests pass ``pipelines.tiny.tiny_sd(0)``).
        gan_model (`str` or `GANBundle`, defaults to `"toy"`): base model of the GAN methods.
        judge (`str` or `Judge`, defaults to `"toy"`): the judge of concepts for the checks, Compare, Attack, Score.
        output_dir (`str`, defaults to `"runs/studio"`): where each erasure's artifact folder is saved.
        device (`str`, *optional*): device of the models loaded by name.
        num_inference_steps (`int`, *optional*): sampler steps of previews, comparisons and attack checks.
        seeds (`Sequence[int]`, defaults to `(0, 1)`): seeds of the before/after previews.
        save_samples (`bool`, defaults to `True`): write each artifact's before/after sample grid.
        method (`str`, *optional*): the method selected at start (default ``esd``).
        preset (`str`, *optional*): the preset the settings start from; unset, the one that fits the model
            (``"toy"`` for the toy world and in-memory models, ``"paper"`` for a model loaded from a path).
        max_queue_size (`int`, defaults to 16): events waiting in Gradio's queue before new ones are refused.
        root (`str`, *optional*): confine every path typed into the page to this folder (``Studio.root``).

    Returns:
        `gradio.Blocks` with its queue set up: one run (erase, compare, attack, score, load) at a time across every
        visitor, the others waiting in line with their position shown; ``demo.studio`` is the :class:`Studio`.
    """
    gr = import_gradio()
    from erasure import get_config_class, get_method_class, list_methods

    studio = Studio(
        model=model,
        gan_model=gan_model,
        judge=judge,
        output_dir=Path(output_dir),
        device=device,
        num_inference_steps=num_inference_steps,
        seeds=tuple(seeds),
        save_samples=save_samples,
        preset=preset,
        root=Path(root) if root is not None else None,
    )
    methods = list_methods()
    selected = method or (DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0])
    selected_type = get_method_class(selected).model_type
    method_choices = [
        (f"{m} ({'GAN' if get_method_class(m).model_type == STYLEGAN2 else 'diffusion'})", m) for m in methods
    ]
    named_presets = {name for m in methods for name in get_config_class(m).preset_names()}
    preset_choices = [TOY_PRESET, PAPER_PRESET, *sorted(named_presets - {TOY_PRESET, PAPER_PRESET})]
    start_preset = studio.preset_for(selected, studio.default_model(selected_type))
    # Every heavy event shares one slot of Gradio's queue: one runs, the others wait in line (Gradio shows each
    # visitor its position) up to ``max_queue_size``. The studio's lock stays as a second guard for calls that
    # bypass the queue.
    run_events = {"concurrency_id": "studio-run", "concurrency_limit": 1}

    with gr.Blocks(title="Erasure Studio", analytics_enabled=False) as demo:
        session = gr.State(new_session)  # a fresh Session per browser tab
        gr.Markdown(
            "# Erasure Studio\nErase a concept from a generative model, then check that it is gone: side by side, "
            "under attack, and on the scorecard. Everything runs locally."
        )

        with gr.Tab("Erase", id="erase"):
            with gr.Row():
                with gr.Column(scale=1):
                    model_box = gr.Textbox(
                        value=studio.default_model(selected_type),
                        label="Base model",
                        info="'toy' (the bundled toy world), a local folder, or the name of an in-memory model",
                        elem_id="model",
                    )
                    method_dd = gr.Dropdown(method_choices, value=selected, label="Method", elem_id="method")
                    method_md = gr.Markdown(method_summary(selected), elem_id="method-summary")
                    notice_md = gr.Markdown(toy_notice(studio, selected_type), elem_id="notice")
                    concept_box = gr.Textbox(
                        label="Concept to erase",
                        placeholder="e.g. star",
                        info="What the prompts call it.",
                        elem_id="concept",
                    )
                    preset_radio = gr.Radio(
                        preset_choices,
                        value=start_preset,
                        label="Settings preset",
                        info="Where the settings start: 'toy' fits the toy world, 'paper' is the paper's setting for "
                        "real models. Picking one resets the settings below.",
                        elem_id="preset",
                    )
                    layout: list[tuple[str, SettingSpec]] = []
                    controls: list[Any] = []
                    groups: dict[str, Any] = {}
                    for name in methods:
                        with gr.Group(visible=name == selected) as group:
                            specs = setting_specs(name, start_preset)
                            for spec in [s for s in specs if s.key]:
                                controls.append(setting_control(gr, name, spec))
                                layout.append((name, spec))
                            with gr.Accordion("Advanced settings", open=False):
                                for spec in [s for s in specs if not s.key]:
                                    controls.append(setting_control(gr, name, spec))
                                    layout.append((name, spec))
                        groups[name] = group
                    settings_json = gr.JSON(visible=False)
                    with gr.Row():
                        erase_btn = gr.Button("Erase", variant="primary", elem_id="erase-button")
                        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-button")
                with gr.Column(scale=2):
                    status_md = gr.Markdown("Pick a method and a concept, then press Erase.", elem_id="erase-status")
                    loss_plot = gr.LinePlot(
                        None,
                        x="step",
                        y="value",
                        color="series",
                        title="Training loss",
                        x_title="step",
                        y_title="loss",
                        height=240,
                        elem_id="loss-plot",
                    )
                    with gr.Row():
                        before_img = gr.Image(label="Before (base model)", type="pil", elem_id="before-image")
                        after_img = gr.Image(label="After (erased model)", type="pil", elem_id="after-image")

        with gr.Tab("Compare", id="compare"):
            gr.Markdown(
                "The same prompts and seeds through the base and the erased model. Leave the prompts empty for the "
                "concept, its paraphrases and other concepts."
            )
            with gr.Row():
                compare_prompts_box = gr.Textbox(label="Prompts (one per line)", lines=6, elem_id="compare-prompts")
                with gr.Column():
                    compare_seeds = gr.Textbox(value=" ".join(map(str, studio.seeds)), label="Seeds")
                    compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-button")
            compare_status = gr.Markdown()
            compare_grid = gr.Image(label="Base (left) vs erased (right)", type="pil", elem_id="compare-grid")
            compare_table = gr.Dataframe(label="The judge's verdicts", interactive=False, wrap=True)

        with gr.Tab("Attack", id="attack"):
            gr.Markdown(
                "**UnlearnDiffAtk** (Zhang et al., ECCV 2024) searches k prefix tokens that make the erased model "
                "draw the concept again. The defaults are the paper's schedule (faithful: 50 timesteps x 40 "
                "iterations, a check after each timestep); 'fast' screens quicker but can miss prompts a robust "
                "model gives up late, so report faithful numbers."
            )
            with gr.Row():
                attack_prompt = gr.Textbox(label="Prompt", placeholder="e.g. a red star", elem_id="attack-prompt")
                attack_seed = gr.Number(value=0, precision=0, label="Seed")
                attack_guidance = gr.Number(value=7.5, label="Guidance scale")
            with gr.Row():
                attack_k = gr.Slider(1, 8, value=3, step=1, label="k (prefix tokens)")
                attack_iterations = gr.Slider(1, 40, value=40, step=1, label="Iterations per timestep")
                attack_timesteps = gr.Slider(1, 50, value=50, step=1, label="Timesteps")
                attack_schedule = gr.Radio(["faithful", "fast"], value="faithful", label="Schedule")
            attack_btn = gr.Button("Attack", variant="primary", elem_id="attack-button")
            attack_status = gr.Markdown(elem_id="attack-status")
            attack_adv = gr.Textbox(label="Adversarial prompt", interactive=False)
            with gr.Row():
                attack_original = gr.Image(label="Original prompt", type="pil")
                attack_image = gr.Image(label="Adversarial prompt", type="pil")

        with gr.Tab("Score", id="score"):
            gr.Markdown(
                "The scorecard: forget, paraphrase and retain rates, UA / IRA / CRA, and (optionally) CLIP and FID, "
                "with the leaderboards' column names. The last attack's pre-ASR and ASR are included."
            )
            with gr.Row():
                score_seeds = gr.Slider(1, 4, value=1, step=1, label="Seeds per prompt")
                on_toy = studio.model == "toy"
                score_clip = gr.Checkbox(value=on_toy and toy_is_built("clip"), label="CLIP score (toy CLIP)")
                score_fid = gr.Checkbox(value=on_toy and toy_is_built("judge"), label="FID / FD (toy features)")
                score_btn = gr.Button("Score", variant="primary", elem_id="score-button")
            score_chart = gr.Image(label="Rates", type="pil")
            score_md = gr.Markdown(elem_id="score-markdown")
            with gr.Accordion("JSON", open=False):
                score_json = gr.JSON()

        with gr.Tab("Artifacts", id="artifacts"):
            artifact_md = gr.Markdown("No artifact yet: run an erasure, or load an artifact folder below.")
            with gr.Row():
                zip_btn = gr.Button("Download the current artifact as a zip", elem_id="zip-button")
                zip_file = gr.File(label="Artifact zip", interactive=False)
            zip_status = gr.Markdown()
            with gr.Row():
                load_box = gr.Textbox(label="Artifact folder", placeholder="runs/studio/esd-star-...", scale=3)
                load_btn = gr.Button("Load", scale=1, elem_id="load-button")
            load_status = gr.Markdown(elem_id="load-status")
            with gr.Row():
                load_samples = gr.Image(label="Before / after samples", type="pil")
                load_loss = gr.Image(label="Loss", type="pil")
            gr.Markdown("**Export** the current artifact where people use Stable Diffusion.")
            with gr.Row():
                export_format = gr.Radio(
                    ["diffusers", "single-file", "lora"],
                    value="diffusers",
                    label="Format",
                    info="diffusers: a from_pretrained folder; single-file: one checkpoint for from_single_file, "
                    "ComfyUI, A1111; lora: the erasure as a LoRA (load_lora_weights)",
                )
                export_rank = gr.Number(value=4, precision=0, minimum=1, label="LoRA rank")
                export_dtype = gr.Dropdown(["fp32", "fp16", "bf16"], value="fp32", label="Dtype")
                export_btn = gr.Button("Export", elem_id="export-button")
            export_file = gr.File(label="Export", interactive=False)
            export_status = gr.Markdown(elem_id="export-status")

        # -------------------------------------------------- events (thin closures around the module-level handlers)

        def _on_method(method_name, current_model):
            summary, model_text, notice = on_method_change(studio, method_name, current_model)
            return [summary, model_text, notice] + [gr.update(visible=m == method_name) for m in methods]

        def _fit_preset(method_name, model_text, shown):
            return fitting_preset(studio, method_name, model_text, shown)

        method_dd.change(
            _on_method,
            [method_dd, model_box],
            [method_md, model_box, notice_md, *groups.values()],
            api_visibility="private",
        ).then(_fit_preset, [method_dd, model_box, preset_radio], preset_radio, api_visibility="private")
        # On blur and Enter rather than on every keystroke, so that typing a path does not reset the settings midway.
        gr.on(
            [model_box.blur, model_box.submit],
            _fit_preset,
            [method_dd, model_box, preset_radio],
            preset_radio,
            api_visibility="private",
        )
        preset_radio.change(
            lambda name: preset_settings(layout, name), preset_radio, controls, api_visibility="private"
        )

        def _collect(method_name, *values):
            return settings_from_controls(layout, method_name, values)

        def _erase(session_state, model_text, method_name, concept, settings, progress=gr.Progress(track_tqdm=True)):
            yield from run_erase(studio, session_state, model_text, method_name, concept, settings, progress)

        def _prefill(session_state):
            return [*session_prompts(session_state), current_artifact(session_state)]

        erase_btn.click(
            _collect, [method_dd, *controls], settings_json, trigger_mode="multiple", api_visibility="private"
        ).success(
            _erase,
            [session, model_box, method_dd, concept_box, settings_json],
            [status_md, loss_plot, before_img, after_img],
            api_name="erase",
            show_progress_on=loss_plot,  # the status line and the images stay readable during the run
            trigger_mode="multiple",  # a second click reaches the handler, which says a run is going
            **run_events,
        ).success(_prefill, session, [compare_prompts_box, attack_prompt, artifact_md], api_visibility="private")
        stop_btn.click(lambda: stop_run(studio), None, status_md, api_visibility="private", queue=False)

        def _compare(session_state, prompts, seeds_text, progress=gr.Progress()):
            return run_compare(studio, session_state, prompts, seeds_text, progress)

        compare_btn.click(
            _compare,
            [session, compare_prompts_box, compare_seeds],
            [compare_status, compare_grid, compare_table],
            api_name="compare",
            **run_events,
        )

        def _attack(session_state, prompt, seed, guidance, k, iterations, timesteps, schedule, progress=gr.Progress()):
            return run_attack(
                studio, session_state, prompt, seed, guidance, k, iterations, timesteps, schedule, progress
            )

        attack_btn.click(
            _attack,
            [
                session,
                attack_prompt,
                attack_seed,
                attack_guidance,
                attack_k,
                attack_iterations,
                attack_timesteps,
                attack_schedule,
            ],
            [attack_status, attack_adv, attack_original, attack_image],
            api_name="attack",
            **run_events,
        )

        def _score(session_state, seeds_count, use_clip, use_fid, progress=gr.Progress()):
            return run_score(studio, session_state, seeds_count, use_clip, use_fid, progress)

        score_btn.click(
            _score,
            [session, score_seeds, score_clip, score_fid],
            [score_md, score_json, score_chart],
            api_name="score",
            **run_events,
        )

        zip_btn.click(lambda s: zip_artifact(studio, s), session, [zip_file, zip_status], api_name="zip_artifact")
        export_btn.click(
            lambda s, f, r, d: export_artifact(studio, s, f, r, d),
            [session, export_format, export_rank, export_dtype],
            [export_file, export_status],
            api_name="export_artifact",
        )

        def _load(session_state, path):
            return load_artifact(studio, session_state, path)

        load_btn.click(
            _load, [session, load_box], [load_status, load_samples, load_loss], api_name="load_artifact", **run_events
        ).success(_prefill, session, [compare_prompts_box, attack_prompt, artifact_md], api_visibility="private")

    demo.queue(default_concurrency_limit=1, max_size=max_queue_size)
    demo.studio = studio
    return demo
