"""Issue 16 item 1: `vadedge run --config cameras.yaml` runs several cameras in one process.

Four cameras on generated videos, two toy bundles (one of them shared by three cameras, one camera
masked): every event is in the JSON-lines sink once with its camera name, and each camera's scores
and events equal a single-camera `vadedge run` of the same video (per-camera state is isolated,
batching changes nothing). Config mistakes exit 2 naming the key and the YAML line.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import textwrap

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("pydantic")
pytest.importorskip("yaml")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.bundle import LocalSpec, load_bundle, save_bundle  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.synthetic import SceneGenerator, write_video  # noqa: E402

H, W = 64, 96
MASK = {"width": W, "height": H, "mode": "exclude", "polygons": [[[0, 0], [48, 0], [48, 64], [0, 64]]]}


def _bundle(path, seed: int, threshold: tuple[float, float]):
    """A toy bundle (dynamic batch) with a local error-map component, so a mask changes its score."""
    b = make_toy_bundle(
        path, height=H, width=W, color="bgr", threshold=threshold, min_event_frames=2, batch="dynamic", seed=seed
    )
    bundle = load_bundle(b)
    m, s = bundle.manifest, bundle.manifest.score
    save_bundle(
        b,
        dataclasses.replace(
            m,
            score=dataclasses.replace(
                s,
                local={"local8": LocalSpec("error_map", 8)},
                signs={**s.signs, "local8": -1},
                weights={**s.weights, "local8": 0.5},
            ),
        ),
        bundle.state,
    )
    return b


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cams")
    gen = SceneGenerator(H, W, seed=1)
    for i in range(3):
        frames, _ = gen.render(40, seed=10 + i, anomaly="speed", anomaly_start=18)
        write_video(tmp / f"v{i}.avi", frames, fps=10)
    (tmp / "mask.json").write_text(json.dumps(MASK))
    _bundle(tmp / "A", 0, (-25.4, -25.9))
    _bundle(tmp / "B", 1, (-25.4, -25.9))
    return tmp


CONFIG = """\
cameras:
  - {name: gate, source: v0.avi, bundle: A, scores: out/gate.csv}
  - {name: yard, source: v1.avi, bundle: A, scores: out/yard.csv}
  - {name: door, source: v2.avi, bundle: B, scores: out/door.csv}
  - name: lobby
    source: v0.avi
    bundle: A
    scores: out/lobby.csv
    mask: mask.json
  - {name: spare, source: not-there.avi, enabled: false}
sinks:
  - {kind: jsonl, path: out/events.jsonl}
