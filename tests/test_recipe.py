"""The recipe language: every bad input gets one located message, exit 2, nothing written."""
import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from synthvlm_builder.cli import main
from synthvlm_builder.recipe.config import Recipe
from synthvlm_builder.recipe import load_recipe, load_recipe_text
from synthvlm_builder.recipe.loader import PRESETS

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
name: test-recipe
version: 1.0.0
seed: 0
captions:
  sources:
    - type: jsonl
      path: caps.jsonl
      limit: 10
generate:
  model: builtin:tiny-sd
  steps: 2
  resolution: [64, 64]
  batch_size: 4
  dtype: float32
score:
  clip:
    model: builtin:tiny-clip
select:
  size: 4
execution:
  device: cpu
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "caps.jsonl").write_text('{"caption": "a red bicycle"}\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def snapshot(d: Path):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_base_recipe_is_valid(workdir, capsys):
    (workdir / "r.yaml").write_text(BASE)
    code, out, err = run(["validate", "r.yaml"], capsys)
    assert code == 0, err
    assert "r.yaml: ok" in out


@pytest.mark.parametrize("name", ["quickstart", "screened", "synthvlm_paper"])
def test_recipe_pickles(name):
    """The Ray executor ships the recipe to its actors by pickle: every section comes back equal, and still
    reads each component and threshold, set or not (an unset one as None)."""
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / f"{name}.yaml")
    again = pickle.loads(pickle.dumps(recipe))
    assert again == recipe
    for section, names in (("score", ("clip", "ssim", "aesthetic")),
                           ("screen", ("nsfw", "watermark", "near_duplicates")),
                           ("select", ("min_clip_score", "min_aesthetic", "min_score"))):
        for key in names:
            assert getattr(getattr(again, section), key) == getattr(getattr(recipe, section), key), (section, key)


