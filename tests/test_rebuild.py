"""`rebuild`: a release made again from its own files, by the command its card gives, without the caption
sources (which the recipe names relative to where it was first run, so `synthvlm-build recipe.yaml` inside
a release fails): the same fingerprint and identity, and the same rows, byte for byte."""
import json
import re
import shutil

import pytest

from buildutil import cli, read_rows, write_recipe


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A small finished build, copied away from its caption file and its work state: what a downloaded
    release holds."""
    src = tmp_path_factory.mktemp("rebuild-src")
    recipe = write_recipe(src, n_captions=6, size=4)
    cli(recipe, "--output", src / "out")
    copy = tmp_path_factory.mktemp("rebuild") / "release"
    shutil.copytree(src / "out", copy, ignore=shutil.ignore_patterns(".synthvlm"))
    shutil.rmtree(src)  # the caption file is gone with the project it came from
    return copy


def card_command(release) -> str:
    """The rebuild command in the card's Recipe section, as a reader copies it."""
    section = (release / "README.md").read_text().split("## Recipe", 1)[1]
    return re.search(r"`(synthvlm-build rebuild [^`]*)`", section).group(1)


def test_the_cards_command_rebuilds_the_same_rows(release):
    lock = json.loads((release / "recipe.lock.json").read_text())
    # what the card used to say fails inside a release: the recipe's caption path is not here
    stale = cli("recipe.yaml", cwd=release, check=False)
    assert stale.returncode == 2 and "caption file not found" in stale.stderr
    command = card_command(release)
    assert command == "synthvlm-build rebuild DIR"  # no publish.repo_id: "DIR being this folder"
    proc = cli(*command.split()[1:-1], ".", cwd=release)
    rebuilt = release.parent / "release-rebuilt"  # the default: beside the release
    assert f"built 4 rows -> {rebuilt}" in proc.stderr, proc.stderr
    again = json.loads((rebuilt / "recipe.lock.json").read_text())
    assert (again["fingerprint"], again["identity"], again["inputs"]) == (lock["fingerprint"], lock["identity"],
                                                                          lock["inputs"])
    assert read_rows(rebuilt) == read_rows(release)  # every column, the image bytes included
    for name in ("README.md", "recipe.yaml", "captions.jsonl", "recipe.lock.json"):
        assert (rebuilt / name).read_bytes() == (release / name).read_bytes(), name
    # a release that publishes names its Hub repository and tag in the command
    assert "--revision" not in command


def test_a_published_recipe_names_its_tag():
    from synthvlm_builder.recipe import load_recipe
    from synthvlm_builder.release.card import rebuild_context
    from buildutil import ROOT
    context = rebuild_context(load_recipe(ROOT / "recipes" / "quickstart.yaml"))
    assert context["rebuild_command"] == "`synthvlm-build rebuild synthvlm/synthvlm-quickstart --revision v0.1.0`"


def test_rebuild_refuses_what_it_cannot_make_again(release, tmp_path):
    into = cli("rebuild", release, "--output", release / "inside", check=False)
    assert into.returncode == 2 and into.stderr.startswith("error: --output: ") and "being rebuilt" in into.stderr
    damaged = shutil.copytree(release, tmp_path / "damaged")
    (damaged / "captions.jsonl").write_text((damaged / "captions.jsonl").read_text().replace("Number 1.", "No 1."))
    proc = cli("rebuild", damaged, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "its sha256 is not the lock's captions.sha256" in proc.stderr
    (damaged / "recipe.lock.json").unlink()
    proc = cli("rebuild", damaged, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "holds no recipe.lock.json" in proc.stderr
    assert not (tmp_path / "out").exists()
