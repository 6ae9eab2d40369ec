"""`synthvlm-build publish` / `--push` through the real huggingface_hub client and the loopback Hub.

Every client runs in a subprocess with `hub_env` (HF_ENDPOINT, HF_TOKEN, fresh caches), as a user runs
it; the assertions read what the server saw (`hub.commits`, `hub.refs`, `hub.requests`). Builds are
made once per module and copied; retry waits are shortened with SYNTHVLM_PUBLISH_RETRY_WAIT.
"""
import hashlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from buildutil import ROOT, cli, read_rows, write_recipe
from conftest import HUB_TOKEN
from hubserver import HubServer
from synthvlm_builder import layout

# Every test here runs the CLI in fresh processes against the loopback Hub (5-30 s each): part of the
# `-m slow` run (.ci/run runs both).
pytestmark = pytest.mark.slow

REPO = "synthvlm/synthvlm-quickstart"   # the quickstart recipe's publish.repo_id
RETRIES = 5                             # synthvlm_builder.release.publish.RETRIES: attempts = RETRIES + 1

LOAD = textwrap.dedent("""
    import hashlib, json, sys
    from datasets import Image, load_dataset
    out = {}
    for rev in sys.argv[2:]:
        ds = load_dataset(sys.argv[1], revision=None if rev == "main" else rev, split="train")
        ds = ds.cast_column("image", Image(decode=False))
        out[rev] = [{"id": r["id"], "caption": r["caption"], "score": r["score"], "clip_score": r["clip_score"],
                     "ssim": r["ssim"], "seed": r["seed"], "image": hashlib.sha256(r["image"]["bytes"]).hexdigest()}
                    for r in ds]
    print("@@ROWS@@" + json.dumps(out))
""")


def local_rows(build_dir: Path) -> list[dict]:
    return [{"id": r["id"], "caption": r["caption"], "score": r["score"], "clip_score": r["clip_score"],
             "ssim": r["ssim"], "seed": r["seed"], "image": hashlib.sha256(r["image"]["bytes"]).hexdigest()}
            for r in read_rows(build_dir)]


def load_remote(env: dict, repo: str, *revisions: str) -> dict:
    """`load_dataset(repo, revision=...)` with plain datasets in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", LOAD, repo, *revisions], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("@@ROWS@@"))
    return json.loads(line[len("@@ROWS@@"):])


def fingerprint(build_dir: Path) -> str:
    return json.loads((build_dir / "recipe.lock.json").read_text())["fingerprint"]


def releases(hub: HubServer, repo: str = REPO) -> list[dict]:
    return [c for c in hub.commits(repo) if c["title"].startswith("Release ")]


def publish(build_dir: Path, env: dict, *args, check: bool = True) -> subprocess.CompletedProcess:
    proc = cli("publish", build_dir, *args, env=env, check=check)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# --------------------------------------------------------------------------- builds (once per module)
def _variant_recipe(d: Path, name: str, seed: int, version: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "data").exists():
        shutil.copytree(ROOT / "recipes" / "data", d / "data")
    text = (ROOT / "recipes" / "quickstart.yaml").read_text()
    text = text.replace("\nseed: 0\n", f"\nseed: {seed}\n").replace("\nversion: 0.1.0\n", f"\nversion: {version}\n")
    # smaller: faster to build (10 captions: the edited one, q000, among them; the duplicate q005 is dropped)
    smaller = re.sub(r"\n(\s+)limit: \d+", r"\n\1limit: 10", text).replace("\n  size: 24\n", "\n  size: 6\n")
    assert smaller.count("limit: 10") == 1 and "\n  size: 6\n" in smaller, "the quickstart recipe changed its shape"
    text = smaller
    (d / name).write_text(text)
    return d / name


@pytest.fixture(scope="module")
def builds(tmp_path_factory, quickstart):
    """a: the quickstart (v0.1.0); b: other data (seed 1) as v0.2.0; c: b's data mislabelled v0.1.0."""
    root = tmp_path_factory.mktemp("builds")
    a, b, c = quickstart[0], root / "b", root / "c"
    cli(_variant_recipe(root / "recipes", "b.yaml", 1, "0.2.0"), "--output", b)
    shutil.copytree(b, c)  # same fingerprint: the rebuild reuses b's shards and only rewrites the files
    (c / "README.md").unlink()
    cli(_variant_recipe(root / "recipes", "c.yaml", 1, "0.1.0"), "--output", c)
    assert fingerprint(c) == fingerprint(b) != fingerprint(a)
    # d: b's recipe as it is, but one caption of its caption file edited: same fingerprint, other data.
    shutil.copytree(root / "recipes", root / "edited")
    caps = root / "edited" / "data" / "quickstart_captions.jsonl"
    text = caps.read_text()
    assert "a yellow circle at the top" in text
    caps.write_text(text.replace("a yellow circle at the top", "a yellow square at the top"))
    d = root / "d"
    cli(root / "edited" / "b.yaml", "--output", d)
    assert fingerprint(d) == fingerprint(b)
    return {"a": a, "b": b, "c": c, "d": d}


