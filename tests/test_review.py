"""`review`: the PR comment as Markdown (byte-stable, golden file) or JSON, with diff's verdict and exit codes.

The golden inputs are tests/golden/review/{old,new}.yaml; the expected comment is tests/golden/review.md.
The output is always compared with the golden file first. After an intended change of the output, run the
test with SYNTHVLM_UPDATE_GOLDEN=1: it still fails, and rewrites the file for you to read the diff (`git diff
tests/golden`) and commit; the next run passes. CI refuses to run with the variable set (.ci/run).
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from buildutil import cli

GOLDEN = Path(__file__).parent / "golden"
INPUTS = GOLDEN / "review"


@pytest.fixture
def recipes(tmp_path):
    """A copy of the golden inputs: edit variants of old.yaml freely."""
    shutil.copytree(INPUTS, tmp_path / "r")
    return tmp_path / "r"


def variant(d: Path, name: str, *edits: tuple[str, str]) -> str:
    text = (d / "old.yaml").read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    (d / name).write_text(text)
    return name


def test_markdown_matches_the_golden_file_byte_for_byte():
    first = cli("review", "old.yaml", "new.yaml", cwd=INPUTS, check=False)
    second = cli("review", "old.yaml", "new.yaml", cwd=INPUTS, check=False)
    assert first.returncode == second.returncode == 3  # data changed, version bumped
    assert first.stdout == second.stdout
    golden = GOLDEN / "review.md"
    if first.stdout != golden.read_text():
        if os.environ.get("SYNTHVLM_UPDATE_GOLDEN"):  # rewritten on request, and still a failure of this run
            golden.write_text(first.stdout)
            pytest.fail(f"{golden} rewritten (SYNTHVLM_UPDATE_GOLDEN): read `git diff {golden}`, commit, rerun")
        assert first.stdout == golden.read_text(), "review output differs from the golden file"


BUMP = ("version: 1.0.0", "version: 1.0.1")


@pytest.mark.parametrize("edits, code", [
    ([("batch_size: 4", "batch_size: 2")], 0),                 # no data change
    ([("steps: 20", "steps: 25"), BUMP], 3),                  # data change, bumped
    ([("steps: 20", "steps: 25")], 4),                         # data change, not bumped
    ([("steps: 20", "steps: 25"), ("version: 1.0.0", "version: 1.0.0-rc.1")], 4),  # a pre-release is older
    ([("steps: 20", "steps: -1")], 2),                         # invalid
])
def test_same_verdict_and_exit_code_as_diff(recipes, edits, code):
    new = variant(recipes, "new2.yaml", *edits)
    diff = cli("diff", "old.yaml", new, cwd=recipes, check=False)
    for fmt in ("markdown", "json"):
        review = cli("review", "old.yaml", new, "--format", fmt, cwd=recipes, check=False)
        assert review.returncode == diff.returncode == code
        assert "Traceback" not in review.stderr
    out = json.loads(review.stdout)
    assert out["exit_code"] == code
    if code != 2:
        assert out["fingerprint"]["changed"] == (code != 0)
        assert out["version"]["bumped"] == (code == 3)


def test_invalid_new_lists_every_located_error(recipes):
    new = variant(recipes, "bad.yaml", ("steps: 20", "steps: -1"), ("size: 3", "size: 3\n  per_caption: worst"))
    proc = cli("review", "old.yaml", new, cwd=recipes, check=False)
    assert proc.returncode == 2
    assert "**❌ invalid recipe** (exit 2)" in proc.stdout
    assert "#### Validation of `bad.yaml`: 2 problem(s)" in proc.stdout
    assert "- `bad.yaml:14:10` `generate.steps`: must be >= 1, got -1" in proc.stdout
    assert "`select.per_caption`" in proc.stdout
    assert "Compute estimate" not in proc.stdout  # nothing is compared until the recipe loads
    assert proc.stderr.splitlines()[0] == "bad.yaml:14:10: generate.steps: must be >= 1, got -1"


def test_a_new_recipe_is_reviewed_alone(recipes):
    proc = cli("review", "new.yaml", cwd=recipes)
    assert "**✅ new recipe** (exit 0)" in proc.stdout
    assert "| | new |" in proc.stdout and "| denoiser evaluations | 480 |" in proc.stdout
    assert "Changed fields" not in proc.stdout
    # its local caption file has no sha256 pin: the warning diff and `review OLD NEW` give, here too
    notes = proc.stdout.split("#### Notes\n\n")[1].splitlines()
    assert notes == ["- ⚠️ captions.sources[0] is a local file with no sha256 pin: its content can change the data"
                     " without changing the recipe or its fingerprint (the build notices, by content identity; a"
                     " review of the recipe cannot); pin it with captions.sources[0].sha256"]
    out = json.loads(cli("review", "new.yaml", "--format", "json", cwd=recipes).stdout)
    assert [n.removeprefix("note: ") for n in out["notes"]] == [notes[0].removeprefix("- ⚠️ ")]


def test_a_new_pinned_recipe_has_no_warning(recipes):
    import hashlib
    digest = hashlib.sha256((recipes / "caps.jsonl").read_bytes()).hexdigest()
    new = variant(recipes, "pinned.yaml", ("      limit: 4", f"      limit: 4\n      sha256: {digest}"))
    proc = cli("review", new, cwd=recipes)
    assert "**✅ new recipe** (exit 0)" in proc.stdout and "Notes" not in proc.stdout
    assert json.loads(cli("review", new, "--format", "json", cwd=recipes).stdout)["notes"] == []


def test_json_carries_the_changes_and_the_estimate_delta():
    out = json.loads(cli("review", "old.yaml", "new.yaml", "--format", "json", cwd=INPUTS, check=False).stdout)
    assert out["verdict"] == "data changes; version bumped" and out["valid"] is True
    steps = next(c for c in out["changes"] if c["field"] == "generate.steps")
    assert steps == {"field": "generate.steps", "old": 20, "new": 30, "data": True}
    est = out["estimate"]
    # 4 captions; 1 then 2 candidates each; 20 then 30 steps; x2 for classifier-free guidance
    assert (est["old"]["denoiser_evals"], est["new"]["denoiser_evals"]) == (4 * 1 * 20 * 2, 4 * 2 * 30 * 2)
    assert est["delta"]["denoiser_evals"] == 320
    ref = est["reference"]["denoiser_evals_per_second"]
    assert est["new"]["gpu_hours"] == pytest.approx(480 / ref / 3600)            # 1024x1024: scale 1
    assert est["old"]["gpu_hours"] == pytest.approx(160 * 0.25 / ref / 3600)     # 512x512: a quarter
    assert out["notes"] and "captions.sources[0]" in out["notes"][0]             # unpinned local source


def test_pinned_source_has_no_warning(recipes):
    import hashlib
    digest = hashlib.sha256((recipes / "caps.jsonl").read_bytes()).hexdigest()
    pinned = ("      limit: 4", f"      limit: 4\n      sha256: {digest}")
    old = variant(recipes, "old_pinned.yaml", pinned)
    new = variant(recipes, "new_pinned.yaml", pinned, ("steps: 20", "steps: 21"), BUMP)
    proc = cli("review", old, new, cwd=recipes, check=False)
    assert proc.returncode == 3 and "Notes" not in proc.stdout and "sha256" not in proc.stdout.split("####")[-1]


def test_old_from_git_revision(recipes):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=recipes, check=True)
    subprocess.run(git + ["add", "."], cwd=recipes, check=True)
    subprocess.run(git + ["commit", "-qm", "base"], cwd=recipes, check=True)
    variant(recipes, "old.yaml", ("steps: 20", "steps: 22"))  # edit in the work tree
    proc = cli("review", "HEAD:old.yaml", "old.yaml", cwd=recipes, check=False)
    assert proc.returncode == 4
    assert "| `generate.steps` | `20` | `22` | yes |" in proc.stdout
    assert "error: old.yaml: the data changed but version was not bumped" in proc.stderr


def test_bad_format_flag_is_refused(recipes):
    proc = cli("review", "old.yaml", "new.yaml", "--format", "html", cwd=recipes, check=False)
    assert proc.returncode == 2 and "--format" in proc.stderr and "Traceback" not in proc.stderr
