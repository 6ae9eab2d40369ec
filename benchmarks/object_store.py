"""The cost of building into object storage: the same build into a local dir and into an S3 bucket.

    python benchmarks/object_store.py                      # 64 captions, 128 px, 4 steps, 3 pairs
    python benchmarks/object_store.py --captions 4 --repeats 1 --resolution 64 --steps 1   # smallest mode

The bucket is served by moto's S3 server on 127.0.0.1 (the tests' server, tests/s3server.py), reached by
s3fs through AWS_ENDPOINT_URL, as a user reaches a real one. Both sides are the real console entry point
in a fresh process, spawn to exit, with the same recipe (every candidate kept, several shards):

  A  `synthvlm-build RECIPE --output DIR` (a new local dir each time);
  B  `synthvlm-build RECIPE --output s3://bucket/run-N` (a new prefix and a new local copy each time):
     the lease lock, each shard and marker and the captions sent as they are final, the release staged
     in the store and installed there (execution/remote.py).

A and B alternate so drifting machine load hits both; the result is the median of the per-pair ratios
B/A. A loopback server measures the extra requests and copies, not a network: on a real bucket each
request costs a round trip more (tens of ms), so the ratio here is a lower bound for small builds; for
large ones the uploads overlap nothing and cost the bytes over the link.

Last line: RESULT object_store_ratio <median B/A> target 1.25
"""
from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment before anything else is imported)

sys.path.insert(0, str(C.ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--captions", type=int, default=64)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    C.header("object_store")
    with C.bench_tmpdir("object-store") as tmp:
        from s3server import S3Server  # moto's server; sets AWS_ENDPOINT_URL and test keys in os.environ
        server = S3Server()
        try:
            bucket = server.bucket()
            recipe = C.write_recipe(tmp / "recipe", args.captions, res=args.resolution, steps=args.steps,
                                    batch_size=8, shard_size=args.shard_size)
            C.run_timed(C.build_cmd(recipe, tmp / "warm"))  # builds the tiny models once, outside the timing
            ratios = []
            for i in range(args.repeats):
                order = ("local", "s3") if i % 2 == 0 else ("s3", "local")
                seconds = {}
                for side in order:
                    env = C.child_env()
                    if side == "s3":  # a fresh local copy each time: what a new machine pays
                        env["SYNTHVLM_CACHE"] = str(tmp / f"machine-{i}")
                        (tmp / f"machine-{i}").mkdir()
                        (tmp / f"machine-{i}" / "builtin").symlink_to(
                            Path(os.environ["SYNTHVLM_CACHE"]) / "builtin")
                    out = f"s3://{bucket}/run-{uuid.uuid4().hex[:8]}" if side == "s3" else tmp / f"local-{i}"
                    seconds[side], _ = C.run_timed(C.build_cmd(recipe, out), env=env)
                ratios.append(seconds["s3"] / seconds["local"])
                print(f"pair {i}: local {seconds['local']:.2f} s, s3 {seconds['s3']:.2f} s,"
                      f" ratio {ratios[-1]:.3f}", flush=True)
            objects = len(server.keys(bucket))
            print(f"{args.captions} captions, {-(-args.captions // args.shard_size)} shards; {objects} objects in the"
                  f" bucket after {args.repeats} builds", flush=True)
        finally:
            server.stop()
    C.result("object_store_ratio", C.median(ratios), "1.25")


if __name__ == "__main__":
    main()
