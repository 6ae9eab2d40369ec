"""README.md's snippets are run on the quickstart's build, as written, and what they print or claim is checked.

A block marked `<!-- readme:run NAME -->` runs in a folder where `build/synthvlm-quickstart-v0.1.0` is the
session's quickstart build and `recipes/` is this checkout's; blocks of one NAME run in order in one folder.
Bash lines run through the CLI's entry point (tests/buildutil.py cli), Python blocks in this process. A
`<!-- readme:output NAME -->` block must be what the run blocks print, modulo timings and CPU thread counts
(tools/regenerate_docs.py --write rewrites it).
"""
import ast
import contextlib
import io
import json
import os
import re
import shutil

import pytest

from buildutil import ROOT, cli, docs
from conftest import readme_site

TEXT = (ROOT / "README.md").read_text()
BLOCKS = docs.readme_blocks(TEXT)


def run_blocks(name: str, site, monkeypatch) -> dict:
    """Run the README's blocks called `name` in `site`; the namespace the Python ones leave."""
    import datasets
    monkeypatch.chdir(site)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(site / ".hf-datasets"))  # not the user's cache
    namespace: dict = {}
    for block in (b for b in BLOCKS if b.kind == "run" and b.name == name):
        if block.lang == "bash":
            for words in docs.commands(block):
                assert words[0] == "synthvlm-build", f"README block {name}: {words}"
                cli(*words[1:], cwd=site)
        else:
            assert block.lang == "python", block.lang
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                exec(compile(block.body, f"README.md:readme:run {name}", "exec"), namespace)
            namespace.setdefault("_printed", []).append(printed.getvalue())
    return namespace


def test_every_marked_block_has_a_test():
    assert sorted({b.name for b in BLOCKS if b.kind == "run"}) == ["api", "export", "load", "verify"]
    assert [b.name for b in BLOCKS if b.kind == "output"] == ["verify"]


def test_verify_transcript_is_what_verify_prints(quickstart_verified):
    (shown,) = [b.body for b in BLOCKS if b.kind == "output" and b.name == "verify"]
    assert docs.normalize(quickstart_verified.stdout.rstrip("\n")) == docs.normalize(shown.rstrip("\n")), \
        "README's verify transcript is out of date: run python tools/regenerate_docs.py --write"


def test_load_the_output(quickstart, tmp_path, monkeypatch):
    ns = run_blocks("load", readme_site(tmp_path, quickstart[0]), monkeypatch)
    assert ns["ds"].num_rows == 24 and ns["_printed"][0].startswith("24 ")


def test_export_for_llava_and_webdataset_trainers(quickstart, tmp_path, monkeypatch):
    site = readme_site(tmp_path, quickstart[0])
    ns = run_blocks("export", site, monkeypatch)
    assert len(json.loads((site / "llava_data" / "synthvlm.json").read_text())) == 24
    assert ns["url"] == "wds/{00000..00002}.tar" and all((site / f"wds/{i:05d}.tar").is_file() for i in range(3))
    assert isinstance(ns["caption"], str) and ns["image"].size == (32, 32) and ns["meta"]["caption"] == ns["caption"]
    # the columns the comment names are the ones datasets reads
    (block,) = [b for b in BLOCKS if b.name == "export" and b.lang == "python"]
    claimed = ast.literal_eval(re.search(r"print\(ds\.column_names\)\s+# (\[.*\])", block.body).group(1))
    assert ns["ds"].column_names == claimed and ns["_printed"][0].strip() == str(claimed)


def test_python_api(quickstart, tmp_path, monkeypatch):
    site = readme_site(tmp_path, quickstart[0])
    shutil.copytree(quickstart[0], site / "build" / "quickstart", symlinks=True)  # what `build` finds there
    ns = run_blocks("api", site, monkeypatch)
    assert ns["result"].action == "exists" and ns["result"].rows == 24 and ns["check"].ok
    assert ns["again"].action == "exists" and any(m.endswith("nothing to do") for m in ns["log"].messages)
    assert ns["shards"].count == 24 and ns["problems"] and os.path.isdir(site / "wds")
