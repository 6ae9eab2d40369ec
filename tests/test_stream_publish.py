"""`--push` streams: each data file is uploaded as soon as it is final, a killed build resumes its
uploads without sending a finished file twice, and the release is still one commit plus a tag.
Against the loopback Hub with the real huggingface_hub client; the build runs in its own process
(it is killed with SIGKILL)."""
import json
import re
from collections import Counter

import pytest

from buildutil import cli, work_root, write_recipe
from synthvlm_builder import layout
from synthvlm_builder.atomic import sha256_file
from test_publish import load_remote, local_rows, releases

REPO = "tester/stream"


@pytest.fixture
def env(hub_env):
    # one row per data file: a tiny build becomes a release of many data files
    return {**hub_env, "SYNTHVLM_PUBLISH_RETRY_WAIT": "0.01", "SYNTHVLM_MAX_DATA_FILE_BYTES": "1"}


@pytest.fixture
def recipe(tmp_path):
    return write_recipe(tmp_path / "r", n_captions=8, size=6, extra=f"publish:\n  repo_id: {REPO}\n")


def lfs_puts(hub) -> list[str]:
    """The oid of every LFS object the client sent (one PUT each)."""
    return [re.search(r"/([0-9a-f]{64})$", path).group(1) for _, path, status in hub.requests(r"^/__lfs__/", "PUT")
            if status == 200]


@pytest.mark.slow  # a kill -9 and a resume, each a fresh process (.ci/run runs the slow tests too)
def test_streamed_push_survives_a_kill_and_sends_each_file_once(hub, env, recipe, tmp_path):
    out = tmp_path / "out"
    killed = cli(recipe, "--output", out, "--push", env={**env, "SYNTHVLM_TEST_SIGNAL": "KILL@upload:2"},
                 check=False)
    assert killed.returncode == -9, killed.stderr
    # files 0..2 were uploaded (and recorded) while the build ran; nothing is committed or tagged yet
    first = lfs_puts(hub)
    assert len(first) == len(set(first)) == 3
    record = json.loads((work_root(out) / layout.UPLOADS).read_text())
    assert record["repo_id"] == REPO and sorted(record["files"]) == sorted(first)
    assert releases(hub, REPO) == [] and hub.refs(REPO)["tags"] == {}
    assert not (out / "README.md").exists()

    done = cli(recipe, "--output", out, "--push", env=env)
    assert "3 data file(s) of this build are already in tester/stream" in done.stderr
    assert "uploads: 3 data file(s) sent while building, 3 already there" in done.stderr
    data = sorted((out / "data").glob("train-*.parquet"))
    assert len(data) == 6
    puts = Counter(lfs_puts(hub))
    assert set(puts) >= {sha256_file(f) for f in data}          # every data file went through LFS ...
    assert [oid for oid, n in puts.items() if n > 1] == []       # ... exactly once, across the kill
    assert {sha256_file(f) for f in data} == set(first) | set(json.loads(
        (work_root(out) / layout.UPLOADS).read_text())["files"])
    # the data files were all uploaded before the one commit
    log = [(m, p) for m, p, _ in hub.log]
    commit_at = log.index(("POST", f"/api/datasets/{REPO}/commit/main"))
    assert all(log.index(("PUT", p)) < commit_at for m, p in log if m == "PUT" and "/__lfs__/" in p
               and p.rsplit("/", 1)[1] in {sha256_file(f) for f in data})
    (release,) = releases(hub, REPO)
    assert len(hub.requests(r"/commit/main$", "POST")) == 1
    assert hub.refs(REPO)["tags"] == {"v0.1.0": release["id"]}
    assert sorted(p for p in release["files"] if p.startswith("data/")) == [f"data/{f.name}" for f in data]
    assert load_remote(env, REPO, "v0.1.0")["v0.1.0"] == local_rows(out)


