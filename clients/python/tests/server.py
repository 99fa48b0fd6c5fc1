"""The real tickcast server for the tests: the binary named by SERVER_BIN (default
target/debug/tickcast), on an ephemeral port of 127.0.0.1, with a SQLite file of its own, an
HS256 secret, short token lifetimes and a synthetic feed of few symbols (busy channels)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("SERVER_BIN", ROOT / "target" / "debug" / "tickcast"))
SYMBOLS = 5  # synthetic symbols: 1000 ticks/s over 5 makes every channel busy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, token_ttl_s: int = 900):
        self.dir = tempfile.mkdtemp(prefix="tickcast-py-")
        self.port = free_port()
        self.secret = secrets.token_hex(24)
        self.token_ttl_s = token_ttl_s
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(self.dir, "server.log"), "ab")

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "TICKCAST_DATABASE__URL"}
        env.update(
            DATABASE_URL=f"sqlite://{self.dir}/tickcast.db?mode=rwc",
            TICKCAST_SERVER__LISTEN=f"127.0.0.1:{self.port}",
            TICKCAST_AUTH__JWT_HS256_SECRET=self.secret,
            TICKCAST_AUTH__TOKEN_TTL_S=str(self.token_ttl_s),
            TICKCAST_FEEDS__SYNTHETIC__SYMBOLS=str(SYMBOLS),
            TICKCAST_API__REQUESTS_PER_SECOND="1000",
            TICKCAST_API__BURST="1000",
            RUST_LOG=os.environ.get("RUST_LOG", "warn"),
        )
        return env

    def add_user(self, name: str) -> str:
        """`tickcast user add NAME`; returns the API key it prints."""
        out = subprocess.run([BIN, "user", "add", name], env=self.env(), capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip()

    def start(self) -> Server:
        # The port may still be held for a moment after a kill: retry the bind briefly.
        for _ in range(40):
            self.proc = subprocess.Popen([BIN, "serve"], env=self.env(), stdout=self.log, stderr=self.log)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"{self.http}/healthz", timeout=1) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    time.sleep(0.1)
            self.kill()
            time.sleep(0.25)
        raise RuntimeError(f"tickcast did not start; see {self.dir}/server.log")

    def kill(self) -> None:
        """SIGKILL: no close frames, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        self.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
