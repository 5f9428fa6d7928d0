"""Evaluation: judges, the UnlearnDiffAtk attack, utility metrics, scorecards (diffusion and GAN) and reports.

``eval.scorecard`` is the function (DESIGN.md's contract); its module is ``eval.scorecard`` in ``sys.modules``. The
settings of the attack and the scorecard are dataclasses (``AttackConfig``, ``ScorecardConfig``) whose fields are
also the flags of ``erasure-studio attack`` and ``erasure-studio eval`` (``ui/commands/``).
"""

from .accuracy import AccuracyResult, Prediction, accuracy_from_pipeline, ua_ira_cra
from .clip_score import ClipScoreResult, clip_score, clip_scores, load_clip
from .fid import DistanceResult, frechet_distance, kernel_distance, load_feature_extractor
from .gan_scorecard import GANScorecard, gan_scorecard
from .judges import Judge, Verdict, list_judges, load_judge, register_judge
from .prompts import PromptRow, PromptSet, load_prompts
from .scorecard import Scorecard, ScorecardConfig, scorecard
from .unlearndiffatk import AttackConfig, AttackReport, attack

__all__ = [
    "AccuracyResult",
    "AttackConfig",
    "AttackReport",
    "ClipScoreResult",
    "DistanceResult",
    "GANScorecard",
    "Judge",
    "Prediction",
    "PromptRow",
    "PromptSet",
    "Scorecard",
    "ScorecardConfig",
    "Verdict",
    "accuracy_from_pipeline",
    "attack",
    "clip_score",
    "clip_scores",
    "frechet_distance",
    "gan_scorecard",
    "kernel_distance",
    "list_judges",
    "load_clip",
    "load_feature_extractor",
    "load_judge",
    "load_prompts",
    "register_judge",
    "scorecard",
    "ua_ira_cra",
]
