"""The Python API (README "Python API"): the README's example runs as written (on a tiny recipe), the
results are the build's own data, errors carry the CLI's located problems, and no library module prints."""
import ast
import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml

import synthvlm_builder
from buildutil import ROOT, cli, read_rows, write_recipe
from synthvlm_builder import (BuildError, InputError, Recipe, RecipeError, Recorder, Reporter, build, captions,
                              export, iter_captions, plan, reporter)
from synthvlm_builder.errors import error_line
from synthvlm_builder.stages.rows import features

README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Python API"):README.index("## Publish")]


@pytest.fixture(scope="module")
def readme(tmp_path_factory):
    """The README's Python API blocks, run in order in one namespace, on the tiny recipe in place of the
    quickstart (the same code; seconds instead of a minute), from a fresh folder with its own datasets cache."""
    tmp = tmp_path_factory.mktemp("readme")
    recipe = write_recipe(tmp / "recipe", n_captions=2, size=2)
    blocks = re.findall(r"```python\n(.+?)```", SECTION, re.S)
    assert len(blocks) == 2 and all('"recipes/quickstart.yaml"' not in b for b in blocks[1:])
    code = "\n".join(blocks).replace('"recipes/quickstart.yaml"', repr(str(recipe)))
    assert str(recipe) in code
    ns = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", tmp / "hf-datasets")
        exec(compile(code, "README.md#python-api", "exec"), ns)
    return tmp, recipe, ns


def test_readme_example_builds_and_returns_the_build(readme):
    tmp, recipe_path, ns = readme
    result, ds = ns["result"], ns["ds"]
    out = tmp / result.path
    assert result.path == Path("build/quickstart") and result.action == "built" and result.rows == 2
    assert json.loads((out / "stats.json").read_text()) == result.stats
    assert result.fingerprint == json.loads((out / "recipe.lock.json").read_text())["fingerprint"]
    assert ns["plan"](ns["recipe"]).fingerprint == result.fingerprint
    assert isinstance(ds, datasets.Dataset) and ds.features == features(ns["recipe"])
    built = read_rows(out)
    assert ds["id"] == [r["id"] for r in built] and ds["caption"] == [r["caption"] for r in built]
    assert [im.size for im in ds["image"]] == [(64, 64)] * 2
    assert ds[0]["score"] == pytest.approx(built[0]["score"])


def test_readme_example_captions_verify_export_and_errors(readme):
    tmp, _, ns = readme
    curated = ns["curated"]
    assert curated.funnel["read"] == curated.funnel["kept"] == curated.count == 2
    stored = [json.loads(line) for line in (tmp / "build/quickstart/captions.jsonl").read_text().splitlines()]
    assert [(c.id, c.text) for c in curated.captions] == [(c["id"], c["text"]) for c in stored]
    check = ns["check"]
    assert check.ok and len(check.rows) == 2 and not check.mismatched and all(r.pixels == "0" for r in check.rows)
    shards = ns["shards"]
    assert shards.count == 2 and [p.name for p in shards.paths] == ["00000.tar", "index.json", "sizes.json"]
    assert json.loads((tmp / "wds/index.json").read_text())["samples"] == 2
    assert {"captions", "generate", "score", "select", "version"} <= {p.field for p in ns["problems"]}
    again, log = ns["again"], ns["log"]
    assert again.action == "exists" and again.rows == 2 and again.stats == ns["result"].stats
    assert any(m.endswith("nothing to do") for m in log.messages) and not log.bars


def test_readme_example_builder(readme):
    tmp, _, ns = readme
    builder, train = ns["builder"], ns["train"]
    assert isinstance(builder, datasets.DatasetBuilder)
    assert builder.build_dir.parent == tmp / "hf-datasets" / "synthvlm_builds"
    assert train.features == ns["ds"].features and train["id"] == ns["ds"]["id"]
    assert next(iter(ns["stream"]))["id"] == train[0]["id"]