@pytest.fixture
def env(hub_env):
    return {**hub_env, "SYNTHVLM_PUBLISH_RETRY_WAIT": "0.01"}


def copy_build(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- happy paths
def test_publish_then_load_the_tag_with_plain_datasets(hub, env, builds):
    a = builds["a"]
    fp = fingerprint(a)
    proc = publish(a, env)
    (release,) = releases(hub)
    assert release["title"] == f"Release synthvlm-quickstart v0.1.0 (fingerprint {fp[:12]})"
    identity = json.loads((a / "recipe.lock.json").read_text())["identity"]
    assert f"Synthvlm-Release: synthvlm-quickstart v0.1.0 {identity}" in release["message"]
    assert hub.refs(REPO) == {"branches": {"main": release["id"]}, "tags": {"v0.1.0": release["id"]}}
    # one commit with every file of the dir, the work dir left out; binaries through LFS
    local = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file() and layout.WORK not in p.parts)
    assert sorted(set(release["files"]) - {".gitattributes"}) == local
    assert all(release["files"][p]["lfs"] for p in local if p.endswith((".parquet", ".png")))
    assert len(hub.requests(r"/commit/main$", "POST")) == 1
    assert hub.requests("/api/validate-yaml", "POST"), "the card went through the Hub's validation"
    # private by default: an anonymous caller does not see it
    with pytest.raises(urllib.error.HTTPError) as anon:
        urllib.request.urlopen(f"{hub.url}/api/datasets/{REPO}")
    assert anon.value.code == 401
    # what happened, printed
    assert f"{hub.url}/datasets/{REPO}" in proc.stdout
    assert release["id"] in proc.stdout and "v0.1.0" in proc.stdout
    assert f"load_dataset('{REPO}', revision='v0.1.0', split='train')" in proc.stdout
    # a colleague, plain datasets, the tag
    assert load_remote(env, REPO, "v0.1.0")["v0.1.0"] == local_rows(a)


