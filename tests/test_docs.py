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


def command_table() -> dict[str, str]:
    """verb ("build" for the bare RECIPE form) -> what the README's command table shows after the verb,
    every row of the verb joined (export has one per format)."""
    from synthvlm_builder.cliargs import VERBS
    table = README[README.index("## Command line"):README.index("## Reviewing a recipe PR")]
    rows: dict[str, list[str]] = {}
    for cell in re.findall(r"^\| `synthvlm-build ([^`]*)` \|", table, re.M):
        words = cell.replace("\\|", "|").split()
        verb = words[0] if words[0] in VERBS else "build"
        rows.setdefault(verb, []).append(" ".join(words[verb != "build":]))
    return {verb: " ".join(parts) for verb, parts in rows.items()}


def test_the_command_table_and_every_verbs_help_agree():
    """Each verb's row in the README shows exactly the arguments its parser takes (as `--flag METAVAR`, a
    choice as `a|b`), and its --help lists --debug and an example: the table cannot fall behind the CLI."""
    from buildutil import cli
    from synthvlm_builder.cliargs import VERBS, build_parser, verb_parser
    table = command_table()
    assert sorted(table) == sorted(("build",) + VERBS)
    for verb in ("build",) + VERBS:
        parser = build_parser() if verb == "build" else verb_parser(verb)
        shown, flags = table[verb], set()
        for action in parser._actions:
            if not action.option_strings:  # a positional: RECIPE, DIR, NEW, RECIPE... (nargs +), [OLD] (nargs ?)
                form = {"+": "{}...", "?": "[{}]"}.get(action.nargs, "{}").format(action.metavar)
                assert form in shown.split(), (verb, form)
                continue
            flag = action.option_strings[-1]
            if flag in ("--help", "--debug"):
                continue
            flags.add(flag)
            value = "" if action.nargs == 0 else " " + (action.metavar or "|".join(action.choices))
            assert f"{flag}{value}" in shown, f"README command table, {verb}: {flag}{value} missing from {shown!r}"
        assert set(re.findall(r"--[a-z][a-z-]*", shown)) == flags, verb  # and nothing the parser does not take
        proc = cli(*([] if verb == "build" else [verb]), "--help")
        assert proc.returncode == 0 and "example:\n  synthvlm-build " in proc.stdout, verb
        assert re.search(r"^  --debug +on an error, print its traceback too$", proc.stdout, re.M), verb


def test_the_top_level_help_names_each_verb_by_a_whole_sentence():
    from buildutil import cli
    from synthvlm_builder.cliargs import DESCRIPTIONS, VERBS
    lines = dict(re.findall(r"^  (\w+) +(.+)$", cli("--help").stdout.split("other commands")[1], re.M))
    assert sorted(lines) == sorted(VERBS)
    for verb, line in lines.items():
        assert DESCRIPTIONS[verb].startswith(line + "."), verb  # a sentence ends there, not mid-way
        assert line.count("(") == line.count(")"), line


def test_reviewing_section_shows_the_preview_screenshot():
    section = README[README.index("## Reviewing a recipe PR"):README.index("## What a build writes")]
    assert "![preview of the quickstart recipe](docs/preview.png)" in section
    assert (ROOT / "docs" / "preview.png").stat().st_size > 10_000
    assert "19.48 denoiser evaluations/s" in section  # the stated reference throughput, as plan.REFERENCE
    from synthvlm_builder.execution.plan import REFERENCE
    assert REFERENCE["denoiser_evals_per_second"] == 19.48