def test_from_dict_is_validated_as_the_yaml_file(tmp_path):
    path = write_recipe(tmp_path, n_captions=4)
    data = yaml.safe_load(path.read_text())
    from_file = Recipe.from_yaml(path)
    data["generate"]["resolution"] = (64, 64)          # a tuple and a Path: plain values of Python code
    data["captions"]["sources"][0]["path"] = Path("caps.jsonl")
    from_dict = Recipe.from_dict(data, base_dir=tmp_path)
    assert plan(from_dict).fingerprint == plan(from_file).fingerprint
    assert from_dict.captions.sources[0].path == from_file.captions.sources[0].path
    # the YAML it was read as is the recipe's text, and reads back as the same recipe
    assert Recipe.from_dict(yaml.safe_load(from_dict.text), base_dir=tmp_path) == from_dict

    # strings YAML 1.1 would write unquoted but the recipe reader (YAML 1.2) reads as numbers
    tricky = Recipe.from_dict({**data, "description": "1e5", "license": "0o17"}, base_dir=tmp_path)
    assert (tricky.description, tricky.license) == ("1e5", "0o17")

    bad = {**yaml.safe_load(path.read_text()), "seed": -1, "select": {"size": "many"}, "colour": "red"}
    with pytest.raises(RecipeError) as from_dict_error:
        Recipe.from_dict(bad, base_dir=tmp_path)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(RecipeError) as from_file_error:
        Recipe.from_yaml(tmp_path / "bad.yaml")
    located = [(p.field, p.message) for p in from_dict_error.value.problems]
    assert located == [(p.field, p.message) for p in from_file_error.value.problems]
    assert {"seed", "select.size", "colour"} <= {field for field, _ in located}

    with pytest.raises(RecipeError) as unsupported:
        Recipe.from_dict({**data, "seed": object(), "select": {"size": float("nan")}}, base_dir=tmp_path)
    assert [p.field for p in unsupported.value.problems] == ["seed", "select.size"]


def test_errors_carry_the_located_problem_the_cli_prints(tmp_path):
    path = write_recipe(tmp_path, n_captions=4, extra="")
    text = path.read_text().replace("  device: cpu", "  device: cuda:7")  # no such device here
    path.write_text(text)
    with pytest.raises(InputError) as e:
        build(path, output_dir=tmp_path / "out", reporter=Recorder())
    (problem,) = e.value.problems
    line = text.splitlines().index("  device: cuda:7") + 1
    assert (problem.file, problem.line, problem.field) == (str(path), line, "execution.device")
    proc = cli(path, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 2 and proc.stderr == error_line(e.value) + "\n" == str(problem) + "\n"
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError) as flag:  # an argument has no place in the recipe
        build(path, output_dir=tmp_path / "out", device="cuda:99", reporter=Recorder())
    assert flag.value.field == "--device" and flag.value.problems == []
    assert BuildError("x").problems == []


def test_export_arguments_are_checked(readme):
    tmp, _, ns = readme
    out = tmp / ns["result"].path
    for fmt, options, field in (("tar", {}, "format"), ("llava", {"shard_size": 2}, "shard_size"),
                                ("webdataset", {"shard_size": 2, "shard_bytes": "1GB"}, "shard_size"),
                                ("webdataset", {"shard_size": 0}, "shard_size"),
                                ("webdataset", {"shards": 2}, "shards")):
        with pytest.raises(InputError) as e:
            export(out, fmt, tmp / "never", **options)
        assert e.value.field == field, (fmt, options)
    assert not (tmp / "never").exists()
    written = export(out, "webdataset", tmp / "wds-small", shard_bytes="20kB", reporter=Recorder())
    assert written.count == 2 and len(written.paths) == 4  # a shard per sample, the index, the sizes


def test_captions_stream_and_file(readme, tmp_path):
    _, recipe_path, ns = readme
    stream = iter_captions(recipe_path)
    ids = [c.id for c in stream]
    assert ids == [c.id for c in ns["curated"].captions] and stream.funnel == ns["curated"].funnel
    written = captions(recipe_path, output=tmp_path / "c.jsonl")
    assert written.captions is None and written.count == 2 and written.output == tmp_path / "c.jsonl"
    assert [json.loads(line)["id"] for line in written.output.read_text().splitlines()] == ids


def test_plan_is_what_the_cli_prints(readme):
    _, recipe_path, _ = readme
    result = plan(recipe_path)
    assert cli("plan", recipe_path, "--json").stdout == json.dumps(result.to_json(), indent=2) + "\n"
    assert cli("plan", recipe_path).stdout == result.summary() + "\n"


