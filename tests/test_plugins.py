"""Third-party components: the example plugin (examples/plugin/, its own package) adds a caption source,
a text filter, an image score with a model and an exporter through the `synthvlm_builder.plugins` entry
points, and a recipe using all four validates, plans, builds, exports and verifies like a built-in one.

The plugin is made visible the way an install does: a dist-info folder holding its metadata and the
entry points read from its own pyproject.toml, on sys.path beside its source (nothing in
synthvlm_builder/ names any of its components: checked below).
"""
import json
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from buildutil import ROOT, cli, read_rows

PLUGIN = ROOT / "examples" / "plugin"
NAMES = ("uppercase_ratio", "prompt_similarity", "tsv", "imagefolder")


def install(site: Path, version: str = "0.1.0") -> None:
    """The plugin's metadata, as pip writes it, in `site` (a folder on sys.path)."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    info = site / f"synthvlm_example_plugin-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {version}\n")
    group = "synthvlm_builder.plugins"
    lines = [f"[{group}]"] + [f"{k} = {v}" for k, v in project["entry-points"][group].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def plugin(tmp_path):
    site = tmp_path / "site"
    install(site)
    sys.path[:0] = [str(site), str(PLUGIN)]
    yield site
    sys.path.remove(str(site))
    sys.path.remove(str(PLUGIN))
    for name in [m for m in sys.modules if m.startswith("synthvlm_example_plugin")]:
        del sys.modules[name]


def example(tmp_path: Path, text: str | None = None) -> Path:
    """The plugin's example recipe (or `text`) with its caption file, in a fresh folder."""
    d = tmp_path / "recipe"
    shutil.copytree(PLUGIN / "data", d / "data")
    (d / "recipe.yaml").write_text(text if text is not None else (PLUGIN / "recipe.yaml").read_text())
    return d / "recipe.yaml"


def test_nothing_in_the_package_names_the_plugins_components():
    for path in (ROOT / "synthvlm_builder").rglob("*.py"):
        text = path.read_text()
        assert not any(f'"{name}"' in text for name in NAMES), path


def test_the_example_validates_plans_and_names_its_plugin(plugin, tmp_path):
    recipe = example(tmp_path)
    assert cli("validate", recipe).returncode == 0
    plan = json.loads(cli("plan", recipe, "--json").stdout)
    used = {(c["kind"], c["name"]): c for c in plan["components"]}
    for key in [("source", "tsv"), ("caption_step", "uppercase_ratio"), ("score", "prompt_similarity")]:
        assert used[key]["from"] == "synthvlm-example-plugin" and used[key]["version"] == "0.1.0"
    assert [r["row"] for r in plan["curation"]][:3] == ["empty", "reserved_tokens", "uppercase_ratio"]
    text = cli("plan", recipe).stdout
    assert "plugin       synthvlm-example-plugin 0.1.0: source tsv, caption step uppercase_ratio, score" \
           " prompt_similarity" in text
    assert "prompt_similarity (scores), selected by max_prompt_similarity 0.9" in text


def test_the_plugin_version_is_in_the_fingerprint_and_adds_nothing_to_others(plugin, tmp_path):
    from synthvlm_builder.execution.plan import fingerprint
    from synthvlm_builder.recipe import load_recipe
    from test_fingerprints import SHIPPED
    first = fingerprint(load_recipe(example(tmp_path)))
    for name, fp in SHIPPED.items():  # installed, the plugin changes no recipe that does not use it
        assert fingerprint(load_recipe(ROOT / "recipes" / f"{name}.yaml")).startswith(fp)
    shutil.rmtree(next(plugin.glob("*.dist-info")))
    install(plugin, "0.2.0")
    from synthvlm_builder.registry import refresh, registry
    refresh()  # the same sys.path with other contents: find the components again
    assert registry().plugins == {"synthvlm-example-plugin": "0.2.0"}
    assert fingerprint(load_recipe(example(tmp_path / "again"))) != first


def test_without_the_plugin_validate_names_the_package(tmp_path):
    recipe = example(tmp_path)
    proc = cli("validate", recipe, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{recipe}:12:" in proc.stderr and "plugins[0]: the plugin package 'synthvlm-example-plugin' is not" \
        " installed: pip install synthvlm-example-plugin" in proc.stderr
    build = cli(recipe, "--output", tmp_path / "out", check=False)
    assert build.returncode == 2 and "synthvlm-example-plugin" in build.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("edit, field, message", [
    (("uppercase_ratio: {max: 0.5}", "uppercase_ration: {max: 0.5}"), "captions.filters.uppercase_ration",
     "unknown caption step 'uppercase_ration'; did you mean 'uppercase_ratio'? (installed: alnum_ratio,"),
    (("uppercase_ratio: {max: 0.5}", "uppercase_ratio: {max: 2}"), "captions.filters.uppercase_ratio.max",
     "must be <= 1, got 2"),
    (("comment: \"#\"", "comment: \"\""), "captions.sources[0].comment", "must not be empty"),
    (("    prompt: a black background\n", ""), "score.prompt_similarity.prompt", "required field is missing"),
    (("plugins: [synthvlm-example-plugin]\n", ""), "captions.sources[0]",
     "source 'tsv' comes from the plugin package synthvlm-example-plugin 0.1.0: list it under plugins"),
    (("max_prompt_similarity: 0.9", "max_prompt_similarty: 0.9"), "select.max_prompt_similarty",
     "unknown field 'max_prompt_similarty'; did you mean 'max_prompt_similarity'?"),
])
def test_plugin_values_are_checked_like_builtin_ones(plugin, tmp_path, edit, field, message):
    text = (PLUGIN / "recipe.yaml").read_text()
    assert edit[0] in text
    recipe = example(tmp_path, text.replace(edit[0], edit[1]))
    proc = cli("validate", recipe, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f": {field}: {message}" in proc.stderr, proc.stderr


def test_the_example_builds_exports_and_verifies(plugin, tmp_path):
    recipe, out = example(tmp_path), tmp_path / "out"
    proc = cli(recipe, "--output", out)
    rows = read_rows(out)
    assert rows and all(-1 <= r["prompt_similarity"] <= 0.9 for r in rows)  # the score, and its threshold
    stats = json.loads((out / "stats.json").read_text())
    funnel = {f["name"]: f["dropped"] for f in stats["captions"]["filters"]}
    assert funnel["uppercase_ratio"] == 2 and stats["captions"]["read"] == 14  # the two shouted captions
    lock = json.loads((out / "recipe.lock.json").read_text())
    assert lock["plugins"] == {"synthvlm-example-plugin": "0.1.0"}
    assert lock["models"]["prompt_similarity"]["weights"].startswith("sha256:")
    card = (out / "README.md").read_text()
    assert "**Plugin:** `synthvlm-example-plugin` `0.1.0`" in card and "prompt_similarity" in card
    assert "max_prompt_similarity <= 0.9" in proc.stderr

    cli("export", out, "--imagefolder", tmp_path / "folder")
    meta = [json.loads(line) for line in (tmp_path / "folder/train/metadata.jsonl").read_text().splitlines()]
    assert [m["id"] for m in meta] == [r["id"] for r in rows]
    assert all((tmp_path / "folder/train" / m["file_name"]).is_file() for m in meta)
    import datasets
    loaded = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "folder"), split="train",
                                   cache_dir=str(tmp_path / "hf"))
    assert loaded.num_rows == len(rows) and loaded[0]["caption"] == rows[0]["caption"]

    verified = cli("verify", out, "--sample", "2")
    assert "prompt_similarity" in verified.stdout and "verified" in verified.stdout
