"""The papers' claims checked against leaderboard rows (eval/claims.py): each verdict follows the numbers."""

from __future__ import annotations

import json

import pytest

from eval.claims import VERDICTS, check_claims, claims_markdown
from eval.study import build_leaderboard


def _row(method: str, concept: str, **means: float) -> dict:
    return {"method": method, "concept": concept, **{k: {"mean": v, "std": 0.01, "n": 3} for k, v in means.items()}}


def _verdicts(rows: list[dict]) -> dict[str, str]:
    return {check.paper: check.verdict for check in check_claims(rows)}


def test_every_claim_holds_when_the_numbers_say_so():
    rows = [
        _row("esd (toy)", c, **{"forget": 0.2, "paraphrase": 0.5, "retain shift": 0.05, "FID": 0.01},
             **{"pre-ASR": 0.1, "ASR": 0.9})
        for c in ("star", "heart")
    ]  # fmt: skip
    rows += [_row("advunlearn", c, **{"pre-ASR": 0.0, "ASR": 0.4}) for c in ("star", "heart")]
    rows += [_row("salun", c, **{"forget": 0.1, "retain shift": 0.08, "pre-ASR": 0.0, "ASR": 0.5}) for c in ("star",)]
    rows += [_row("doco", c, **{"paraphrase": 0.2}) for c in ("star", "heart")]
    rows += [_row("sfd", c, **{"forget": 0.15, "retain shift": 0.04, "FID": 0.012}) for c in ("star", "heart")]
    verdicts = _verdicts(rows)
    assert verdicts == {
        "AdvUnlearn": "holds",
        "UnlearnDiffAtk": "holds",
        "SalUn": "holds",
        "DoCo": "holds",
        "SFD": "holds",
        "Adapt-then-Unlearn": "not measured",
        "Text-to-Unlearn": "not measured",
    }


def test_verdicts_turn_with_the_numbers_mixed_per_concept():
    rows = [_row("esd", c, **{"forget": 0.2, "pre-ASR": 0.1, "ASR": 0.6, "FID": 0.01}) for c in ("star", "heart")]
    # AdvUnlearn beats ESD on star only: mixed. SalUn forgets better but moves another concept by 30 points: no.
    rows += [_row("advunlearn", "star", **{"pre-ASR": 0.1, "ASR": 0.3})]
    rows += [_row("advunlearn", "heart", **{"pre-ASR": 0.1, "ASR": 0.7})]
    rows += [_row("salun", c, **{"forget": 0.0, "retain shift": 0.3}) for c in ("star", "heart")]
    # SFD forgets but its FD-toy is 3x ESD's: not comparable quality.
    rows += [_row("sfd", c, **{"forget": 0.1, "retain shift": 0.02, "FID": 0.03}) for c in ("star", "heart")]
    verdicts = _verdicts(rows)
    assert verdicts["AdvUnlearn"] == "mixed"
    assert verdicts["SalUn"] == "does not hold"
    assert verdicts["SFD"] == "does not hold"
    assert verdicts["DoCo"] == "not measured"  # no DoCo rows
    # The attack rows: ESD 10 -> 60 on both, AdvUnlearn 10 -> 30 and 10 -> 70: every one rises.
    assert verdicts["UnlearnDiffAtk"] == "holds"
    rows.append(_row("doco", "star", **{"pre-ASR": 0.5, "ASR": 0.5}))  # the attack found nothing more
    assert _verdicts(rows)["UnlearnDiffAtk"] == "mixed"


def test_gan_claims_read_their_own_columns():
    rows = [_row("atu", "circle", PUL=0.95, **{"retain shift": 0.05}), _row("atu", "star", PUL=0.7)]
    rows[1]["retain shift"] = {"mean": 0.02, "std": 0.0, "n": 3}
    rows += [_row("text_to_unlearn", "circle", PUL=0.8, **{"retain shift": 0.04})]
    verdicts = _verdicts(rows)
    assert verdicts["Adapt-then-Unlearn"] == "mixed"
    assert verdicts["Text-to-Unlearn"] == "holds"
    # The concept gone but another object moved by 18 points: the "others kept" half of the claim fails.
    rows[-1]["retain shift"]["mean"] = 0.18
    assert _verdicts(rows)["Text-to-Unlearn"] == "does not hold"
    # Without a retain shift column the claim cannot be checked.
    assert _verdicts([_row("text_to_unlearn", "circle", PUL=0.8)])["Text-to-Unlearn"] == "not measured"


