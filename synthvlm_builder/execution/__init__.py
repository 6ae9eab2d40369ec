"""Execution: the plan (fingerprint, seeds, shards, estimate), the runner, the shard worker that
every executor runs, the resumable work dir, and the Ray executor."""
