"""Start the real vLLM CPU server (infra/vllm-cpu/serve.sh) once per test session."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from bot.config import REPO_ROOT
from tests.servers import free_port

SERVE = REPO_ROOT / "infra" / "vllm-cpu" / "serve.sh"


class VLLMServer:
    """vLLM serving SmolLM2 on a free loopback port; its log goes to `log_path`."""

    def __init__(self, log_path: Path, start_timeout_s: float = 900) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.proc = subprocess.Popen(
            ["bash", str(SERVE)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(2)
        self.stop()
        raise RuntimeError(f"vLLM did not answer within {start_timeout_s:.0f} s: {self.tail()}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
        self._log.close()
