"""The lock of a build in object storage (README "Scaling out"): a lease object, DIR/.synthvlm/lock.

An object store has no flock. The lock is an object created with a conditional put (S3's
`If-None-Match: *`, checked by the server: of two runs starting at once exactly one creates it), holding
its owner (a random token, host, boot id, pid) and an expiry. While the build runs a thread renews it
every TTL/3 with `If-Match: ETAG` of its own last version, so it changes hands only when it lapses. It is
taken over when it expired (the owner stopped renewing: killed, or cut off), or at once when its owner is
a process of this machine that no longer runs (a build killed here and rerun here). A takeover is itself
conditional (`If-Match` of the lapsed version), so two runs taking over at once cannot both win.

What it guarantees: two builds never both *start* in one prefix; a build that lost its lease (renewal
found another owner) stops before it installs the release, the only step that replaces files another
build relies on. What it does not: a run frozen longer than the TTL (a paused VM, a partitioned node) may
still write shards and markers after another run took over until it next checks; those writes are the same
bytes the new owner writes for the same shard (a shard's content depends only on the recipe, workdir.py
checks each against its marker), so they do no harm, but the install check and the takeover are not one
atomic step. Expiry compares the lock's time with this machine's clock: clocks must agree to well within
the TTL (SYNTHVLM_LOCK_TTL, default 120 s). On a filesystem without server-checked conditions (not S3)
the create and the takeover are a check then a write (storage.py): a race between two starts is not ruled
out there.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from ..errors import BuildError, InputError
from ..settings import setting
from ..state import CorruptState
from ..storage import Conflict, Store
from ..text import printable

TTL = 120.0


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Lease:
    def __init__(self, store: Store, rel: str, field: str):
        self.store, self.rel, self.field = store, rel, field
        self.ttl = max(1.0, float(setting("SYNTHVLM_LOCK_TTL", TTL)))  # renewed every ttl/3
        self.token = uuid.uuid4().hex
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"owner": self.token, "host": socket.gethostname(), "boot": _boot_id(),
                           "pid": os.getpid(), "expires": time.time() + self.ttl, "ttl": self.ttl}).encode()

    def acquire(self) -> None:
        """Take the lease, or InputError when a live build holds it."""
        for _ in range(3):  # the holder may release it between our create and our read
            try:
                self.etag = self.store.create(self.rel, self._body())
                break
            except Conflict:
                pass
            held = self._held()
            if held is None:
                continue
            body, etag = held
            if not self._stale(body):
                left = max(0, round(body["expires"] - time.time()))
                raise InputError(self.field, f"another synthvlm-build is running in {self.store.url} (host"
                                 f" {printable(body.get('host'))}, pid {body.get('pid')}; its lease ends in {left}s"
                                 " unless renewed); wait for it to end (or stop it), whatever flags are given")
            try:
                self.etag = self.store.replace_if(self.rel, self._body(), etag)
                break
            except Conflict:
                continue
        else:
            raise InputError(self.field, f"another synthvlm-build is taking the lock of {self.store.url} right now;"
                             " wait for it to end")
        self._thread = threading.Thread(target=self._renew_loop, name="synthvlm-lease", daemon=True)
        self._thread.start()

    def _held(self) -> tuple[dict, str] | None:
        version = self.store.version(self.rel)
        if version is None:
            return None
        where = f"{self.store.url}/{self.rel}"
        try:
            body = json.loads(self.store.read(self.rel, limit=1 << 16))
            if not (isinstance(body, dict) and isinstance(body.get("expires"), (int, float))):
                raise ValueError("no expiry")
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise CorruptState(where, f"not a lease ({e})", f"remove {where} if no build is running there",
                               self.field) from None
        return body, version

    @staticmethod
    def _stale(body: dict) -> bool:
        if body["expires"] < time.time():
            return True
        here = body.get("host") == socket.gethostname() and body.get("boot") == _boot_id() and _boot_id()
        return bool(here) and isinstance(body.get("pid"), int) and not _running(body["pid"])

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except Conflict:
                self.lost = True
                return
            except Exception:  # a network blip: the next renewal tries again, the expiry decides
                pass

    def renew(self) -> None:
        self.etag = self.store.replace_if(self.rel, self._body(), self.etag)

    def check(self) -> None:
        """BuildError unless this run still holds the lease (renewed now): called before the install."""
        if not self.lost:
            try:
                self.renew()
            except Conflict:
                self.lost = True
        if self.lost:
            raise BuildError(f"lost the lock of {self.store.url} to another run (this one was stopped for longer"
                             f" than SYNTHVLM_LOCK_TTL, {self.ttl:g}s); nothing was installed; rerun to resume")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self.etag is not None and not self.lost:
            try:
                self.store.delete_if(self.rel, self.etag)
            except Exception:  # it lapses on its own
                pass
        self.etag = None
