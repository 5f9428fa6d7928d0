"""Adapt-then-Unlearn on the toy world's StyleGAN2: erasing "circle" must work and leave the other objects.

Runs on the bundled toy GAN and toy judge.
"""

from __future__ import annotations

import pytest

from pipelines.toy.world import OBJECTS

pytestmark = pytest.mark.slow

NUM_SAMPLES = 1000


def test_erasing_circle_from_the_toy_gan():
    import gan
    from erasure import erase
    from eval.judges import load_judge
    from gan.metrics import object_frequency, percentage_of_unlearning
    from pipelines.gan import GANBundle

    bundle = gan.load("toy")
    judge = load_judge("toy")
    result = erase("adapt_then_unlearn", bundle, concept="circle", preset="toy", seed=0)
    erased = GANBundle(generator=result.components["generator"], metadata=bundle.metadata)

    # PUL on identical latents (seed 1: other latents than the ones the run sampled its data from).
    pul = percentage_of_unlearning(bundle, erased, judge, "circle", num_samples=NUM_SAMPLES, seed=1)
    assert pul["negatives_base"] >= 0.05 * NUM_SAMPLES, f"the toy GAN barely draws circles: {pul}"
    assert pul["pul"] >= 0.6, f"PUL {pul['pul']:.2f} < 0.60: {pul}"

    # The other objects survive: every one that the base GAN draws in at least 3 % of these samples is still the
    # judge's top object on at least 3 % of the erased samples. Issue 9 asks this of every object, but the shipped toy
    # GAN misses its own quality bar: under the current judge it draws stars, crosses, squares and crescents in under
    # 2 % of samples before any erasure (benchmarks/results/toy_quality.json), so for those there is nothing to keep.
    base_frequency = object_frequency(bundle, judge, num_samples=NUM_SAMPLES, seed=1)
    frequency = object_frequency(erased, judge, num_samples=NUM_SAMPLES, seed=1)
    assert set(frequency) == set(OBJECTS)
    drawn = [o for o, f in base_frequency.items() if o != "circle" and f >= 0.03]
    assert len(drawn) >= 2, f"the toy GAN draws too few objects to measure what survives: {base_frequency}"
    lost = {o: frequency[o] for o in drawn if frequency[o] < 0.03}
    assert not lost, f"objects vanished with the circles: {lost} (base {base_frequency}, erased {frequency})"
