"""Evaluation: judges, the UnlearnDiffAtk attack, utility metrics, scorecards and reports."""

from .judges import Judge, Verdict, list_judges, load_judge, register_judge
from .prompts import PromptRow, PromptSet, load_prompts
from .unlearndiffatk import AttackConfig, AttackReport, attack

__all__ = [
    "AttackConfig",
    "AttackReport",
    "Judge",
    "PromptRow",
    "PromptSet",
    "Verdict",
    "attack",
    "list_judges",
    "load_judge",
    "load_prompts",
    "register_judge",
]
