"""What `verify` found (release/verify.py makes it): one RowCheck per sampled row, and the report the
CLI prints. Ids come from the data, so they are shown escaped (text.py)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..text import printable


@dataclass
class RowCheck:
    id: str
    shard: int = -1
    batch: int = -1
    pixels: str = ""                                  # max (lossless) or mean (lossy) |difference| in levels
    deltas: dict = field(default_factory=dict)        # score column -> |stored - regenerated|
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyResult:
    label: str             # the build dir, or ORG/NAME@REVISION
    name: str
    version: str
    fingerprint: str
    built: str             # how the build was made: device types, threads, batch and shard sizes
    regenerated_on: str    # where and how strictly pixels were compared ("" when nothing was regenerated)
    seed: int
    batches: int
    rows: list[RowCheck]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.rows)

    @property
    def mismatched(self) -> list[str]:
        """The ids of the rows that do not regenerate from the lock."""
        return [c.id for c in self.rows if not c.ok]

    def summary(self) -> str:
        """What `synthvlm-build verify` prints: the build, the sample, a line per row, the verdict."""
        lines = [f"verify {printable(self.label)}: {printable(self.name)} v{printable(self.version)},"
                 f" fingerprint {self.fingerprint[:12]}",
                 f"{self.built}; {self.regenerated_on or 'no sampled row names a candidate to regenerate'}",
                 f"sample: {len(self.rows)} row(s) (seed {self.seed}) in {self.batches} batch(es)",
                 table(self.rows)]
        bad = [printable(i) for i in self.mismatched]
        if bad:
            lines.append(f"{len(bad)} of {len(self.rows)} row(s) do NOT match: {', '.join(bad)}"
                         f" ({self.seconds:.1f} s)")
        else:
            lines.append(f"{len(self.rows)} of {len(self.rows)} row(s) match: verified ({self.seconds:.1f} s)")
        return "\n".join(lines)

    def error(self) -> str:
        """The error line for a mismatch (the CLI writes it to standard error and exits 1)."""
        return (f"error: {printable(self.label)}: row(s) that do not regenerate from the lock:"
                f" {', '.join(printable(i) for i in self.mismatched)}")

    def __str__(self) -> str:
        return self.summary()


def table(results: list[RowCheck]) -> str:
    """One line per row."""
    shown = {c.id: printable(c.id) for c in results}
    width = max([len("id")] + [len(shown[c.id]) for c in results])
    names = list(dict.fromkeys(name for c in results for name in c.deltas)) or ["clip_score", "ssim", "score"]
    head = f"{'id':<{width}}  shard  batch  pixels  " + "".join(f"{name:<12}" for name in names) + "result"
    lines = [head]
    for c in results:
        deltas = "".join(f"{_delta(c.deltas.get(name)):<12}" for name in names)
        result = "ok" if c.ok else "MISMATCH: " + "; ".join(c.problems)
        lines.append(f"{shown[c.id]:<{width}}  {_pos(c.shard):<5}  {_pos(c.batch):<5}  {c.pixels or '-':<6}"
                     f"  {deltas}{result}")
    return "\n".join(lines)


def _pos(n: int) -> str:
    return "-" if n < 0 else str(n)


def _delta(d) -> str:
    return "-" if d is None else "0" if d == 0 else f"{d:.1e}"
