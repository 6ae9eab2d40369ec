"""State files, ownership, and what publish/export read (issue 21 items 1, 2 and 5).

Every state a build reads back (manifest, install journal, work state, shard markers, caption index,
batch record) is damaged or planted here as an adversary would, and `synthvlm-build` is run as a user
runs it: exit 2 naming the file, what is wrong and how to recover (or, for a shard or the curated
captions, "make it again"), never a traceback, never a path outside the dir. The tests that damage a
build copy the quickstart build the whole run shares."""
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from buildutil import ROOT, cli, cli_process, read_rows, work_root, write_recipe
from llmserver import LlmServer
from synthvlm_builder.layout import (BATCH, BUILDS, CURATED_INDEX, DIR_LOCK, JOURNAL, MANIFEST, STAGING, STATE, WORK,
                                     marker_file)


def snapshot(folder: Path) -> dict:
    """Every file under `folder` but its work state, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and WORK not in p.relative_to(folder).parts}


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_text())


def rows(out: Path) -> list[str]:
    return [r["id"] for r in read_rows(out, ["id"])]


@pytest.fixture
def build(quickstart, tmp_path):
    """A copy of the quickstart build (conftest.py: built once per run) and of its recipe, plus a `victim`
    file outside the dir."""
    out, _ = quickstart
    shutil.copytree(out, tmp_path / "out", symlinks=True)
    (tmp_path / "r" / "data").mkdir(parents=True)
    shutil.copy(ROOT / "recipes" / "quickstart.yaml", tmp_path / "r")
    shutil.copy(ROOT / "recipes" / "data" / "quickstart_captions.jsonl", tmp_path / "r" / "data")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "victim.txt").write_text("keep me")
    return tmp_path / "r" / "quickstart.yaml", tmp_path / "out"


def assert_corrupt(proc, name: str, *words: str) -> None:
    """Exit 2 and, as the last line, one that names the state file, what is wrong and how to recover."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "corrupt state: " in last and f"{name} is corrupt (" in last, proc.stderr
    for word in words:
        assert word in last, proc.stderr


# --- the manifest ---------------------------------------------------------------------------------

def test_a_build_lists_every_file_it_installed(quickstart):
    out, _ = quickstart
    files = manifest(out)["files"]
    assert sorted(files) == sorted(snapshot(out))
    for name in ("README.md", "recipe.yaml", "recipe.lock.json", "stats.json", "captions.jsonl",
                 "score_histogram.png", "sample_grid.png"):
        assert name in files
    assert any(f.startswith("data/train-") for f in files)


BAD_MANIFESTS = [  # (files, what the message says); VICTIM stands for the victim file's absolute path
    (["../victim/victim.txt"], "files[0]: '../victim/victim.txt' is not a plain relative path"),
    (["VICTIM"], "is an absolute path (state stores paths relative to its dir)"),
    (["data/../../victim/victim.txt"], "is not a plain relative path"),
    (["notes.env"], "files[0]: 'notes.env' is not a file a build makes"),
    (["README.md", "README.md"], "files: ['README.md', 'README.md'] has non-unique elements"),
    (5, "files: 5 is not of type 'array'"),
    (None, "'files' is a required property"),
    ([3], "files[0]: 3 is not of type 'string'"),
]


NOT_JSON = [("{not json", "not JSON"), ("", "not JSON"), ("[1, 2]", "[1, 2] is not of type 'object'")]


def plant(out: Path, files) -> None:
    """Replace the manifest's file list by `files` (or drop it: None)."""
    data = manifest(out)
    data.pop("files", None)
    if files is not None:
        victim = str(out.parent / "victim" / "victim.txt")
        data["files"] = [victim if f == "VICTIM" else f for f in files] if isinstance(files, list) else files
    (out / MANIFEST).write_text(json.dumps(data))


def test_a_planted_or_damaged_manifest_is_corrupt_state(build):
    recipe, out = build
    before = snapshot(out)
    for files, why in BAD_MANIFESTS + NOT_JSON:
        if isinstance(files, str):
            (out / MANIFEST).write_text(files)
        else:
            plant(out, files)
        assert_corrupt(cli(recipe, "--output", out, check=False), "manifest.json", why, "--overwrite")
        for verb in (["export", out, "--llava", out.parent / "llava"], ["publish", out, "--repo-id", "org/name"]):
            assert_corrupt(cli(*verb, check=False), "manifest.json", why, "rebuild it")
    assert snapshot(out) == before and not (out.parent / "llava").exists()


def test_overwrite_past_a_planted_manifest_removes_nothing_outside(build):
    recipe, out = build
    victim = out.parent / "victim" / "victim.txt"
    (out.parent / "victim" / "other.txt").write_text("keep me too")
    plant(out, ["../victim/victim.txt", "VICTIM", "data/../../victim/other.txt", *manifest(out)["files"]])
    before = sorted(snapshot(out))
    cli(recipe, "--output", out, "--overwrite")  # replaces only files with a build's own names
    assert victim.read_text() == "keep me" and (out.parent / "victim" / "other.txt").read_text() == "keep me too"
    assert sorted(snapshot(out)) == sorted(manifest(out)["files"]) == before


def test_a_manifest_leading_outside_through_a_symlink_is_corrupt_state(build):
    recipe, out = build
    outside = out.parent / "victim"
    for f in (out / "data").iterdir():
        shutil.move(f, outside / f.name)
    (out / "data").rmdir()
    (out / "data").symlink_to(outside, target_is_directory=True)
    before = sorted(p.name for p in outside.iterdir())
    proc = cli(recipe, "--output", out, check=False)
    assert_corrupt(proc, "manifest.json", "leads outside", "(through a symbolic link)")
    proc = cli("export", out, "--webdataset", out.parent / "wds", check=False)
    assert_corrupt(proc, "manifest.json", "leads outside")
    proc = cli(recipe, "--output", out, "--overwrite", check=False)  # the link is not the build's: refused
    assert proc.returncode == 2 and "holds files no synthvlm build made (data)" in proc.stderr
    assert sorted(p.name for p in outside.iterdir()) == before and (out / "data").is_symlink()


def test_work_state_that_is_a_link_or_damaged_is_corrupt_state(build):
    recipe, out = build
    key = work_root(out)
    state = json.loads((key / STATE).read_text())
    (key / STATE).write_text(json.dumps({**state, "shard_size": "2"}))
    before = snapshot(out)
    assert_corrupt(cli(recipe, "--output", out, check=False), "state.json", "shard_size: '2' is not of type",
                   "--overwrite")
    assert snapshot(out) == before
    proc = cli(recipe, "--output", out, "--overwrite")  # that build's work state goes; the dataset stands
    assert "nothing to do" in proc.stderr and not key.exists() and snapshot(out) == before
    assert "nothing to do" in cli(recipe, "--output", out).stderr
    (out / DIR_LOCK).unlink()
    (out / DIR_LOCK).symlink_to(out.parent / "victim" / "new.txt")
    assert_corrupt(cli(recipe, "--output", out, check=False), "lock", "cannot be opened")
    assert not (out.parent / "victim" / "new.txt").exists()
    (out / DIR_LOCK).unlink()
    shutil.move(out / WORK, out.parent / "elsewhere")
    (out / WORK).symlink_to(out.parent / "elsewhere", target_is_directory=True)
    assert_corrupt(cli(recipe, "--output", out, check=False), WORK, "symbolic link")


# --- the install journal ----------------------------------------------------------------------------

BAD_JOURNALS = [  # (changes to the journal the build would write, what the message says); DATA0: its data file
    ({"staging": "../victim", "files": ["README.md"]}, "staging: '../victim' is not a build's staging"),
    ({"staging": "VICTIM"}, "is not a build's staging folder"),
    ({"staging": ".synthvlm"}, "is not a build's staging folder"),
    ({"staging": ".synthvlm/builds/0123456789abcdef/final"}, "state.json is corrupt (cannot be read"),
    ({"build": {"identity": "x", "fingerprint": "y"}}, "build.identity: 'x' is not the identity of the build staged"),
    ({"files": ["../victim/victim.txt"]}, "files[0]: '../victim/victim.txt' is not a plain relative"),
    ({"files": ["notes.env"]}, "files[0]: 'notes.env' is not a file a build makes"),
    ({"files": ["data/train-00005-of-00009.parquet"]}, "is neither staged nor installed"),
    ({"files": ["DATA0"]}, "files: a finished build has README.md, recipe.lock.json and data files"),
    ({"staging": None}, "'staging' is a required property"),
    ({"build": {}}, "build: 'identity' is a required property"),
]


def test_an_install_journal_pointing_outside_changes_nothing(build):
    recipe, out = build
    victim = out.parent / "victim"
    state = json.loads((work_root(out) / STATE).read_text())
    staging = f"{BUILDS}/{work_root(out).name}/{STAGING}"
    (out / staging).mkdir()
    (out / BUILDS / "0123456789abcdef" / STAGING).mkdir(parents=True)
    data0 = next(f for f in manifest(out)["files"] if f.startswith("data/"))
    before = snapshot(out)
    for changes, why in BAD_JOURNALS:
        journal = {"staging": staging, "files": ["README.md", "recipe.lock.json", data0],
                   "build": {"identity": state["identity"], "fingerprint": state["fingerprint"]}, **changes}
        journal = {k: str(victim) if v == "VICTIM" else [data0] if v == ["DATA0"] else v
                   for k, v in journal.items() if v is not None}
        (out / JOURNAL).write_text(json.dumps(journal))
        name = "state.json" if "state.json" in why else "install.json"
        assert_corrupt(cli(recipe, "--output", out, check=False), name, why, "--overwrite")
        assert snapshot(out) == before and (victim / "victim.txt").read_text() == "keep me"
    proc = cli("publish", out, "--repo-id", "org/name", check=False)
    assert proc.returncode == 2 and "an install was cut short" in proc.stderr
    proc = cli(recipe, "--output", out, "--overwrite")  # the journal is dropped; the build stands as it was
    assert "dropped the corrupt install journal" in proc.stderr and not (out / JOURNAL).exists()
    assert snapshot(out) == before and (victim / "victim.txt").read_text() == "keep me"


# --- shard markers, the caption index, the batch record --------------------------------------------

def damage_markers_and_captions(out: Path) -> dict:
    """Shard 0's marker claims to be shard 1's, shard 1's size is text, the caption index seeks mid-line;
    the card goes, so the next run checks every shard. Returns the caption index as it was."""
    key = work_root(out)
    m0 = json.loads((key / marker_file(0)).read_text())
    (key / marker_file(0)).write_text(json.dumps({**m0, "shard": 1}))
    m1 = json.loads((key / marker_file(1)).read_text())
    (key / marker_file(1)).write_text(json.dumps({**m1, "bytes": str(m1["bytes"])}))
    meta = json.loads((key / CURATED_INDEX).read_text())
    (key / CURATED_INDEX).write_text(json.dumps({**meta, "shard_offsets": [0, 5]}))
    (out / "README.md").unlink()
    return meta


def test_damaged_markers_and_caption_index_are_redone_and_a_damaged_batch_record_is_corrupt_state(build):
    recipe, out = build
    meta = damage_markers_and_captions(out)
    (work_root(out) / BATCH).write_text(json.dumps({"batch_size": 0}))
    proc = cli(recipe, "--output", out, check=False)
    assert "stored captions not used" in proc.stderr and "count and shard_offsets do not match" in proc.stderr
    assert "shard 0: invalid completion marker (shard: 1 (the marker of another shard)); regenerating" in proc.stderr
    assert "shard 1: invalid completion marker (bytes: '" in proc.stderr
    assert json.loads((work_root(out) / CURATED_INDEX).read_text()) == meta  # curated again, the same
    assert_corrupt(proc, "batch.json", "batch_size: 0 is less than the minimum of 1", "delete it",
                   "generate.batch_size: corrupt state")


@pytest.mark.slow
def test_damaged_markers_and_caption_index_give_the_same_dataset_again(build):
    recipe, out = build
    expected = rows(out)
    damage_markers_and_captions(out)
    proc = cli(recipe, "--output", out)
    assert "shard 0: invalid completion marker" in proc.stderr and "shard 1: invalid completion marker" in proc.stderr
    assert rows(out) == expected and (out / "README.md").is_file()


# --- a failed build into a new dir ----------------------------------------------------------------

class DroppingJudge(LlmServer):
    """A judge during whose first question a user puts files into the build's dir."""

    def __init__(self, out: Path):
        super().__init__()
        self.out = out

    def caption_of(self, prompt: str) -> str:
        with self.lock:  # questions may come in parallel
            if not (self.out / "notes.txt").exists():
                (self.out / "mydata").mkdir()
                (self.out / "mydata" / "x.csv").write_text("1,2")
                (self.out / "notes.txt").write_text("mine")
        return super().caption_of(prompt)


def judged(tmp_path: Path, url: str) -> Path:
    """A recipe whose judge answers No to every caption (all under 6 words): no caption survives."""
    recipe = write_recipe(tmp_path / "r", n_captions=3)
    (recipe.parent / "caps.jsonl").write_text("".join(json.dumps({"id": f"s{i}", "caption": f"A tiny boat {i}."})
                                                      + "\n" for i in range(3)))
    recipe.write_text(recipe.read_text().replace("      id_column: id\n", f"""      id_column: id
  filters:
    llm_judge:
      base_url: {url}
      model: tiny-judge
"""))
    return recipe


def test_a_failed_build_into_a_new_dir_removes_only_what_it_made(tmp_path, private_cache):
    out = tmp_path / "new" / "out"
    with DroppingJudge(out) as server:
        proc = cli(judged(tmp_path, server.base_url), "--output", out, check=False)
    assert proc.returncode == 1 and "no caption survived" in proc.stderr and server.requests
    assert snapshot(out) == {"notes.txt": b"mine", "mydata/x.csv": b"1,2"}
    assert sorted(p.name for p in out.iterdir()) == ["mydata", "notes.txt"], "its work state is gone"
    blank = write_recipe(tmp_path / "blank", n_captions=3)
    (blank.parent / "caps.jsonl").write_text('{"id": "a", "caption": "  "}\n')
    proc = cli(blank, "--output", tmp_path / "other" / "out", check=False)  # nobody else wrote there:
    assert proc.returncode == 1 and not (tmp_path / "other").exists()  # the dir, and the parent it made, go


# --- publish and export read only what the manifest lists ------------------------------------------

def test_export_reads_only_the_data_files_the_build_made(build):
    _, out = build
    expected = rows(out)
    data = sorted((out / "data").iterdir())
    shutil.copy(data[0], out / "data" / "train-zz.parquet")
    shutil.copy(data[0], out / "data" / "train-00007-of-00009.parquet")  # a build's name, not this build's
    cli("export", out, "--llava", out.parent / "llava")
    assert [r["id"] for r in json.loads((out.parent / "llava" / "synthvlm.json").read_text())] == expected
    cli("export", out, "--webdataset", out.parent / "wds")
    assert json.loads((out.parent / "wds" / "index.json").read_text())["samples"] == len(expected)
    assert sum(pq.read_metadata(f).num_rows for f in data) == len(expected)


def test_publish_and_export_refuse_a_dir_without_a_manifest(build, tmp_path):
    _, out = build
    plain = tmp_path / "plain"
    shutil.copytree(out, plain, ignore=shutil.ignore_patterns(WORK))
    (out / MANIFEST).unlink()
    for target, what in ((out, "a build in progress, failed or cut short"), (plain, "build into the dir")):
        for verb in (["export", target, "--llava", tmp_path / "x"], ["export", target, "--webdataset", tmp_path / "x"],
                     ["publish", target, "--repo-id", "org/name"]):
            proc = cli(*verb, check=False)
            assert proc.returncode == 2 and proc.stderr.startswith(f"error: DIR: {target} is not a finished synthvlm"
                                                                   " build (no .synthvlm/manifest.json): "), proc.stderr
            assert what in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_publish_sends_only_the_files_the_manifest_lists(build, hub, hub_env):
    recipe, out = build
    (out / "notes.env").write_text("HF_TOKEN=hf_secret\n")
    # an export moved into the build dir (export itself refuses to write there: tests/test_edges_cli.py)
    cli("export", out, "--llava", out.parent / "llava")
    shutil.move(out.parent / "llava", out / "llava")
    proc = cli_process("publish", out, "--repo-id", "org/tiny", env={**hub_env, "SYNTHVLM_PUBLISH_RETRY_WAIT": "0.01"})
    assert "Traceback" not in proc.stderr
    (release,) = [c for c in hub.commits("org/tiny") if c["title"].startswith("Release ")]
    assert sorted(set(release["files"]) - {".gitattributes"}) == sorted(manifest(out)["files"])
    assert not any(p.startswith(("llava/", "notes")) for p in release["files"])


@pytest.mark.slow
def test_a_staged_publish_sends_only_the_files_the_manifest_lists(build, hub, hub_env):
    _, out = build
    (out / "notes.env").write_text("HF_TOKEN=hf_secret\n")
    (out / "data" / "train-zz.parquet").write_bytes(b"PAR1")
    env = {**hub_env, "SYNTHVLM_PUBLISH_RETRY_WAIT": "0.01", "SYNTHVLM_PUBLISH_FILES_PER_COMMIT": "3"}
    proc = cli_process("publish", out, "--repo-id", "org/tiny", env=env)
    assert "commit(s) of at most 3 files" in proc.stderr
    tagged = hub.commits("org/tiny", revision="v0.1.0")[0]["files"]
    main = hub.commits("org/tiny")[0]["files"]
    for files in (tagged, main):
        assert sorted(set(files) - {".gitattributes"}) == sorted(manifest(out)["files"])
    assert os.path.exists(out / "notes.env")
