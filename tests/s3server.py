"""A local S3-compatible server for tests: moto's server mode on 127.0.0.1, reached by s3fs through the
standard AWS variables (AWS_ENDPOINT_URL, keys), so a build, a resume in a fresh process and Ray actors on
other simulated nodes all find it as a user's process finds a real bucket. Offline: nothing leaves the
machine."""
from __future__ import annotations

import logging
import os
import uuid


class S3Server:
    def __init__(self):
        from moto.server import ThreadedMotoServer
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update(self.env)
        import s3fs
        self.fs = s3fs.S3FileSystem(endpoint_url=self.env["AWS_ENDPOINT_URL"], key="testing", secret="testing")

    def bucket(self) -> str:
        """A new empty bucket's name."""
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.fs.mkdir(name)
        return name

    def keys(self, prefix: str) -> list[str]:
        """Every object under `prefix` (bucket/...), relative to it."""
        self.fs.invalidate_cache()
        return sorted(k[len(prefix) + 1:] for k in self.fs.find(prefix))

    def stop(self) -> None:
        self.server.stop()