def test_the_leaderboard_files_carry_the_claims(tmp_path):
    records = [
        {"index": i, "model": "toy", "method": m, "concept": "star", "seed": 0, "metrics": metrics}
        for i, (m, metrics) in enumerate(
            [("esd", {"pre-ASR": 0.0, "ASR": 0.75, "forget": 0.1}), ("advunlearn", {"pre-ASR": 0.0, "ASR": 0.5})]
        )
    ]
    board = build_leaderboard(records)
    payload = json.loads(board.to_json())
    assert {c["paper"] for c in payload["claims"]} >= {"AdvUnlearn", "UnlearnDiffAtk", "SFD"}
    assert all(c["verdict"] in VERDICTS for c in payload["claims"])
    adv = next(c for c in payload["claims"] if c["paper"] == "AdvUnlearn")
    assert adv["verdict"] == "holds" and "50.0 %" in adv["evidence"] and "75.0 %" in adv["evidence"]
    markdown = board.to_markdown()
    assert "## The papers' claims" in markdown and "| AdvUnlearn |" in markdown
    assert claims_markdown(board.claims()).count("\n") == len(payload["claims"]) + 1


@pytest.mark.parametrize("missing", ["ASR", "pre-ASR"])
def test_a_claim_without_its_column_is_not_measured(missing):
    means = {"pre-ASR": 0.1, "ASR": 0.5}
    means.pop(missing)
    rows = [_row("esd", "star", **means), _row("advunlearn", "star", **means)]
    verdicts = _verdicts(rows)
    assert verdicts["UnlearnDiffAtk"] == "not measured"
    # Equal ASRs are not "below": without pre-ASR the AdvUnlearn claim is still checked, and fails.
    assert verdicts["AdvUnlearn"] == ("not measured" if missing == "ASR" else "does not hold")


def test_the_advunlearn_preset_search_passes_a_candidate_only_on_every_seed(monkeypatch):
    """benchmarks/advunlearn_presets.py: a candidate passes when its ASR is below ESD's at every (concept, seed) and
    no other object moved by more than 10 points; one seed at ESD's ASR fails it; a planned run not yet finished
    leaves the verdict open."""
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    sys.modules.pop("advunlearn_presets", None)
    from advunlearn_presets import summarise

    def record(method, label, seed, asr, shift=0.02):
        metrics = {"ASR": asr, "pre-ASR": 0.0, "forget": 0.1, "retain shift": shift}
        return {"method": method, "label": label, "concept": "star", "seed": seed, "metrics": metrics}

    records = [record("esd", "esd (toy)", s, 0.75) for s in (0, 1, 2)]
    records += [record("advunlearn", "good", s, 0.25) for s in (0, 1, 2)]
    records += [record("advunlearn", "tied", s, a) for s, a in ((0, 0.25), (1, 0.75), (2, 0.25))]
    records += [record("advunlearn", "damaging", s, 0.25, shift=0.29 if s == 1 else 0.0) for s in (0, 1, 2)]
    planned = {"good": [("star", 0), ("star", 1), ("star", 2)], "partial": [("star", 0), ("star", 1)]}
    records += [record("advunlearn", "partial", 0, 0.0)]
    planned["failed early"] = [("star", 0), ("star", 1)]
    records += [record("advunlearn", "failed early", 0, 0.75)]
    result = summarise(records, planned)
    assert result["good"]["passes"] is True and result["good"]["summary"]["seeds below esd"] == 3
    assert result["tied"]["passes"] is False  # equal to ESD's at seed 1 is not below it
    assert result["damaging"]["passes"] is False
    assert result["partial"]["passes"] is None and result["partial"]["missing"] == ["star seed 1"]
    assert result["failed early"]["passes"] is False  # one run at ESD's ASR decides it before seed 1 runs

    # A later session: the earlier JSON's runs and ESD ASRs carry over; a re-measured run replaces its earlier one;
    # a planned candidate without a run is listed with every point missing.
    later = [record("advunlearn", "partial", 1, 0.5), record("advunlearn", "good", 0, 0.75)]
    planned["unstarted"] = [("star", 0)]
    merged = summarise(later, planned, {"candidates": result}, {"unstarted": {"retain_loss_weight": 10.0}})
    assert [run["ASR"] for run in merged["partial"]["runs"]] == [0.0, 0.5]
    assert merged["partial"]["passes"] is True and merged["partial"]["runs"][0]["from"] == "previous"
    assert merged["good"]["passes"] is False  # seed 0 re-measured at ESD's ASR, read from the earlier JSON
    assert merged["unstarted"] == {
        "overrides": {"retain_loss_weight": 10.0},
        "runs": [],
        "missing": ["star seed 0"],
        "passes": None,
        "summary": {"ASR": None, "retain shift": None, "seeds below esd": 0, "runs": 0},
    }