def _split_in_two(build_dir: Path) -> None:
    """Make the build look like a bigger release: the same rows in two shards (its manifest says so: publish
    sends only the files it lists)."""
    (only,) = (build_dir / "data").glob("train-*.parquet")
    table = pq.read_table(only)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), build_dir / "data" / "train-00000-of-00002.parquet")
    pq.write_table(table.slice(half), build_dir / "data" / "train-00001-of-00002.parquet")
    only.unlink()
    manifest = json.loads((build_dir / layout.MANIFEST).read_text())
    manifest["files"] = [f for f in manifest["files"] if f != f"data/{only.name}"] + [
        "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    (build_dir / layout.MANIFEST).write_text(json.dumps(manifest))


def test_new_version_keeps_old_tag_and_main_is_newest(hub, env, builds, tmp_path):
    a2 = copy_build(builds["a"], tmp_path / "a2")
    _split_in_two(a2)
    b = builds["b"]
    publish(a2, env)
    publish(b, env, "--repo-id", REPO)  # b's recipe names the same repo; the flag must agree with it
    new, old = releases(hub)
    assert "v0.2.0" in new["title"] and "v0.1.0" in old["title"] and new["parents"] == [old["id"]]
    assert hub.refs(REPO)["tags"] == {"v0.1.0": old["id"], "v0.2.0": new["id"]}
    assert hub.refs(REPO)["branches"]["main"] == new["id"]
    # main equals the new build: the older release's extra shard is gone from it
    assert [p for p in new["files"] if p.startswith("data/")] == ["data/train-00000-of-00001.parquet"]
    assert sorted(p for p in old["files"] if p.startswith("data/")) == [
        "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    got = load_remote(env, REPO, "v0.1.0", "v0.2.0", "main")
    assert got["v0.1.0"] == local_rows(builds["a"])
    assert got["v0.2.0"] == got["main"] == local_rows(b)
    assert got["v0.1.0"] != got["v0.2.0"]


def test_republish_is_a_noop_and_other_data_under_a_tag_is_refused(hub, env, builds):
    a, c = builds["a"], builds["c"]
    publish(a, env)
    before = (hub.commits(REPO), hub.refs(REPO), len(hub.requests("/commit/", "POST")))
    again = publish(a, env)
    assert f"v0.1.0 is already published (fingerprint {fingerprint(a)[:12]})" in again.stdout
    assert (hub.commits(REPO), hub.refs(REPO), len(hub.requests("/commit/", "POST"))) == before

    n_log = len(hub.log)
    refused = publish(c, env, check=False)
    assert refused.returncode == 2, refused.stderr
    assert (f"error: version: v0.1.0 is already published with fingerprint {fingerprint(a)[:12]}"
            in refused.stderr)
    assert "bump `version`" in refused.stderr
    assert (hub.commits(REPO), hub.refs(REPO)) == before[:2]
    writes = [e for e in hub.log[n_log:] if e[0] in ("POST", "PUT", "DELETE") and "/repos/create" not in e[1]]
    assert writes == [], f"a refused publish wrote to the Hub: {writes}"


def test_same_recipe_with_edited_captions_under_a_tag_is_refused(hub, env, builds):
    """The release's identity follows the caption file's content, not only the recipe."""
    publish(builds["b"], env)
    before = (hub.commits(REPO), hub.refs(REPO))
    refused = publish(builds["d"], env, check=False)
    assert refused.returncode == 2
    assert "v0.2.0 is already published" in refused.stderr
    assert "the recipe is the same but its input files differ" in refused.stderr and "bump `version`" in refused.stderr
    assert (hub.commits(REPO), hub.refs(REPO)) == before


def test_a_foreign_tag_of_that_version_is_refused(hub, env, builds):
    hub.create_repo(REPO, private=True, author="tester")
    code = f"from huggingface_hub import HfApi; HfApi().create_tag({REPO!r}, tag='v0.1.0', repo_type='dataset')"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    before = (hub.commits(REPO), hub.refs(REPO))
    proc = publish(builds["a"], env, check=False)
    assert proc.returncode == 2
    assert "v0.1.0 already exists on synthvlm/synthvlm-quickstart and holds no synthvlm build" in proc.stderr
    assert (hub.commits(REPO), hub.refs(REPO)) == before


def test_push_builds_then_publishes(hub, env, tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=8, size=4, extra="publish:\n  repo_id: tester/tiny\n")
    out = tmp_path / "out"
    proc = cli(recipe, "--output", out, "--push", env=env)
    assert "built 4 rows" in proc.stderr and "Traceback" not in proc.stderr
    (release,) = releases(hub, "tester/tiny")
    assert hub.refs("tester/tiny")["tags"] == {"v0.1.0": release["id"]}
    assert "load_dataset('tester/tiny', revision='v0.1.0'" in proc.stdout
    got = load_remote(env, "tester/tiny", "v0.1.0")["v0.1.0"]
    assert got == local_rows(out)


# --------------------------------------------------------------------------- faults
def test_commit_500s_are_retried(hub, env, builds):
    hub.fail_next(r"/commit/main$", 500, count=2, method="POST")
    proc = publish(builds["a"], env)
    assert [s for _, _, s in hub.requests(r"/commit/main$", "POST")] == [500, 500, 200]
    assert "create_commit: HTTP 500" in proc.stderr
    (release,) = releases(hub)
    assert hub.refs(REPO)["tags"] == {"v0.1.0": release["id"]}


def test_commit_failures_past_the_retries_exit_1_and_a_rerun_completes(hub, env, builds):
    hub.fail_next(r"/commit/main$", 503, count=RETRIES + 1, method="POST")
    failed = publish(builds["a"], env, check=False)
    assert failed.returncode == 1, failed.stderr
    assert "HTTP 503" in failed.stderr and "nothing was tagged" in failed.stderr and "rerun" in failed.stderr
    assert len(hub.requests(r"/commit/main$", "POST")) == RETRIES + 1
    assert releases(hub) == [] and hub.refs(REPO)["tags"] == {}

    publish(builds["a"], env)
    (release,) = releases(hub)
    assert hub.refs(REPO)["tags"] == {"v0.1.0": release["id"]}


def test_lost_commit_response_never_commits_twice(hub, env, builds):
    hub.drop_next(r"/commit/main$", method="POST", after=True)  # applied, but the client sees a dropped socket
    proc = publish(builds["a"], env)
    assert "it had taken effect nonetheless" in proc.stderr
    (release,) = releases(hub)
    assert len(hub.requests(r"/commit/main$", "POST")) == 1
    assert hub.refs(REPO)["tags"] == {"v0.1.0": release["id"]}


def test_tag_failure_exits_1_and_the_rerun_only_tags(hub, env, builds):
    hub.fail_next("/tag/", 500, count=RETRIES + 1, method="POST")
    failed = publish(builds["a"], env, check=False)
    assert failed.returncode == 1, failed.stderr
    (release,) = releases(hub)
    assert f"commit {release['id'][:12]} is on main" in failed.stderr and "rerun" in failed.stderr
    assert hub.refs(REPO)["tags"] == {}

    commit_posts = len(hub.requests("/commit/", "POST"))
    rerun = publish(builds["a"], env)
    assert "tagging it" in rerun.stderr
    assert len(hub.requests("/commit/", "POST")) == commit_posts and releases(hub) == [release]
    assert hub.refs(REPO)["tags"] == {"v0.1.0": release["id"]}


def test_lost_tag_response_is_not_an_error(hub, env, builds):
    hub.drop_next("/tag/", method="POST", after=True)
    publish(builds["a"], env)
    (release,) = releases(hub)
    assert hub.refs(REPO)["tags"] == {"v0.1.0": release["id"]}


def test_unreachable_hub_exits_1_with_a_message(hub, env, builds):
    proc = publish(builds["a"], {**env, "HF_ENDPOINT": "http://127.0.0.1:9", "SYNTHVLM_PUBLISH_RETRIES": "1"},
                   check=False)
    assert proc.returncode == 1
    assert "cannot reach the Hub" in proc.stderr


# --------------------------------------------------------------------------- auth and token hygiene
def test_private_repo_without_a_token_is_a_clear_error(hub, tmp_path, builds):
    hub.create_repo(REPO, private=True, author="tester")
    no_token = {**hub.client_env(tmp_path / "anon"), "SYNTHVLM_PUBLISH_RETRY_WAIT": "0.01"}
    proc = publish(builds["a"], no_token, check=False)
    assert proc.returncode == 1
    assert "authentication required" in proc.stderr and "HF_TOKEN" in proc.stderr and "hf auth login" in proc.stderr

    bad = {**no_token, "HF_TOKEN": "hf_not_a_valid_token_000"}
    proc = publish(builds["a"], bad, check=False)
    assert proc.returncode == 1
    assert "authentication required" in proc.stderr and "refused the token" in proc.stderr
    assert "hf_not_a_valid_token_000" not in proc.stdout + proc.stderr
    assert len(hub.commits(REPO)) == 1


def test_no_write_access_is_a_clear_error(tmp_path, builds):
    alice, bob = "hf_test_alice_0123456789", "hf_test_bob_0123456789"
    with HubServer(tmp_path / "hub", tokens={alice: "alice", bob: "bob"}, orgs={"org": ["alice"]}) as hub:
        hub.create_repo("org/public", private=False, author="alice")
        env = {**hub.client_env(tmp_path / "bob", token=bob), "SYNTHVLM_PUBLISH_RETRY_WAIT": "0.01"}
        proc = publish(builds["a"], env, "--repo-id", "org/public", check=False)
        assert proc.returncode == 1
        assert "no write access to org/public" in proc.stderr
        assert len(hub.commits("org/public")) == 1 and not hub.errors


def test_token_appears_in_no_output_and_no_file(hub, env, builds, tmp_path):
    a = copy_build(builds["a"], tmp_path / "a")
    outputs = []
    hub.fail_next(r"/commit/main$", 500, count=1, method="POST")
    hub.fail_next("/tag/", 502, count=RETRIES + 1, method="POST")
    outputs.append(cli("publish", a, "--debug", env=env, check=False))  # retries, a failed tag, a traceback
    outputs.append(publish(a, env))                           # the rerun tags
    outputs.append(publish(a, env))                           # already published
    load_remote(env, REPO, "v0.1.0")
    assert [p.returncode for p in outputs] == [1, 0, 0]
    assert "Traceback" in outputs[0].stderr
    token = HUB_TOKEN.encode()
    for proc in outputs:
        assert HUB_TOKEN not in proc.stdout + proc.stderr
    client_home = Path(env["HF_HOME"]).parent
    files = [p for root in (a, client_home, hub.root) for p in root.rglob("*") if p.is_file()]
    assert len(files) > 10
    assert [p for p in files if token in p.read_bytes()] == []


# --------------------------------------------------------------------------- bad input
def test_a_card_the_hub_rejects_pushes_nothing(hub, env, builds, tmp_path):
    a = copy_build(builds["a"], tmp_path / "a")
    card = a / "README.md"
    card.write_text(card.read_text().replace("\nlicense: cc-by-4.0\n", "\nlicense: 5\n", 1))
    proc = publish(a, env, check=False)
    assert proc.returncode == 1
    assert "the Hub rejected the dataset card" in proc.stderr and '"license" must be a string' in proc.stderr
    assert releases(hub) == [] and hub.refs(REPO)["tags"] == {}
    assert not hub.requests("/__lfs__/") and not hub.requests("/commit/")


def test_not_a_build_or_no_repo_id_is_exit_2(hub, env, builds, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = publish(tmp_path / "empty", env, check=False)
    assert proc.returncode == 2 and "is not a finished synthvlm build" in proc.stderr

    a = copy_build(builds["a"], tmp_path / "a")
    lock = json.loads((a / "recipe.lock.json").read_text())
    lock["recipe"]["publish"]["repo_id"] = None
    (a / "recipe.lock.json").write_text(json.dumps(lock))
    proc = publish(a, env, check=False)
    assert proc.returncode == 2
    assert "error: publish.repo_id: no repository to publish to: pass --repo-id ORG/NAME" in proc.stderr
    proc = publish(a, env, "--repo-id", "not a repo", check=False)
    assert proc.returncode == 2 and "error: --repo-id: 'not a repo' is not a Hub repository id" in proc.stderr
    assert hub.log == []
