"""`vadedge triton-repo BUNDLE --out REPO`: a Triton model repository serving the bundle (issue 17)."""

from __future__ import annotations

from pathlib import Path

import click

from ._errors import user_errors
from ._logging import verbosity_options
from ._params import FiniteFloatRange


@click.command("triton-repo")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Model repository folder.")
@click.option("--name", default="vadedge", show_default=True, help="Model name in the repository.")
@click.option(
    "--max-batch", type=click.IntRange(min=1), default=16, show_default=True, help="Cameras (sequences) per model call."
)
@click.option(
    "--no-dynamic-batching",
    is_flag=True,
    help="Sequence batcher 'direct' strategy instead of oldest-first batching across cameras.",
)
@click.option(
    "--queue-delay-us",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="How long a partial batch waits for more cameras.",
)
@click.option(
    "--idle-s",
    type=FiniteFloatRange(min=0.001),
    default=10.0,
    show_default=True,
    help="A camera silent this long loses its server-side state.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="ONNX Runtime device of the Python model: cpu, cuda:N, tensorrt:N or auto.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="ONNX Runtime threads in the server (0 = its default).",
)
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Model instances (Python backend: one process each); each camera stays on one.",
)
@click.option("--gpu", is_flag=True, help="Also write ONNX Runtime / TensorRT backend models with implicit state.")
@verbosity_options
@user_errors
def triton_repo(
    bundle: Path,
    out: Path,
    name: str,
    max_batch: int,
    no_dynamic_batching: bool,
    queue_delay_us: int,
    idle_s: float,
    device: str,
    threads: int,
    instances: int,
    gpu: bool,
) -> None:
    """Write a Triton model repository for BUNDLE (see docs/deployment.md for serving it)."""
    from vadedge.serving.triton_repo import RepoOptions, write_model_repository

    opts = RepoOptions(
        name=name,
        max_batch_size=max_batch,
        dynamic_batching=not no_dynamic_batching,
        max_queue_delay_us=queue_delay_us,
        idle_us=int(idle_s * 1e6),
        threads=threads,
        device=device,
        instance_kind="KIND_GPU" if device.startswith(("cuda", "tensorrt")) else "KIND_CPU",
        instances=instances,
        gpu=gpu,
    )
    repo = write_model_repository(bundle, out, opts)
    click.echo(f"wrote {repo} (model {name!r}); serve it: tritonserver --model-repository {repo}")


command = triton_repo
