"""Every new release says what changed: publishing vX to a repository that already holds an earlier
version tag adds a "Changes since vY" section to the card (vY: the highest version tag below vX), the
`compare` summary of the release at vY (its files downloaded) and this build.

release/publish.py calls `changes_since` just before it commits a new release (api.py hands it over:
release/ does not import this package). The section goes into the build dir's card, between markers
(release/card.py `set_section`), so a rerun replaces it and the local card says what the published one
says. A comparison that cannot be made (the earlier release unreadable or unreachable) is reported on
the reporter and leaves the card as it is: it never stops a release.
"""
from __future__ import annotations

from pathlib import Path

from .. import layout, reporter
from ..atomic import atomic_write
from ..errors import BuildError, InputError
from ..execution.report import SEMVER, semver_key

SECTION = "changes-since"


def earlier_tag(tags: list[str], version: str) -> str | None:
    """The highest `v<semver>` tag below `version`, or None."""
    below = [t for t in tags if t.startswith("v") and SEMVER.match(t[1:])
             and semver_key(t[1:]) < semver_key(version)]
    return max(below, key=lambda t: semver_key(t[1:]), default=None)


def section(build_dir: Path, repo_id: str, version: str, tag: str) -> str:
    """The card section: the release at `tag` compared with the build about to become v`version`."""
    from .compare import compare
    from .report import to_markdown
    from .sides import fetch_release, from_build

    spec = f"{repo_id}@{tag}"
    folder = fetch_release(repo_id, tag, spec, [layout.LOCK, layout.STATS, f"{layout.DATA}/*"])
    old = from_build(folder, spec, "release", spec)
    new = from_build(Path(build_dir), f"{repo_id}@v{version}", "build", "DIR")
    return to_markdown(compare(old, new), level=2, title=f"Changes since {tag}", card=True)


def changes_since(build_dir: Path, repo_id: str, version: str, tags: list[str]) -> bool:
    """Sets the card's section to what changed since the earlier release, and removes one an earlier publish
    left when there is none to compare with (another repository, or the comparison failed). True when set."""
    from ..release.card import set_section

    tag, text = earlier_tag(tags, version), None
    if tag is not None:
        try:
            text = section(build_dir, repo_id, version, tag)
        except (InputError, BuildError) as e:
            reporter.note(f"the card does not say what changed since {tag}: {e}")
    card = Path(build_dir) / layout.CARD
    before = card.read_text(encoding="utf-8")
    after = set_section(before, SECTION, text)
    if after != before:
        atomic_write(card, after)
    if text is not None:
        reporter.info(f"the card says what changed since {tag}")
    return text is not None
