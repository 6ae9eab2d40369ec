"""Selection math on hand-made scores."""
import numpy as np
import pytest

from synthvlm_builder.recipe.typed import select_section as SelectConfig
from synthvlm_builder.errors import BuildError
from synthvlm_builder.stages.select import Candidates, select


def cands(rows):
    """rows: (id, clip, ssim); score = clip + 0.5 * ssim; caption id = id without '-k'."""
    ids = np.array([r[0] for r in rows])
    clip = np.array([r[1] for r in rows], dtype=np.float32)
    ssim = np.array([r[2] for r in rows], dtype=np.float32)
    return Candidates(id=ids, caption_id=np.array([i.rsplit("-", 1)[0] for i in ids]),
                      scores={"clip_score": clip, "ssim": ssim, "score": (clip + np.float32(0.5) * ssim).astype(np.float32)})


ROWS = [  # caption a: 3 candidates, b: 2, c: 1, d: 2
    ("a-0", 0.30, 0.80), ("a-1", 0.35, 0.90), ("a-2", 0.20, 0.95),   # scores .70 .80 .675
    ("b-0", 0.40, 0.60), ("b-1", 0.10, 0.20),                        # .70 .20
    ("c-0", 0.25, 0.50),                                             # .50
    ("d-0", 0.33, 0.70), ("d-1", 0.33, 0.70),                        # .68 .68 (tie)
]


def test_best_per_caption_then_top_n():
    sel = select(cands(ROWS), SelectConfig(size=3))
    assert sel.ids == ["a-1", "b-0", "d-0"]  # plan order; d-0 beats d-1 on the id tie-break
    steps = {s["step"]: s for s in sel.funnel["steps"]}
    assert steps["best per caption"]["kept"] == 4 and steps["best per caption"]["dropped"] == 4
    assert steps["top 3 by score"]["dropped"] == 1  # c-0 (0.50) is the weakest best
    assert sel.funnel["candidates"] == 8 and sel.funnel["selected"] == 3


def test_keep_all_candidates():
    sel = select(cands(ROWS), SelectConfig(size=4, per_caption="all"))
    assert sel.ids == ["a-0", "a-1", "b-0", "d-0"]  # .70 .80 .70 .68 beat .68(d-1 by id) .675 .50 .20


def test_ties_broken_by_id():
    rows = [("x-0", 0.5, 0.0), ("w-0", 0.5, 0.0), ("y-0", 0.5, 0.0)]
    # Equal scores: the smaller ids win (w-0, x-0); rows come back in plan order.
    assert select(cands(rows), SelectConfig(size=2)).ids == ["x-0", "w-0"]


def test_thresholds_apply_before_best_of_k():
    # a-1 is a's best by score but fails min_ssim; then a-2 (0.675) must stand in for caption a.
    sel = select(cands(ROWS), SelectConfig(size=10, min_ssim=0.92, allow_fewer=True))
    assert sel.ids == ["a-2"] and sel.funnel["steps"][1]["dropped"] == 7
    sel = select(cands(ROWS), SelectConfig(size=10, min_clip_score=0.3, allow_fewer=True))
    assert sel.ids == ["a-1", "b-0", "d-0"]
    sel = select(cands(ROWS), SelectConfig(size=10, min_score=0.7, allow_fewer=True))
    assert sel.ids == ["a-1", "b-0"]  # a-0 also reaches 0.70 but a-1 is a's best
    steps = [s["step"] for s in sel.funnel["steps"]]
    assert steps == ["candidates", "min_score >= 0.7", "best per caption", "top 10 by score"]


def test_threshold_boundary_is_inclusive():
    rows = [("a-0", 0.25, 0.0), ("b-0", np.nextafter(np.float32(0.25), np.float32(0)), 0.0)]
    sel = select(cands(rows), SelectConfig(size=2, min_clip_score=0.25, allow_fewer=True))
    assert sel.ids == ["a-0"]


def test_shortfall_fails_with_funnel_unless_allowed():
    with pytest.raises(BuildError) as err:
        select(cands(ROWS), SelectConfig(size=5))
    msg = str(err.value)
    assert "only 4 of the 5 requested rows" in msg and "best per caption" in msg and "allow_fewer" in msg
    sel = select(cands(ROWS), SelectConfig(size=5, allow_fewer=True))
    assert len(sel.ids) == 4 and sel.funnel["requested"] == 5


def test_nan_scores_never_pass_thresholds_and_rank_last():
    rows = [("a-0", float("nan"), 0.5), ("b-0", 0.1, 0.5)]
    sel = select(cands(rows), SelectConfig(size=2, min_clip_score=0.0, allow_fewer=True))
    assert sel.ids == ["b-0"]
    # No threshold: a NaN score ranks below every number, for the global top-N ...
    assert select(cands(rows), SelectConfig(size=1)).ids == ["b-0"]
    assert select(cands(rows), SelectConfig(size=2)).ids == ["a-0", "b-0"]  # (rows come back in plan order)
    # ... and within a caption's candidates: the numeric one is the caption's best.
    same = [("a-0", float("nan"), 0.9), ("a-1", -0.5, 0.0)]
    assert select(cands(same), SelectConfig(size=1)).ids == ["a-1"]


def test_every_dropped_candidate_names_the_step_that_dropped_it():
    sel = select(cands(ROWS), SelectConfig(size=2, min_clip_score=0.15))
    reasons = dict(zip([r[0] for r in ROWS], sel.reasons))
    assert reasons == {"a-0": "best per caption", "a-1": "", "a-2": "best per caption",
                       "b-0": "", "b-1": "min_clip_score >= 0.15", "c-0": "top 2 by score",
                       "d-0": "top 2 by score", "d-1": "best per caption"}
    assert [i for i, r in reasons.items() if not r] == sel.ids
