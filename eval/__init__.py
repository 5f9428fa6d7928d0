"""Evaluation: judges, the UnlearnDiffAtk attack, utility metrics, scorecards and reports."""

from .judges import Judge, Verdict, list_judges, load_judge, register_judge

__all__ = ["Judge", "Verdict", "list_judges", "load_judge", "register_judge"]