state_dir: state
snapshots: out/snaps
clips: out/clips
pre_roll: 1
post_roll: 0.5
"""


def _scores(path) -> np.ndarray:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert rows
    return np.array(
        [
            [float(v) if v not in ("", None) else np.nan for k, v in r.items() if k not in ("stream", "latency_ms")]
            for r in rows
        ]
    )


def _frame_count(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _invoke(args):
    return CliRunner().invoke(cli, args)


def test_four_cameras_in_one_process_equal_four_single_runs(site):
    (site / "config.yaml").write_text(CONFIG)
    res = _invoke(["run", "--config", str(site / "config.yaml"), "-q"])
    assert res.exit_code == 0, res.output
    for name in ("gate", "yard", "door", "lobby"):
        assert f"[{name}] processed 40 frames" in res.output
    # gate and yard share bundle A's settings: one model, batched; the masked lobby has its own
    models = [line.split(" — cameras ")[1] for line in res.output.splitlines() if line.startswith("model ")]
    assert models == ["gate, yard", "door", "lobby"]
    msgs = [json.loads(line) for line in (site / "out" / "events.jsonl").read_text().splitlines()]
    assert msgs, "the thresholds are set to raise events on the anomaly"
    assert len({m["message_id"] for m in msgs}) == len(msgs)  # every message once
    singles = {
        "gate": ("v0.avi", "A", []),
        "yard": ("v1.avi", "A", []),
        "door": ("v2.avi", "B", []),
        "lobby": ("v0.avi", "A", ["--mask", str(site / "mask.json")]),
    }
    for name, (video, bundle, extra) in singles.items():
        one = site / f"single-{name}"
        r = _invoke(
            [
                "run",
                str(site / video),
                "-m",
                str(site / bundle),
                "-q",
                "--scores",
                str(one) + ".csv",
                "--events",
                str(one) + ".jsonl",
                *extra,
            ]
        )
        assert r.exit_code == 0, r.output
        np.testing.assert_allclose(
            _scores(site / "out" / f"{name}.csv"), _scores(str(one) + ".csv"), rtol=1e-5, atol=1e-5, equal_nan=True
        )
        ends = [json.loads(x) for x in (one.with_suffix(".jsonl")).read_text().splitlines()]
        ends = [e for e in ends if e["type"] == "end"]
        mine = [m for m in msgs if m["camera"] == name]
        for kind in ("new", "end"):  # each event once per type, with its camera name
            got = [m for m in mine if m["type"] == kind]
            assert len(got) == len({m["id"] for m in got}) == len(ends), (name, kind)
        got_end = [(m["start_frame"], m["end_frame"]) for m in mine if m["type"] == "end"]
        assert got_end == [(e["start_frame"], e["end_frame"]) for e in ends]
        for m in (m for m in mine if m["type"] == "end"):  # snapshot and clip of each event (10 fps)
            assert cv2.imread(m["snapshot"]).shape == (H, W, 3) and m["box"] is not None
            last = 39 if m["reason"] != "score" else min(39, m["end_frame"] + 5)  # post-roll 0.5 s
            assert _frame_count(m["clip"]) == last - max(0, m["start_frame"] - 10) + 1, m  # pre-roll 1 s
    assert not np.allclose(
        _scores(site / "out" / "gate.csv")[4:], _scores(site / "out" / "lobby.csv")[4:], equal_nan=True
    )  # the mask is applied to its camera only


def test_print_config_shows_the_resolved_config_and_the_cli_maps_onto_it(site):
    (site / "config.yaml").write_text(CONFIG)
    res = _invoke(["run", "--config", str(site / "config.yaml"), "--print-config"])
    assert res.exit_code == 0, res.output
    import yaml

    doc = yaml.safe_load(res.output)
    assert [c["name"] for c in doc["cameras"]] == ["gate", "yard", "door", "lobby", "spare"]
    assert doc["cameras"][0]["source"] == str(site / "v0.avi") and doc["cameras"][0]["sample_fps"] is None
    assert doc["sinks"] == [{"kind": "jsonl", "path": str(site / "out" / "events.jsonl")}]
    # the single-camera command line is the same model: print it, load it back, get the same config
    res = _invoke(
        [
            "run",
            str(site / "v0.avi"),
            "-m",
            str(site / "A"),
            "--camera-name",
            "gate",
            "--threshold",
            "3:2",
            "--sample-fps",
            "5",
            "--webhook",
            "http://127.0.0.1:9/hook",
            "--mqtt",
            "127.0.0.1/nvr",
            "--mask",
            str(site / "mask.json"),
            "--no-heatmap",
            "--print-config",
        ]
    )
    assert res.exit_code == 0, res.output
    (site / "cli.yaml").write_text(res.output)
    back = _invoke(["run", "--config", str(site / "cli.yaml"), "--print-config"])
    assert back.exit_code == 0 and back.output == res.output
    cam = yaml.safe_load(res.output)["cameras"][0]
    assert cam["threshold"] == [3.0, 2.0] and cam["heatmap"] is False and cam["sample_fps"] == 5.0


def test_every_single_camera_option_has_a_config_key():
    """Each option of `vadedge run SOURCE` lands in the config model (or is about the CLI itself)."""
    from vadedge.commands.run import run_cmd
    from vadedge.runconfig import CameraConfig, RunConfig

    cli_only = {"config", "print_config", "quiet", "verbose"}
    renamed = {
        "model": "bundle",
        "camera_name": "name",
        "no_heatmap": "heatmap",
        "mask_file": "mask",
        "webhooks": "sinks",
        "mqtt": "sinks",
    }
    keys = set(CameraConfig.model_fields) | set(RunConfig.model_fields)
    for p in run_cmd.params:
        if p.name in cli_only:
            continue
        assert renamed.get(p.name, p.name) in keys, p.name


@pytest.mark.parametrize(
    ("snippet", "line", "words"),
    [
        ("    colour: red\n", 4, ["cameras[0].colour", "unknown key"]),
        ("    sample_fps: fast\n", 4, ["cameras[0].sample_fps", "number"]),
        ("    smoothing: 3\n", 4, ["cameras[0].smoothing", "less than or equal to 1"]),
        ("  - {name: gate, source: v1.avi, bundle: A}\n", 4, ["cameras[1].name", "used twice"]),
        (
            "    mask: {width: 96, height: 64, polygons: [[[0, 0], [120, 0], [0, 40]]]}\n",
            4,
            ["cameras[0].mask", "outside the 96x64 frame"],
        ),
        ("sinks:\n  - {kind: jsonl, path: ro/events.jsonl}\n", 4, ["sinks[0].path", "not writable"]),
        ("    events: FILE/events.jsonl\n", 4, ["cameras[0].events", "not writable"]),  # under a file
        ("sinks:\n  - {kind: webhook, url: http://127.0.0.1:9/x, retries: 3}\n", 5, ["sinks[0]", "retries"]),
    ],
)
def test_config_errors_name_the_key_and_the_line(site, tmp_path, snippet, line, words):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    base = f"cameras:\n  - name: gate\n    source: {site / 'v0.avi'}\n"
    text = base + snippet.replace("FILE", str(site / "v0.avi"))
    if "sinks" in snippet:
        line = base.count("\n") + 2
    (tmp_path / "c.yaml").write_text(text.replace("ro/", f"{ro}/"))
    try:
        res = _invoke(["run", "--config", str(tmp_path / "c.yaml")])
    finally:
        os.chmod(ro, 0o700)
    if os.geteuid() == 0 and "ro/" in snippet:  # the folder-under-a-file case covers it then
        pytest.skip("root writes anywhere")
    assert res.exit_code == 2, res.output
    assert f"c.yaml, line {line}:" in res.output, res.output
    for w in words:
        assert w in res.output, res.output
    assert "Traceback" not in res.output


def test_a_missing_file_source_exits_2_and_options_do_not_mix_with_config(site, tmp_path):
    (tmp_path / "c.yaml").write_text(
        textwrap.dedent(f"""\
        cameras:
          - {{name: gate, source: {tmp_path / "nope.avi"}, bundle: {site / "A"}}}
        state_dir: {tmp_path / "state"}
        """)
    )
    res = _invoke(["run", "--config", str(tmp_path / "c.yaml"), "-q"])
    assert res.exit_code == 2 and "not found" in res.output, res.output
    res = _invoke(["run", "--config", str(tmp_path / "c.yaml"), "--threshold", "3"])
    assert res.exit_code == 2 and "--threshold cannot be combined with --config" in res.output


def test_a_live_camera_down_at_start_is_retried_while_the_others_run(site, tmp_path, monkeypatch):
    """A URL camera that cannot be opened at start-up does not stop the file camera: it is retried
    with backoff in the background and joins the run when it opens (here: on the 4th attempt)."""
    from vadedge.errors import DataError
    from vadedge.runconfig import validate
    from vadedge.runtime import cameras

    attempts = []
    real = cameras.open_source

    def flaky_open(spec, **kw):
        if str(spec).startswith("rtsp://"):
            attempts.append(spec)
            if len(attempts) <= 3:
                raise DataError(f"cannot open {spec}")
            return real(site / "v1.avi", **kw)  # the camera came up
        return real(spec, **kw)

    monkeypatch.setattr(cameras, "open_source", flaky_open)
    cfg = validate(
        {
            "cameras": [
                {"name": "gate", "source": str(site / "v0.avi"), "bundle": str(site / "A")},
                {"name": "street", "source": "rtsp://127.0.0.1:9/none", "bundle": str(site / "A")},
            ],
            "state_dir": str(tmp_path / "state"),
        },
        base=None,
        where="test",
    )
    pytest.importorskip("prometheus_client")
    from vadedge.delivery.metrics import Metrics

    meter = Metrics()
    summary = cameras.run_cameras(cfg, metrics=meter, retry_initial=0.05, retry_max=0.1)
    assert len(attempts) == 4
    assert summary.cameras["gate"].frames == 40 and summary.cameras["street"].frames == 40
    for name in ("gate", "street"):  # per-camera series
        assert meter.registry.get_sample_value("vadedge_frames_total", {"camera": name}) == 40
        assert meter.registry.get_sample_value("vadedge_frames_scored_total", {"camera": name}) == 36
