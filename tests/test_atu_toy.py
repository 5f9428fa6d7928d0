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
    from gan.bundle import GANBundle
    from gan.metrics import object_frequency, percentage_of_unlearning

    bundle = gan.load("toy")
    judge = load_judge("toy")
    result = erase("adapt_then_unlearn", bundle, concept="circle", preset="toy", seed=0)
    erased = GANBundle(generator=result.components["generator"], metadata=bundle.metadata)

    # PUL on identical latents (seed 1: other latents than the ones the run sampled its data from).
    pul = percentage_of_unlearning(bundle, erased, judge, "circle", num_samples=NUM_SAMPLES, seed=1)
    assert pul["negatives_base"] >= 0.05 * NUM_SAMPLES, f"the toy GAN barely draws circles: {pul}"
    assert pul["pul"] >= 0.6, f"PUL {pul['pul']:.2f} < 0.60: {pul}"

    # Every other object survives: each is still the judge's top object on at least 3 % of the erased samples.
    frequency = object_frequency(erased, judge, num_samples=NUM_SAMPLES, seed=1)
    survivors = {o: f for o, f in frequency.items() if o != "circle"}
    assert set(survivors) == set(OBJECTS) - {"circle"}
    assert min(survivors.values()) >= 0.03, f"an object vanished with the circles: {frequency}"