def test_preset_robustness_reads_spreads_across_studies_and_thread_counts(monkeypatch):
    """benchmarks/preset_robustness.py: a method holds when forget stays within 25 points over every run (two
    studies here, one per thread count, and a carry-over study), ASR within 25 over the leaderboard's runs, and no
    run shifts another object by more than 10 points; the thread deltas pair runs of the same concept and seed."""
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    sys.modules.pop("preset_robustness", None)
    from preset_robustness import summarise

    def record(method, seed, threads, forget, asr, shift=0.0, concept="star"):
        metrics = {"forget": forget, "ASR": asr, "pre-ASR": 0.0, "retain shift": shift}
        hardware = {"torch_threads": threads}
        return {"method": method, "concept": concept, "seed": seed, "metrics": metrics, "hardware": hardware}

    two = [record("steady", s, 2, 0.1, 0.5) for s in (0, 1)] + [record("swinging", s, 2, 0.1, 0.9) for s in (0, 1)]
    one = [record("steady", s, 1, 0.2, 0.6) for s in (0, 1)] + [record("swinging", 0, 1, 0.5, 0.2, shift=0.3)]
    one += [record("alone", 0, 1, 0.1, None)]
    two += [record("unerased", s, 2, 0.0, 0.5) for s in (0, 1)]
    # On an object outside the leaderboard: steady erases it too (its ASR there is reported, not barred); the
    # other preset barely erases it.
    carry = [record("steady", 0, 2, 0.15, 0.0, concept="cross"), record("unerased", 0, 2, 0.8, 1.0, concept="cross")]
    result = summarise({"two threads": two, "one thread": one, "carry-over": carry}, {"carry-over"})
    assert result["steady"]["verdict"] == "holds"
    assert result["steady"]["spreads"]["forget"]["range"] == pytest.approx(0.1)
    deltas = result["steady"]["thread_deltas"]
    assert [(d["seed"], d["threads"]) for d in deltas] == [(0, [1, 2]), (1, [1, 2])]
    assert deltas[0]["forget"] == pytest.approx(-0.1)
    swinging = result["swinging"]["verdicts"]
    assert swinging == {"forget": "does not hold", "ASR": "does not hold", "retain shift": "does not hold"}
    assert result["alone"]["verdict"] == "holds so far"  # retain shift measured, forget and ASR need two runs
    assert result["steady"]["spreads"]["ASR"]["range"] == pytest.approx(0.1)
    assert result["steady"]["spreads"]["ASR, every object"]["range"] == pytest.approx(0.6)
    assert [r["role"] for r in result["steady"]["runs"]].count("carry-over") == 1
    assert result["unerased"]["verdicts"] == {"forget": "does not hold", "ASR": "holds", "retain shift": "holds"}

    # --update: a re-run of one method's preset replaces its entry and leaves the others (and their studies) alone.
    from preset_robustness import updated_report

    previous = {"studies": ["two threads", "one thread"], "carryover": [], "methods": result}
    rerun = summarise({"steady again": [record("steady", s, 2, 0.3, 0.5) for s in (0, 1)]})
    merged = updated_report(previous, {"studies": ["steady again"], "carryover": [], "methods": rerun})
    assert merged["methods"]["steady"]["spreads"]["forget"]["max"] == pytest.approx(0.3)
    assert merged["methods"]["swinging"] == result["swinging"]
    assert merged["studies"] == ["two threads", "one thread", "steady again"]