def test_reporter_default_replaced_or_silenced(readme, capsys):
    tmp, recipe_path, ns = readme
    out = tmp / ns["result"].path
    build(recipe_path, output_dir=out)  # the default reporter: standard error, nothing on standard output
    captured = capsys.readouterr()
    assert captured.out == "" and f"{out} already holds this build" in captured.err
    with reporter.use(Reporter.silent()):
        build(recipe_path, output_dir=out)
    assert capsys.readouterr() == ("", "")
    log = Recorder()
    with reporter.use(log):
        build(recipe_path, output_dir=out, reporter=Reporter.silent())  # the argument wins for its call
        reporter.info("after")
    assert log.messages == ["after"] and reporter.current() is not log
    with reporter.use(Recorder()):  # datasets' own bars ("Generating train split") follow it too
        result = dataclasses.replace(ns["result"], path=out)
        assert result.load(cache_dir=str(tmp / "another-cache")).num_rows == 2
    assert capsys.readouterr() == ("", "")


PUBLISH = """
import json, sys
from synthvlm_builder import Recorder, publish
log = Recorder()
first = publish(sys.argv[1], repo_id=sys.argv[2], reporter=log)
again = publish(sys.argv[1], repo_id=sys.argv[2], reporter=log)
print(json.dumps({"first": [first.repo, first.commit, first.tag, first.url, first.action],
                  "again": [again.commit, again.action], "summary": again.summary(), "messages": log.messages}))
"""


@pytest.mark.slow  # a client process against the loopback Hub (HF_ENDPOINT is read at import time)
def test_publish_returns_the_release(readme, hub, hub_env):
    tmp, _, ns = readme
    proc = subprocess.run([sys.executable, "-c", PUBLISH, str(tmp / ns["result"].path), "org/tiny"], env=hub_env,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    out = json.loads(proc.stdout)  # the only line written: publish itself prints nothing
    (commit,) = [c["id"] for c in hub.commits("org/tiny") if c["title"].startswith("Release ")]
    assert out["first"][0] == "org/tiny" and out["first"][1:3] == [commit, "v0.1.0"]
    assert out["first"][4] == "published" and "org/tiny" in out["first"][3]
    assert hub.refs("org/tiny")["tags"] == {"v0.1.0": commit} and out["again"] == [commit, "exists"]
    assert out["summary"].startswith("v0.1.0 is already published") and f"commit: {commit}" in out["summary"]
    assert any(m.startswith("pushing ") for m in out["messages"])


def test_stream_reporter_writes_terminal_safe_lines():
    out = io.StringIO()
    with reporter.use(Reporter(out, progress=False)):
        reporter.note("caption \x1b]0;owned\x07 dropped\nsecond line")
        reporter.warning("w")
        with reporter.progress(range(3), desc="bar") as bar:
            assert list(bar) == [0, 1, 2]
    assert out.getvalue() == "note: caption \\x1b]0;owned\\x07 dropped\nsecond line\nwarning: w\n"


def test_no_library_module_prints():
    """Messages and progress bars go through reporter.py; only the CLI writes to standard output. The
    shapes models' training scripts and the README reference's refresher are programs of their own
    (`python -m synthvlm_builder.models.shapes.train`, `python -m synthvlm_builder.recipe.docs`)."""
    package = ROOT / "synthvlm_builder"
    allowed = {"cli.py", "reporter.py", "models/shapes/train.py", "models/shapes/train_clip.py", "recipe/docs.py"}
    offenders = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{rel}:{node.lineno} print()")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if any(n.split(".")[0] == "tqdm" for n in names):
                    offenders.append(f"{rel}:{node.lineno} imports tqdm")
            if isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") \
                    and isinstance(node.value, ast.Name) and node.value.id == "sys":
                offenders.append(f"{rel}:{node.lineno} sys.{node.attr}")
    assert offenders == []


def test_package_exports_the_api():
    for name in ("Recipe", "build", "captions", "plan", "verify", "publish", "export"):
        assert name in synthvlm_builder.__all__ and getattr(synthvlm_builder, name)
    assert Recipe is synthvlm_builder.recipe.config.Recipe
