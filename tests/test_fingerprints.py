"""The data fingerprint of every shipped recipe and of 58 variants of them, as literal values.

tests/golden/fingerprints.json was written once by the code that published the first releases (before
components came from a registry); a published tag names its data by this fingerprint, so a refactor,
a new component or a new field must reproduce every value here exactly. A fingerprint that changes on
purpose needs DATA_FORMAT bumped and this file rewritten, never silently.
"""
import json
from pathlib import Path

import pytest

from synthvlm_builder.execution.plan import fingerprint
from synthvlm_builder.recipe import load_recipe, load_recipe_text

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests/golden/fingerprints.json").read_text())
SHIPPED = {"quickstart": "5a03f9cb6cf9", "llava_100k": "317b260b0e4d", "synthvlm_paper": "ea7df7b05b1b",
           "screened": "531877d1ae23", "sd3_medium": "b7b8d4455566", "curation_tiny": "a09329d7c264"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_recipes_keep_their_published_fingerprints(name):
    assert fingerprint(load_recipe(ROOT / "recipes" / f"{name}.yaml")).startswith(SHIPPED[name])
    assert GOLDEN[name]["fingerprint"].startswith(SHIPPED[name])


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_variants_keep_their_fingerprints(name):
    case = GOLDEN[name]
    recipe = load_recipe_text(case["recipe"], ROOT / "recipes" / f"{name}.yaml", base=ROOT / "recipes")
    assert fingerprint(recipe) == case["fingerprint"]


def test_only_data_fields_separate_the_variants():
    """The corpus is not degenerate: variants that change data have distinct fingerprints, and those
    that change only where or how a build runs (or how it is named) share the quickstart's."""
    same = {n for n, c in GOLDEN.items() if c["fingerprint"] == GOLDEN["quickstart"]["fingerprint"]}
    assert same == {"quickstart", "q_batch", "q_batch_auto", "q_compile", "q_exec", "q_name_version",
                    "q_output_publish", "q_units_cos"}
    assert len({c["fingerprint"] for c in GOLDEN.values()}) == 54
