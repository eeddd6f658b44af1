"""Start and stop a local `tritonserver` (the binary bundled in the nvidia-pytriton wheel).

Used by the tests and the benchmark, and as the reference for the commands in docs/deployment.md.
The wheel ships the Python backend without the stub in place: the stub for the running Python
version lies in `python_backend_stubs/<major.minor>/` and must sit next to `libtriton_python.so`,
so a private backend folder is assembled (symlinks) in a temporary directory. The server binds
127.0.0.1 only and runs with `--model-control-mode explicit`, loading only the models asked for.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from ..errors import ConfigError

logger = logging.getLogger(__name__)


def pytriton_root() -> Optional[Path]:
    """The `pytriton/tritonserver` folder of an installed nvidia-pytriton wheel, or None."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    return root if (root / "bin" / "tritonserver").is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_stub_numpy(paths: Sequence[str]) -> None:
    """The 2.51 Python-backend stub is built against NumPy 1.x: with NumPy 2 it returns EMPTY output
    tensors (no error). Refuse to start then, unless a NumPy < 2 comes first on the stub's path."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        return
    for p in paths:
        for info in Path(p).glob("numpy-*.dist-info") if Path(p).is_dir() else ():
            if info.name.split("-")[1].startswith("1."):
                return
    raise ConfigError(
        f"the tritonserver Python backend bundled with nvidia-pytriton needs NumPy < 2 (this environment has "
        f"{numpy.__version__}; with it the server answers with empty tensors). Install one for the server only: "
        f"pip install --no-deps --target DIR 'numpy<2' and set {STUB_PATH_ENV}=DIR"
    )


def backend_directory(root: Path, into: Path) -> Path:
    """A backend folder with the Python backend and the stub for this Python version (symlinks)."""
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / ver / "triton_python_backend_stub"
    if not stub.is_file():
        raise ConfigError(f"nvidia-pytriton has no Python backend stub for Python {ver} ({stub})")
    py = into / "python"
    py.mkdir(parents=True, exist_ok=True)
    for f in (root / "backends" / "python").iterdir():
        if f.is_file() and not (py / f.name).exists():
            (py / f.name).symlink_to(f)
    if not (py / stub.name).exists():
        (py / stub.name).symlink_to(stub)
    return into


STUB_PATH_ENV = "VADEDGE_TRITON_STUB_PATH"


def stub_python_path() -> list[str]:
    """Where the stub finds vadedge and its dependencies: $VADEDGE_TRITON_STUB_PATH first, then the
    folder vadedge is imported from and this interpreter's site-packages (the stub embeds the system
    libpython and ignores PYTHONPATH, so the generated model.py adds these entries itself)."""
    import vadedge

    paths = [p for p in os.environ.get(STUB_PATH_ENV, "").split(os.pathsep) if p]
    paths.append(str(Path(vadedge.__file__).resolve().parents[1]))
    base = (os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix))
    for p in sys.path:
        if p and (("site-packages" in p) or not os.path.realpath(p).startswith(base)) and p not in paths:
            paths.append(p)
    return paths


class TritonServer:
    """A `tritonserver` process on 127.0.0.1 serving `repository` (context manager; `stop()` ends it).

    Ports default to free ones; pass the previous ones to `start()` again to simulate a restart.
    The stub runs our model code, so PYTHONPATH names where vadedge and its dependencies are.
    """

    def __init__(
        self,
        repository: os.PathLike,
        models: Sequence[str],
        *,
        http_port: Optional[int] = None,
        grpc_port: Optional[int] = None,
        metrics_port: Optional[int] = None,
        log_path: Optional[os.PathLike] = None,
        extra_args: Sequence[str] = (),
        exit_timeout: int = 5,
    ) -> None:
        root = pytriton_root()
        if root is None:
            raise ConfigError("tritonserver not found: pip install nvidia-pytriton (it bundles the server)")
        self.root = root
        self.repository = Path(repository)
        self.models = list(models)
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.extra_args = list(extra_args)
        self.exit_timeout = exit_timeout  # seconds a stopping server waits for in-flight requests
        self._tmp = Path(tempfile.mkdtemp(prefix="vadedge-triton-"))
        self.backends = backend_directory(root, self._tmp / "backends")
        self.log_path = Path(log_path) if log_path else self._tmp / "server.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        cmd = [
            str(self.root / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.backends}",
            "--model-control-mode=explicit",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-cpu-metrics=false",
            "--allow-gpu-metrics=false",
            f"--exit-timeout-secs={self.exit_timeout}",
        ]
        cmd += [f"--load-model={m}" for m in self.models]
        return cmd + self.extra_args

    def start(self, timeout: float = 120.0) -> TritonServer:
        env = dict(os.environ)
        paths = stub_python_path()
        check_stub_numpy(paths)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.setdefault("OMP_NUM_THREADS", "1")
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ConfigError(f"tritonserver exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            if self.ready():
                logger.info("tritonserver ready: %s, %s", self.grpc_url, self.http_url)
                return self
            time.sleep(0.25)
        self.stop()
        raise ConfigError(f"tritonserver not ready after {timeout:.0f} s; log:\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            return str(r.read().decode())

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`, default exit_timeout + 5 s: a server
        with a client's gRPC stream still open does not finish shutting down by itself)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(self.exit_timeout + 5 if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_metrics(text: str, model: str) -> dict[str, float]:
    """Triton's Prometheus counters for `model` summed over versions: {metric name: value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or f'model="{model}"' not in line:
            continue
        name, _, value = line.rpartition(" ")
        key = name.split("{", 1)[0]
        try:
            out[key] = out.get(key, 0.0) + float(value)
        except ValueError:
            continue
    return out