BAD = [
    # (id, edit(old, new), line, col, field, message fragment)
    ("malformed-yaml", ("  steps: 2\n", "  steps: [2\n"), 12, 13, "(root)",
     "invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence started at line 11, column 10)"),
    ("unknown-top-level-key", ("seed: 0\n", "seed: 0\nseeds: 3\n"), 4, 1, "seeds", "did you mean 'seed'"),
    ("unknown-nested-key", ("  steps: 2\n", "  step: 2\n"), 11, 3, "generate.step", "did you mean 'steps'"),
    ("wrong-type", ("  steps: 2\n", "  steps: two\n"), 11, 10, "generate.steps", 'must be an integer, got string "two"'),
    ("out-of-range", ("  steps: 2\n", "  steps: 5000\n"), 11, 10, "generate.steps", "must be <= 1000, got 5000"),
    ("resolution-not-multiple-of-8", ("[64, 64]", "[64, 100]"), 12, 20, "generate.resolution[1]",
     "must be a multiple of 8, got 100"),
    ("bad-semver", ("version: 1.0.0", "version: 1.0"), 2, 10, "version", "must be a string, got number 1.0"),
    ("bad-semver-string", ("version: 1.0.0", "version: v1.0.0"), 2, 10, "version", "semantic version"),
    ("duplicate-key", ("  steps: 2\n", "  steps: 2\n  steps: 3\n"), 12, 3, "generate.steps", "duplicate key 'steps'"),
    ("empty-file", None, 1, 1, "(root)", "recipe is empty"),
    ("non-mapping-root", None, 1, 1, "(root)", "must be a mapping"),
    ("missing-required-section", ("select:\n  size: 4\n", ""), 1, 1, "select", "required field is missing"),
    ("missing-caption-file", ("path: caps.jsonl", "path: nope.jsonl"), 7, 13, "captions.sources[0].path",
     "caption file not found"),
    ("missing-local-model-dir", ("model: builtin:tiny-sd", "model: ./models/my-sdxl"), 10, 10, "generate.model",
     "does not exist or has no model_index.json"),
    ("unknown-source-type", ("type: jsonl", "type: webdataset"), 6, 13, "captions.sources[0].type",
     "must be one of llava_json, hf_dataset, jsonl, csv, parquet, text"),
    ("unknown-builtin-model", ("builtin:tiny-sd", "builtin:huge-sd"), 10, 10, "generate.model",
     "unknown builtin model 'builtin:huge-sd'"),
    ("unknown-builtin-clip", ("builtin:tiny-clip", "builtin:big-clip"), 17, 12, "score.clip.model",
     "unknown builtin model"),
    ("multiple-documents", ("execution:", "---\nexecution:"), 20, 1, "(root)", "more than one YAML document"),
    ("yes-is-not-a-boolean", ("select:\n  size: 4\n", "select:\n  size: 4\n  allow_fewer: yes\n"), 20, 16,
     "select.allow_fewer", 'must be a boolean, got string "yes"'),
    ("prompt-with-image-token", ("execution:", "format:\n  prompts: ['Describe <image>']\nexecution:"), 21, 13,
     "format.prompts[0]", "must not contain <image>"),
    ("size-beyond-limits", ("  size: 4\n", "  size: 11\n"), 19, 9, "select.size", "can never be selected"),
    ("clip-without-pretrained", ("model: builtin:tiny-clip", "model: ViT-B-32"), 16, 3, "score.clip.pretrained",
     "without it the weights would be random"),
    ("missing-open-clip-folder", ("model: builtin:tiny-clip", "model: local-dir:./nope"), 17, 12,
     "score.clip.model", "has no open_clip_config.json"),
    ("column-on-llava", ("type: jsonl\n      path: caps.jsonl", "type: llava_json\n      path: caps.jsonl\n"
                         "      column: text"), 8, 7, "captions.sources[0].column", "is not used by llava_json"),
    ("bad-device", ("device: cpu", "device: tpu"), 21, 11, "execution.device", "must be auto, cpu, mps, cuda"),
    ("merge-key", ("execution:\n  device: cpu\n", "x: &x {device: cpu}\nexecution:\n  <<: *x\n"), 22, 3,
     "execution", "merge keys"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_recipe(case, workdir, capsys):
    name, edit, line, col, field, fragment = case
    if name == "empty-file":
        text = "# nothing here\n"
    elif name == "non-mapping-root":
        text = "- just\n- a list\n"
    else:
        old, new = edit
        assert old in BASE
        text = BASE.replace(old, new, 1)
    (workdir / "bad.yaml").write_text(text)
    before = snapshot(workdir)
    for verb in (["validate", "bad.yaml"], ["plan", "bad.yaml"], ["bad.yaml"]):
        code, out, err = run(verb, capsys)
        assert code == 2, (verb, out, err)
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert any(ln.startswith(f"bad.yaml:{line}:{col}: {field}: ") and fragment in ln for ln in lines), err
    assert snapshot(workdir) == before, "a bad recipe must leave nothing written"


def test_python_tag_never_runs(workdir, capsys):
    marker = workdir / "PWNED"
    text = BASE.replace("seed: 0\n", f'seed: !!python/object/apply:os.system ["touch {marker}"]\n')
    (workdir / "evil.yaml").write_text(text)
    code, _, err = run(["validate", "evil.yaml"], capsys)
    assert code == 2
    assert "evil.yaml:3:7: seed: tag !!python/object/apply:os.system is not allowed" in err
    assert not marker.exists()


def test_alias_bomb_is_refused_before_expansion(workdir, capsys):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for n in "bcdefghi":
        lines.append(f"{n}: &{n} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = n
    (workdir / "bomb.yaml").write_text("\n".join(lines) + "\n")
    code, _, err = run(["validate", "bomb.yaml"], capsys)
    assert code == 2
    # 9 aliases per level over 8 levels would expand to 9**9 nodes; the reader stops at its limit.
    assert "bomb.yaml:" in err and "more than 100000 nodes" in err


def test_all_problems_reported_at_once(workdir, capsys):
    text = BASE.replace("  steps: 2\n", "  steps: 0\n").replace("seed: 0", "seed: -1").replace(
        "  size: 4\n", "  size: 4\n  colour: red\n")
    (workdir / "many.yaml").write_text(text)
    code, _, err = run(["validate", "many.yaml"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert [ln.split(": ")[0] for ln in lines] == ["many.yaml:3:7", "many.yaml:11:10", "many.yaml:20:3"]
    assert "seed: must be >= 0, got -1" in lines[0]
    assert "select.colour: unknown field 'colour'" in lines[2]


def test_debug_shows_traceback(workdir, capsys):
    (workdir / "bad.yaml").write_text(BASE.replace("steps: 2", "steps: 0"))
    code, _, err = run(["validate", "bad.yaml", "--debug"], capsys)
    assert code == 2 and "Traceback" in err


def test_missing_recipe_file(workdir, capsys):
    code, _, err = run(["validate", "nope.yaml"], capsys)
    assert code == 2 and err.startswith("nope.yaml:1:1: (file): cannot read recipe")


def test_real_entry_point_exit_code_and_stderr(workdir):
    (workdir / "bad.yaml").write_text(BASE.replace("steps: 2", "steps: 5000"))
    proc = subprocess.run([sys.executable, "-m", "synthvlm_builder", "validate", "bad.yaml"],
                          capture_output=True, text=True, cwd=workdir)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bad.yaml:11:10: generate.steps: must be <= 1000, got 5000"


def test_result_is_frozen_typed_and_resolved(workdir):
    r = load_recipe(workdir / "r.yaml") if (workdir / "r.yaml").exists() else None
    (workdir / "r.yaml").write_text(BASE)
    r = load_recipe(workdir / "r.yaml")
    assert isinstance(r, Recipe)
    assert r.generate.resolution == (64, 64) and r.generate.guidance_scale == 7.5  # schema default
    assert r.captions.sources[0].path == str(workdir / "caps.jsonl")  # resolved against the recipe file
    assert r.captions.sources[0].name == "caps"
    assert r.score.clip.prefix == "A photo depicts "
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.generate.steps = 3  # frozen


def test_relative_paths_resolve_against_recipe_not_cwd(tmp_path, monkeypatch):
    sub = tmp_path / "recipes"
    (sub / "data").mkdir(parents=True)
    (sub / "data" / "caps.jsonl").write_text('{"caption": "x"}\n')
    (sub / "r.yaml").write_text(BASE.replace("path: caps.jsonl", "path: data/caps.jsonl"))
    monkeypatch.chdir(tmp_path)
    assert load_recipe("recipes/r.yaml").captions.sources[0].path == str(sub / "data" / "caps.jsonl")


def test_preset_reproduces_paper_thresholds_and_explicit_keys_override(workdir):
    text = BASE.replace("      limit: 10\n", "      limit: 10\n  filters:\n    preset: synthvlm\n")
    f = load_recipe_text(text, workdir / "r.yaml").captions.filters
    assert (f.alnum_ratio.min, f.alnum_ratio.max) == (0.60, None)
    assert (f.char_repetition.rep_len, f.char_repetition.max) == (10, 0.0937)
    assert (f.word_repetition.rep_len, f.word_repetition.max) == (10, 0.0309)
    assert (f.special_char_ratio.min, f.special_char_ratio.max) == (0.165, 0.420)
    assert f.flagged_words.max == 0.0
    assert PRESETS["synthvlm"]["alnum_ratio"] == {"min": 0.60}
    text2 = text.replace("    preset: synthvlm\n", "    preset: synthvlm\n    special_char_ratio: {max: 0.5}\n"
                         "    alnum_ratio: {min: 0.7}\n")
    f2 = load_recipe_text(text2, workdir / "r.yaml").captions.filters
    assert (f2.special_char_ratio.min, f2.special_char_ratio.max) == (0.165, 0.5)  # field by field
    assert f2.alnum_ratio.min == 0.7
    assert f2.char_repetition.max == 0.0937  # untouched preset keys stay


def test_every_shipped_recipe_validates(capsys):
    recipes = sorted(str(p) for p in (ROOT / "recipes").glob("*.yaml"))
    assert len(recipes) >= 3
    code, out, err = run(["validate", *recipes], capsys)
    assert code == 0, err
    assert out.count(": ok") == len(recipes)


def test_every_shipped_recipe_opens_with_its_command():
    for path in (ROOT / "recipes").glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first == f"# Run: synthvlm-build recipes/{path.name}", path


def test_schema_and_dataclasses_agree():
    """Every schema property is a dataclass field of the same name (and vice versa)."""
    import dataclasses
    import typing
    from synthvlm_builder.recipe import config as C
    from synthvlm_builder.recipe.schema import resolve_ref, schema

    def check(cls, node, where):
        node = resolve_ref(node)
        props = set(node.get("properties", {}))
        fields = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("flatten")} - (
            {"path", "base", "text"} if cls is C.Recipe else set())
        assert props == fields, (where, props ^ fields)
        hints = typing.get_type_hints(cls)
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        for name in props:
            sub = resolve_ref(node["properties"][name])
            if "default" in sub and name in defaults:  # code that builds configs directly sees the same defaults
                default = defaults[name]
                assert (list(default) if isinstance(default, tuple) else default) == sub["default"], (where, name)
            hint = hints[name]
            if typing.get_origin(hint) is typing.Union:  # Optional[X] -> X
                hint = [a for a in typing.get_args(hint) if a is not type(None)][0]
            target = hint
            if typing.get_origin(target) is tuple and sub.get("type") == "array":
                items = resolve_ref(sub["items"])
                args = typing.get_args(target)
                if items.get("type") == "object":
                    check(args[0], items, f"{where}.{name}[]")
            elif dataclasses.is_dataclass(target):
                check(target, sub, f"{where}.{name}")

    check(C.Recipe, schema(), "recipe")
