"""`review`: a recipe change as one Markdown document (a pull-request comment) or as JSON.

The verdict and the exit code are `diff`'s (report.compare_recipes), the estimate is `plan`'s
(plan.make_plan); this module only gathers them and renders them. The same inputs give the same
bytes: nothing here reads a clock, an absolute path that was not given, or an unordered set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from ..errors import RecipeError
from ..recipe import Recipe
from ..text import md_code, md_text, printable
from .plan import REFERENCE, REFERENCE_TEXT, Plan, make_plan
from .report import UNSET, Comparison, compare_recipes, hours, human_bytes, num, unpinned_sources

ICON = {0: "✅", 2: "❌", 3: "✅", 4: "❌"}
ESTIMATE_ROWS = (  # (label, Plan attribute, formatter)
    ("captions", "captions", num), ("candidates", "candidates", num), ("rows", "rows", num),
    ("denoiser evaluations", "denoiser_evals", num), ("GPU-hours", "gpu_hours", hours),
    ("dataset size", "output_bytes", human_bytes), ("candidate images", "candidate_bytes", human_bytes),
)


@dataclass
class Review:
    old_spec: Optional[str]            # None: NEW is a new recipe, there is nothing to compare it with
    new_spec: str
    problems: dict = field(default_factory=dict)   # "old"/"new" -> [errors.Problem]
    comparison: Optional[Comparison] = None
    plans: dict = field(default_factory=dict)      # "old"/"new" -> Plan
    notes: list = field(default_factory=list)      # unpinned local sources (report.unpinned_sources)

    @property
    def exit_code(self) -> int:
        if self.problems:
            return 2
        return self.comparison.exit_code if self.comparison else 0

    @property
    def verdict(self) -> str:
        if self.problems:
            return "invalid recipe" if "new" in self.problems else "the base version does not load"
        if self.comparison is None:
            return "new recipe"
        return self.comparison.verdict


def make_review(old_spec: Optional[str], new_spec: str) -> Review:
    from ..recipe import load_recipe_any
    review = Review(old_spec, new_spec)
    recipes: dict[str, Recipe] = {}
    for side, spec in (("old", old_spec), ("new", new_spec)):
        if spec is None:
            continue
        try:
            recipes[side] = load_recipe_any(spec)
        except RecipeError as e:
            review.problems[side] = e.problems
    for side, recipe in recipes.items():
        review.plans[side] = make_plan(recipe)
    if not review.problems and "old" in recipes:
        review.comparison = compare_recipes(recipes["old"], recipes["new"])
        review.notes = review.comparison.notes
    elif not review.problems:  # a new recipe: every unpinned local source, as diff warns of unchanged ones
        review.notes = unpinned_sources(None, recipes["new"])
    return review


# --- Markdown -----------------------------------------------------------------------------------

def _code(value) -> str:
    """A recipe value as an inline code span that nothing in it can close, safe inside a table cell."""
    return md_code("(unset)" if value == UNSET else json.dumps(value, ensure_ascii=False))


def _delta(old, new, fmt) -> str:
    if old is None or new is None:
        return "unknown"
    if old == new:
        return "0"
    sign = "+" if new > old else "−"
    pct = f" ({'+' if new > old else '−'}{abs(new - old) / old:.1%})" if old else ""
    return f"{sign}{fmt(abs(new - old))}{pct}"


def to_markdown(review: Review) -> str:
    code = review.exit_code
    # Everything taken from a recipe or a command line goes through md_code/md_text (text.py): a recipe
    # is the PR author's text, and this comment is what reviewers trust.
    lines = [f"### Recipe review: {md_code(review.new_spec, table=False)}", ""]
    lines += [f"**{ICON[code]} {review.verdict}** (exit {code}){_advice(review)}", ""]
    if review.problems:
        for side, problems in review.problems.items():
            spec = review.new_spec if side == "new" else review.old_spec
            lines += [f"#### Validation of {md_code(spec, table=False)}: {len(problems)} problem(s)", ""]
            lines += [f"- {md_code(f'{p.file}:{p.line}:{p.col}', table=False)} {md_code(p.field, table=False)}:"
                      f" {md_text(p.message)}" for p in problems]
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"
    new_plan = review.plans["new"]
    c = review.comparison
    lines += ["| check | result |", "|---|---|", "| validation | ✅ valid |"]
    if c is None:
        lines.append(f"| fingerprint | {md_code(new_plan.fingerprint[:12])} |")
    else:
        fp_note = "data changes" if c.data_changed else "same data"
        lines.append(f"| fingerprint | {md_code(c.old_fingerprint[:12])} → {md_code(c.new_fingerprint[:12])}"
                     f" ({fp_note}) |")
        bump = "bumped" if c.bumped else "not bumped"
        lines.append(f"| version | {md_code(c.old_version)} → {md_code(c.new_version)} ({bump}) |")
        lines += ["", f"#### Changed fields ({len(c.changes)})", ""]
        if c.changes:
            lines += ["| field | old | new | changes the data |", "|---|---|---|---|"]
            lines += [f"| {md_code(x.field)} | {_code(x.old)} | {_code(x.new)} | {'yes' if x.data else 'no'} |"
                      for x in c.changes]
        else:
            lines.append("None.")
    lines += ["", "#### Compute estimate", ""] + _estimate_table(review.plans)
    lines += ["", f"GPU-hours assume {REFERENCE_TEXT}."]
    if not new_plan.captions_exact and new_plan.captions is not None:
        lines.append("Counts are upper bounds: the sources' `limit`s, before caption filtering.")
    if review.notes:
        lines += ["", "#### Notes", ""] + [f"- ⚠️ {n.removeprefix('note: ')}" for n in review.notes]
    return "\n".join(lines) + "\n"


def _advice(review: Review) -> str:
    code = review.exit_code
    if code == 2:
        return ": fix the problems below; nothing else is compared until the recipe loads."
    if code == 4:
        return ": bump `version`, a published tag must never point at other data."
    return "."


def _estimate_table(plans: dict) -> list[str]:
    old, new = plans.get("old"), plans["new"]
    if old is None:
        rows = ["| | new |", "|---|---:|"]
        return rows + [f"| {label} | {fmt(getattr(new, attr))} |" for label, attr, fmt in ESTIMATE_ROWS]
    rows = ["| | old | new | delta |", "|---|---:|---:|---:|"]
    for label, attr, fmt in ESTIMATE_ROWS:
        a, b = getattr(old, attr), getattr(new, attr)
        rows.append(f"| {label} | {fmt(a)} | {fmt(b)} | {_delta(a, b, fmt)} |")
    return rows


# --- JSON ---------------------------------------------------------------------------------------

def _estimate(plan: Plan) -> dict:
    return {attr: getattr(plan, attr) for _, attr, _ in ESTIMATE_ROWS} | {"exact": plan.captions_exact}


def to_json(review: Review) -> dict:
    c = review.comparison
    # The specs come from the command line (a file name may not be UTF-8) and a problem may quote a
    # recipe key: printable() keeps them encodable and one line, as validate prints them.
    spec = None if review.old_spec is None else printable(review.old_spec)
    out = {"old": spec, "new": printable(review.new_spec), "exit_code": review.exit_code,
           "verdict": review.verdict, "valid": "new" not in review.problems,
           "problems": {side: [{"file": printable(p.file), "line": p.line, "col": p.col,
                                "field": printable(p.field), "message": printable(p.message)}
                               for p in problems]
                        for side, problems in review.problems.items()}}
    if c is not None:
        out["fingerprint"] = {"old": c.old_fingerprint, "new": c.new_fingerprint, "changed": c.data_changed}
        out["version"] = {"old": c.old_version, "new": c.new_version, "bumped": c.bumped}
        out["changes"] = [{"field": x.field, "old": None if x.old == UNSET else x.old,
                           "new": None if x.new == UNSET else x.new, "data": x.data} for x in c.changes]
    elif "new" in review.plans:
        out["fingerprint"] = {"new": review.plans["new"].fingerprint}
    if not review.problems:
        out["notes"] = review.notes
    if review.plans:
        estimate = {side: _estimate(plan) for side, plan in review.plans.items()}
        if len(review.plans) == 2:
            estimate["delta"] = {attr: None if estimate["old"][attr] is None or estimate["new"][attr] is None
                                 else estimate["new"][attr] - estimate["old"][attr]
                                 for _, attr, _ in ESTIMATE_ROWS}
        out["estimate"] = estimate | {"reference": REFERENCE}
    return out