@pytest.mark.slow
def test_push_checks_the_destination_before_building(hub, env, recipe, tmp_path):
    no_repo = write_recipe(tmp_path / "n", n_captions=8, size=6)
    # in this process: no Hub is asked before the recipe is found to name no repository
    proc = cli(no_repo, "--output", tmp_path / "o1", "--push", check=False)
    assert proc.returncode == 2 and "publish.repo_id: no repository to publish to" in proc.stderr
    assert not (tmp_path / "o1").exists()
    # v0.1.0 already holds other data (built here, published by a client process): refused before a single
    # image is generated
    other = write_recipe(tmp_path / "x", n_captions=8, size=4, extra=f"publish:\n  repo_id: {REPO}\n")
    cli(other, "--output", tmp_path / "o2")
    cli("publish", tmp_path / "o2", env=env)
    assert hub.refs(REPO)["tags"].keys() == {"v0.1.0"}
    before = (hub.commits(REPO), hub.refs(REPO))
    proc = cli(recipe, "--output", tmp_path / "o3", "--push", env=env, check=False)
    assert proc.returncode == 2 and "v0.1.0 is already published" in proc.stderr and "bump `version`" in proc.stderr
    assert "generating:" not in proc.stderr and not list((tmp_path / "o3").rglob("shard-*.parquet"))
    assert (hub.commits(REPO), hub.refs(REPO)) == before


def _changed(old: dict, new: dict) -> int:
    """Files added, changed or removed between two trees (hub.commits' `files`)."""
    return sum(old.get(p) != new.get(p) for p in set(old) | set(new))


@pytest.mark.slow
def test_a_release_of_many_files_goes_through_a_branch_and_never_shows_half(hub, env, recipe, tmp_path):
    env = {**env, "SYNTHVLM_PUBLISH_FILES_PER_COMMIT": "5"}
    out = tmp_path / "out"
    branch = "synthvlm-release-v0.1.0"
    # the second commit on the release branch fails past the retries: a half-built branch, nothing else
    hub.fail_next(rf"/commit/{branch}$", 500, count=6, method="POST", skip=1)
    failed = cli(recipe, "--output", out, "--push", env=env, check=False)
    assert failed.returncode == 1 and "nothing was tagged" in failed.stderr, failed.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and layout.WORK not in p.parts)
    assert len(files) == 13  # 6 data files + card, lock, recipe, stats, curated captions, two pictures
    assert hub.refs(REPO)["tags"] == {} and len(hub.commits(REPO)) == 1, "main untouched"
    (part, base) = hub.commits(REPO, revision=branch)
    assert _changed(base["files"], part["files"]) == 5 and "README.md" not in part["files"]

    done = cli("publish", out, env=env)
    assert "Traceback" not in done.stderr
    refs = hub.refs(REPO)
    assert set(refs["branches"]) == {"main"}, "the release branch is gone once main has the release"
    history = hub.commits(REPO, revision="v0.1.0")
    staged = history[: history.index(base)]
    assert len(staged) == 3 and all(_changed(old["files"], new["files"]) <= 5
                                    for new, old in zip(staged, staged[1:] + [base]))
    assert staged[0]["title"].startswith("Release tiny-build v0.1.0") and "Synthvlm-Release: " in staged[0]["message"]
    assert all("README.md" not in c["files"] for c in staged[1:]), "the card only in the tagged commit"
    tagged = {p: f for p, f in staged[0]["files"].items() if p != ".gitattributes"}
    assert sorted(tagged) == files
    # main: the initial commit, then one commit holding exactly the tagged tree
    main = hub.commits(REPO)
    assert len(main) == 2 and main[1] == base and main[0]["files"] == staged[0]["files"]
    assert refs["tags"]["v0.1.0"] == staged[0]["id"] != main[0]["id"]
    assert [oid for oid, n in Counter(lfs_puts(hub)).items() if n > 1] == []
    got = load_remote(env, REPO, "v0.1.0", "main")
    assert got["v0.1.0"] == got["main"] == local_rows(out)
    again = cli("publish", out, env=env)
    assert "already published" in again.stdout and len(hub.commits(REPO)) == 2
