"""Adapt-then-Unlearn on the toy world's StyleGAN2: erasing "circle" must work and leave the other objects.

Runs on the bundled toy GAN. The method sorts its samples with the ``toy`` judge; every verdict here is
``toy-heldout``'s, a judge that neither the method nor the GAN's recipe trained against.
"""

from __future__ import annotations

import pytest

from pipelines.toy.world import OBJECTS

pytestmark = pytest.mark.slow

NUM_SAMPLES = 1000


def test_erasing_circle_from_the_toy_gan():
    import gan
    from erasure import erase
    from eval.gan_scorecard import kept_on_shared_latents
    from eval.judges import load_judge
    from gan.metrics import percentage_of_unlearning
    from pipelines.toy.quality import top_class_frequency

    bundle = gan.load("toy")
    judge = load_judge("toy-heldout")
    result = erase("adapt_then_unlearn", bundle, concept="circle", preset="toy", seed=0)
    erased = bundle.with_generator(result.components["generator"])

    # PUL on identical latents (seed 1: other latents than the ones the run sampled its data from). Issue 19's bar is
    # PUL >= 90 %; the preset measures 94 % here (benchmarks/results/atu.json, 130 of 138 circles removed). The base
    # draws ~138 circles on these latents, so PUL has a standard error of about 2.6 points at the bar: 0.85 is the
    # bar less two standard errors, so that a float-level difference between machines does not fail the run, while
    # the previous preset (without the output repulsion: 65 %) fails it by far.
    pul = percentage_of_unlearning(bundle, erased, judge, "circle", num_samples=NUM_SAMPLES, seed=1)
    assert pul["negatives_base"] >= 0.08 * NUM_SAMPLES, f"the toy GAN barely draws circles: {pul}"
    assert pul["pul"] >= 0.85, f"PUL {pul['pul']:.2f} < 0.85: {pul}"

    # The other objects survive: each keeps its share within 10 points, issue 19's full bar. The base draws every
    # object in 11-14 % of samples, and on 1000 shared latents a share's before/after difference has a standard error
    # of up to 1.5 points; the preset moves no other object by more than 4.1 points here. The same bar holds for every
    # share of the other heads (colour, style, background), as the leaderboard's claim check reads them: the preset
    # moves none by more than 5.9 points (the style); the anchor in the raw outputs moved the style by 11.5-16.
    base_probabilities = judge.probabilities(bundle.sample(NUM_SAMPLES, seed=1))
    probabilities = judge.probabilities(erased.sample(NUM_SAMPLES, seed=1))
    base_frequency = top_class_frequency(base_probabilities["object"], judge.heads["object"])
    frequency = top_class_frequency(probabilities["object"], judge.heads["object"])
    assert set(frequency) == set(OBJECTS)
    assert min(f for o, f in base_frequency.items() if o != "circle") >= 0.08, base_frequency
    shifts = {o: round(frequency[o] - base_frequency[o], 3) for o in OBJECTS if o != "circle"}
    assert max(map(abs, shifts.values())) <= 0.10, f"other objects moved with the circles: {shifts}"
    for head in ("colour", "style", "background"):
        before = top_class_frequency(base_probabilities[head], judge.heads[head])
        after = top_class_frequency(probabilities[head], judge.heads[head])
        moved = {v: round(after[v] - before[v], 3) for v in before}
        assert max(map(abs, moved.values())) <= 0.10, f"the {head} moved with the circles: {moved}"

    # Level shares can hide samples trading places, so count them on the same latents: of the ~860 samples that were
    # not circles, how many still show their object. The retain anchor is there for this: the preset (the anchor in
    # the toy judge's features, with the output repulsion) keeps 92 % here, the anchor alone 90 %, no anchor 46 %
    # (benchmarks/results/atu.json); at ~860 samples the standard error is about 1 point, so 85 % fails if the
    # anchor stops holding the rest.
    without = (base_probabilities["object"].argmax(1) != judge.heads["object"].index("circle")).tolist()
    kept = kept_on_shared_latents(base_probabilities, probabilities, judge.heads, without, "object", "circle")
    assert kept["share"] >= 0.85, f"the other samples lost their object: {kept['share']:.2f} kept, {kept['by_value']}"
