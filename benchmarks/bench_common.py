"""Helpers shared by the benchmark scripts: the machine string and fresh-process cells."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def machine() -> str:
    """CPU model, core count, JAX platform and version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import jax

    return f"{cpu}, {os.cpu_count()} cores, {jax.devices()[0].platform}, jax {jax.__version__}"


def in_fresh_process(
    script: str, args: list[str], devices: int, taskset: str | None = None
) -> dict:
    """Run ``script --cell ARGS`` in a fresh Python with ``devices`` XLA host devices and
    return the JSON it prints last."""
    cmd = [sys.executable, script, "--cell", *args]
    if taskset:
        cmd = ["taskset", "-c", taskset, *cmd]
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])
