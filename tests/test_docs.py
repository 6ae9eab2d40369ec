"""The README stays true: its recipe reference is the schema's, its commands exist."""
import re
from pathlib import Path

from synthvlm_builder.recipe.docs import END, START, readme_section, schema_text
from synthvlm_builder.recipe.schema import schema

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_recipe_reference_matches_schema():
    start, end = README.index(START), README.index(END) + len(END)
    assert README[start:end] == readme_section(), \
        "README drifted from the schema: run `python -m synthvlm_builder.recipe.docs --write README.md`"


def test_schema_file_is_the_generated_schema():
    """schemas/recipe.schema.json is what the core's schema and the built-in components' fragments make."""
    assert (ROOT / "schemas" / "recipe.schema.json").read_text() == schema_text(), \
        "schemas/recipe.schema.json drifted: run `python -m synthvlm_builder.recipe.docs --write README.md`"


def test_every_schema_field_has_a_description():
    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            sub_resolved = sub
            assert sub_resolved.get("description"), f"{path}{key} has no description"
            walk(sub_resolved, f"{path}{key}.")
            if isinstance(sub_resolved.get("items"), dict):
                walk(sub_resolved["items"], f"{path}{key}[].")
    walk(schema(), "")


def test_every_object_is_closed():
    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node.get("additionalProperties") is False, path
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")
    walk(schema(), "#")


def test_readme_has_the_two_setup_commands():
    blocks = re.findall(r"<!-- ci:(\w+) -->\n```bash\n(.+?)\n```", README, re.S)
    cmds = dict(blocks)
    assert "synthvlm-build recipes/quickstart.yaml" in cmds["quickstart"]
    assert 'pip install -e ".[dev]"' in cmds["test"] and "pytest" in cmds["test"]


def test_every_verb_is_in_the_command_table_and_has_help_with_an_example():
    from buildutil import cli
    from synthvlm_builder.cli import VERBS
    table = README[README.index("## Command line"):README.index("## Reviewing a recipe PR")]
    for verb in VERBS:
        assert f"| `synthvlm-build {verb} " in table, verb
        proc = cli(verb, "--help")
        assert proc.returncode == 0 and "example:\n  synthvlm-build " in proc.stdout, verb


def test_reviewing_section_shows_the_preview_screenshot():
    section = README[README.index("## Reviewing a recipe PR"):README.index("## What a build writes")]
    assert "![preview of the quickstart recipe](docs/preview.png)" in section
    assert (ROOT / "docs" / "preview.png").stat().st_size > 10_000
    assert "19.48 denoiser evaluations/s" in section  # the stated reference throughput, as plan.REFERENCE
    from synthvlm_builder.execution.plan import REFERENCE
    assert REFERENCE["denoiser_evals_per_second"] == 19.48
