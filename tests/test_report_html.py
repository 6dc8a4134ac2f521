"""HTML and Markdown reports of a folder of real reports, and the HTML page as Chromium renders it."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robaudit.audits.attack.report import curves_figure
from robaudit.audits.corruptions import CorruptionsAudit
from robaudit.data import DataSpec
from robaudit.errors import InputError
from robaudit.presentation.digest import key_numbers, report_tables
from robaudit.presentation.examples import example_images
from robaudit.presentation.html import write_html
from robaudit.presentation.markdown import write_markdown
from robaudit.reports import plots
from robaudit.reports.content import FLAG_STATES, num
from robaudit.reports.folder import Report, Variant, load_folder, read_group
from robaudit.reports.writer import METADATA_KEY, canonical_json

# The demo model untrained: training it would take most of this file's time budget, and report structure does
# not depend on what the model learned.
MODEL = ["-m", "digits_cnn", "-d", "digits"]
DIGITS = DataSpec("digits")


def _run(*args: object) -> None:
    from robaudit.cli import main

    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    assert info.value.code == 0, f"robaudit {' '.join(map(str, args))} exited {info.value.code}"


def _rewrite_metadata(source: Path, target: Path, change: Any) -> None:
    table = pq.read_table(source)
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    change(meta)
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: canonical_json(meta).encode()}), target)


def read_one(path: Path) -> Report:
    return read_group([path])


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two variants: ``base`` (eval, PGD sweep with kept perturbations, their spectrum, hybrid, Jacobian,
    Fourier map, five corruptions) and ``blur`` (eval and minimal DDN perturbations behind a blur defense)."""
    root = tmp_path_factory.mktemp("suite")
    base, blur = root / "base", root / "blur"
    _run("eval", *MODEL, "--limit", 48, "-o", base)
    _run("attack", *MODEL, "--limit", 32, "--eps", "0.05,0.1", "-a", "pgd:steps=3", "--check-samples", 4,
         "--save-perturbations", base / "p.npz", "-o", base)  # fmt: skip
    _run("spectrum", "-p", base / "p.npz", "--eps", "0.1", "-o", base)
    _run("hybrid", *MODEL, "--limit", 32, "--fmix", "0,0.1,0.3,1", "-o", base)
    _run("jacobian", *MODEL, "--limit", 8, "-o", base)
    _run("fourier-map", *MODEL, "--limit", 8, "--step", 8, "-o", base)
    _run("corruptions", *MODEL, "--limit", 8, "-c", "pixelate,contrast,fog,gaussian_noise,defocus_blur",
         "--severities", 1, "-o", base)  # fmt: skip
    defense = ["--defense", "blur:sigma=1"]
    _run("eval", *MODEL, *defense, "--limit", 32, "-o", blur)
    _run("attack", *MODEL, *defense, "--limit", 8, "--minimal", "-a", "ddn:steps=10", "--threat", "white", "-o", blur)
    return root


@pytest.fixture(scope="module")
def page(suite: Path) -> tuple[Path, str]:
    path = write_html(suite, data=DIGITS)
    return path, path.read_text(encoding="utf-8")


class PageParser(HTMLParser):
    """Sections (with the variant they sit in), flag boxes, images, SVGs and URL-valued attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, str | None]] = []
        self.sections: list[tuple[str | None, str]] = []
        self.flags: list[tuple[str | None, str, str]] = []
        self.images: list[str] = []
        self.svgs: list[dict[str, Any]] = []
        self.figures: list[str] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def _variant(self) -> str | None:
        return next((s.get("data-variant") for s in reversed(self.stack) if s.get("data-variant")), None)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href", "action", "poster") and v]
        if tag == "section":
            self.stack.append(a)
            if a.get("data-section") != "variant":
                self.sections.append((self._variant(), str(a.get("data-section"))))
        elif tag == "div" and a.get("data-flag"):
            self.flags.append((self._variant(), str(a["data-flag"]), str(a.get("data-state"))))
        elif tag == "img":
            self.images.append(str(a.get("src")))
        elif tag == "figure":
            self.figures.append(str(a.get("data-figure")))
        elif tag == "svg":
            self.svgs.append({"viewBox": a.get("viewbox"), "paths": 0})
        elif tag in ("path", "use") and self.svgs:
            self.svgs[-1]["paths"] += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "section":
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.stack.pop()


def _parse(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    return parser


def test_suite_page_has_every_section_and_only_inline_resources(suite: Path, page: tuple[Path, str]) -> None:
    path, text = page
    assert path == suite / "report.html"
    parsed = _parse(text)
    sections = {variant: {kind for v, kind in parsed.sections if v == variant} for variant in ("base", "blur")}
    # the untrained demo model: every variant's page says so first
    common = {"caveats", "run", "key-numbers", "eval", "masking", "attack", "examples"}
    assert sections["base"] == common | {"spectrum", "hybrid", "jacobian", "fourier-map", "corruptions"}
    assert sections["blur"] == common
    assert (None, "comparison") in parsed.sections
    assert parsed.images and parsed.svgs
    for source in parsed.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for svg in parsed.svgs:
        assert svg["viewBox"] and svg["paths"] > 0
    assert not [u for u in parsed.urls if u.startswith(("http:", "https:", "//"))]
    assert not parsed.tags & {"script", "link", "iframe", "object", "embed"}
    assert "@import" not in text and "url(http" not in text
    saved = sorted(p.stem for p in (suite / "figures").glob("*.png"))
    assert saved == sorted(parsed.figures)
    assert {"v0-base-attack-accuracy-vs-eps", "v1-blur-attack-minimal", "comparison-clean-accuracy"} <= set(saved)


def test_flag_boxes_follow_the_attack_summary(suite: Path, page: tuple[Path, str]) -> None:
    parsed = _parse(page[1])
    for variant in ("base", "blur"):
        summary = read_one(suite / variant / "attack.parquet").summary
        boxes = {name: state for v, name, state in parsed.flags if v == variant}
        for name, entry in summary["flags"].items():
            assert boxes[name] == FLAG_STATES[entry["flag"]]
    assert ("blur", "unbounded_attack_fails", "not run") in parsed.flags  # minimal mode runs no such check


def test_key_numbers_of_every_report_and_the_comparison_lists_both(suite: Path) -> None:
    folder = load_folder(suite)
    assert [v.name for v in folder.variants] == ["base", "blur"]
    base = folder.variants[0]
    assert [r.name for r in base.of_kind("spectrum")] == ["spectrum.parquet"]
    key = key_numbers(base)
    assert key["f0.5 (white)"] == f"{base.of_kind('spectrum')[0].summary['f_half_of_mean']:.3g}"
    assert key["f_rev (cycles/pixel)"] != "–" or base.first("hybrid").summary["f_rev"] is None  # type: ignore[union-attr]
    assert "median l2 white" in key_numbers(folder.variants[1])  # the model under audit carries no judge suffix


def test_examples_show_clean_plus_delta_and_corruptions(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import robaudit.corruption

    monkeypatch.setattr(robaudit.corruption, "corrupt", lambda images, name, severity, seed=0: 1 - images)
    base = load_folder(suite).variants[0]
    fig, notes = example_images(base, DIGITS)
    assert fig is not None and notes == []
    axes = fig.axes
    columns = 3 + 4  # clean, adversarial, perturbation, four of the five corruptions measured
    assert len(axes) == 4 * columns
    titles = [" ".join(ax.get_title().split()) for ax in axes[:columns]]
    assert titles[3:] == [f"{n} (s=3)" for n in ("gaussian_noise", "defocus_blur", "fog", "contrast")], titles
    clean, adversarial = axes[0].images[0].get_array(), axes[1].images[0].get_array()
    rows = base.first("attack").rows  # type: ignore[union-attr]
    first = rows[rows["check_name"].isna() & (rows["eps"] == 0.1)].sort_values(
        ["success", "index"], ascending=[False, True]
    )
    delta = np.asarray(first["perturbation"].iloc[0], dtype=np.float32).reshape(first["perturbation_shape"].iloc[0])
    assert np.allclose(adversarial, np.clip(clean + delta.transpose(1, 2, 0), 0, 1), atol=1e-6)
    assert np.allclose(axes[3].images[0].get_array(), 1 - clean)
    assert "adversarial (white, ε=0.1)" in " ".join(axes[1].get_title().split())


def test_examples_note_what_cannot_be_shown(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import robaudit.corruption

    def unavailable(images: Any, name: str, severity: int, seed: int = 0) -> Any:
        raise InputError(f"unknown corruption {name!r}")

    monkeypatch.setattr(robaudit.corruption, "corrupt", unavailable)
    fig, notes = example_images(load_folder(suite).variants[0], DIGITS)
    assert fig is not None and len(fig.axes) == 4 * 3  # clean, adversarial, perturbation; no corruption
    assert len(notes) == 1 and notes[0].startswith("corrupted examples not shown: gaussian_noise: unknown")
    assert "contrast: unknown corruption 'contrast'" in notes[0]
    # a variant that measured no corruption shows none (minimal mode kept no perturbation: clean images only)
    fig, notes = example_images(load_folder(suite).variants[1], DIGITS)
    assert fig is not None and len(fig.axes) == 4 and not any("corrupted" in n for n in notes)
    # other data than the audits': no example, and a note why
    fig, notes = example_images(load_folder(suite).variants[1], DataSpec("digits", split="train"))
    assert fig is None and "not the data these reports were computed on" in notes[0]


def test_a_report_never_points_the_page_at_files(suite: Path, tmp_path: Path) -> None:
    """A crafted report naming a private folder as its data (and no fingerprint) makes the page read nothing
    from it: example images come only from --data, matched by fingerprint."""
    from PIL import Image

    private = tmp_path / "private" / "secret"
    private.mkdir(parents=True)
    marker = np.zeros((32, 32, 3), dtype=np.uint8)
    marker[:, :, 0] = 255
    Image.fromarray(marker).save(private / "marker.png")
    before = (private / "marker.png").stat().st_atime_ns

    def pointing(meta: dict[str, Any]) -> None:
        meta["run_spec"]["data"]["source"] = f"imagefolder:{private.parent}"
        meta["identity"].pop("data_fingerprint")

    _rewrite_metadata(suite / "blur" / "eval.parquet", tmp_path / "crafted" / "eval.parquet", pointing)
    for data in (None, DIGITS):
        text = write_html(tmp_path / "crafted", data=data).read_text(encoding="utf-8")
        assert "<img" not in text and "example images not shown" in text
    assert (private / "marker.png").stat().st_atime_ns == before


def test_bad_folders_are_input_errors(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty").mkdir()
    result = cli("report", "html", tmp_path / "empty")
    assert result.code == 2 and "holds no robaudit reports" in result.err
    (tmp_path / "foreign").mkdir()
    pq.write_table(pa.table({"x": [1]}), tmp_path / "foreign" / "x.parquet")
    result = cli("report", "md", tmp_path / "foreign")
    assert result.code == 2 and "x.parquet" in result.err and "not a robaudit report" in result.err
    result = cli("report", "html", tmp_path / "missing")
    assert result.code == 2 and "does not exist" in result.err


def test_unfinished_runs_are_ignored_and_foreign_files_listed(suite: Path, tmp_path: Path) -> None:
    shutil.copy(suite / "blur" / "eval.parquet", tmp_path / "eval.parquet")
    (tmp_path / "attack.parquet.partial").mkdir()
    shutil.copy(suite / "blur" / "attack.parquet", tmp_path / "attack.parquet.partial" / "chunk-000000.parquet")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "notes.parquet")
    folder = load_folder(tmp_path)
    assert [r.name for v in folder.variants for r in v.reports] == ["eval.parquet"]
    assert len(folder.problems) == 1 and folder.problems[0].startswith("notes.parquet: ")
    parsed = _parse(write_html(tmp_path).read_text(encoding="utf-8"))
    assert (None, "problems") in parsed.sections and (None, "attack") not in parsed.sections


def test_text_is_escaped(suite: Path, tmp_path: Path) -> None:
    odd = tmp_path / "<script>&x"
    odd.mkdir()
    shutil.copy(suite / "blur" / "eval.parquet", odd / "eval.parquet")
    text = write_html(tmp_path).read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;&amp;x" in text


def test_markdown_summary_and_cli(cli, suite: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = write_markdown(suite)
    assert text.startswith("# robaudit report:")
    for part in ("## Comparison", "## Variant: base", "## Variant: blur", "### Gradient-masking checks", "f0.5"):
        assert part in text
    hybrid = read_one(suite / "base" / "hybrid.parquet").summary
    f_rev = hybrid["f_rev"] * 0.5 if hybrid["f_rev"] is not None else None
    assert f"| f\\_rev (cycles/pixel) | {num(f_rev)} |" in text
    assert "⚪ not run `unbounded_attack_fails`" in text
    result = cli("report", "md", suite, "-o", tmp_path / "summary.md")
    assert result.code == 0 and (tmp_path / "summary.md").read_text(encoding="utf-8") == text
    result = cli("report", "md", suite / "base")
    assert result.code == 0 and result.out.startswith("# robaudit report: base")


def test_report_html_cli(cli, suite: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("report", "html", suite / "blur", "-o", tmp_path / "out" / "blur.html")
    assert result.code == 0 and str(tmp_path / "out" / "blur.html") in result.out
    assert "Variant:" not in (tmp_path / "out" / "blur.html").read_text(encoding="utf-8")  # one variant: no suite
    assert (tmp_path / "out" / "figures" / "attack-minimal.png").is_file()  # beside the page, never in the folder
    assert not (suite / "blur" / "figures").exists()


CORRUPTIONS = [
    ("gaussian_noise", "noise", "high", 0.7, 80.0),
    ("defocus_blur", "blur", "mid", 0.3, 40.0),
    ("fog", "weather", "low", 0.5, 60.0),
]
CORRUPTIONS_SUMMARY: dict[str, Any] = {
    "samples": 20,
    "skipped": 0,
    "param_set": "cifar",
    "clean_accuracy": 0.9,
    "corruption_accuracy": 0.6,
    "mean_error": 0.4,
    "mCE": 72.34,
    "mCE_stderr": 1.21,
    "relative_mCE": 80.0,
    "reference": "AlexNet (ImageNet-C)",
    "per_corruption": [
        {"corruption": c, "group": g, "band": b, "error": e, "accuracy": 1 - e, "CE": ce, "relative_CE": None}
        for c, g, b, e, ce in CORRUPTIONS
    ],
    "per_cell": [
        {"corruption": c, "severity": s, "accuracy": 1 - e * s / 3, "error": e * s / 3, "samples": 20}
        for c, _, _, e, _ in CORRUPTIONS
        for s in (1, 2, 3)
    ],
    "per_band": [{"band": "high", "accuracy": 0.3, "error": 0.7, "samples": 60}],
    "noise_curve": [{"sigma": 0.0, "accuracy": 0.9, "samples": 20}, {"sigma": 0.1, "accuracy": 0.5, "samples": 20}],
}


def test_corruptions_summary_gives_tables_figures_and_key_numbers() -> None:
    meta = {"audit": "corruptions"}
    report = Report("corruptions", [Path("corruptions.parquet")], pd.DataFrame(), meta, CORRUPTIONS_SUMMARY)
    report.name = "corruptions.parquet"
    variant = Variant("v", Path("."), [report])
    summary_table = report_tables(report)[0]
    assert ["mCE (reference = 100)", "72.3 ± 1.2"] in summary_table.rows
    figures = CorruptionsAudit.figures(report)
    assert [f.name for f in figures] == ["corruptions", "corruptions-heatmap", "corruptions-noise"]
    assert "mCE = 72.3" in figures[0].figure.axes[0].get_title()
    assert figures[1].figure.axes[0].get_title() == "mCE = 72.3 ± 1.2"
    assert key_numbers(variant)["mCE"] == "72.34" and key_numbers(variant)["clean top-1"] == "90.0 %"


def test_an_unknown_summary_is_shown_as_generic_tables() -> None:
    summary = {
        "images": 8,
        "units": "cycles/pixel",
        "by_band": {"low": 0.1, "high": 0.4},
        "corruptions": [{"corruption": "fog", "severity": 3, "f_half_of_mean": 0.12, "curve": [0.1, 0.2]}],
        "nested": {"a": {"b": 1}},
    }
    report = Report("derived-table", [Path("x.parquet")], pd.DataFrame(), {}, summary, "x.parquet")
    tables = report_tables(report)
    assert [t.caption for t in tables] == ["Summary", "by_band", "corruptions"]
    assert tables[0].rows == [["images", "8"], ["units", "cycles/pixel"]]
    assert tables[2].header == ["corruption", "severity", "f_half_of_mean"]
    assert tables[2].rows == [["fog", "3", "0.12"]]


def test_svg_ids_are_prefixed_per_figure() -> None:
    curves = [
        {"threat": "white", "judged_by": "backbone", "eps_mode": "linf", "eps": e, "accuracy": a, "ci95": [a / 2, 0.9]}
        for e, a in [(0.01, 0.8), (0.03, 0.2)]
    ]
    summary = {"curves": curves}
    fig = curves_figure(summary, num_classes=10, clean={})
    (ax,) = fig.axes
    assert any(list(line.get_ydata()) == [0.1, 0.1] for line in ax.get_lines())  # the chance line
    assert len(ax.collections) == 1  # one Wilson band
    one, two = plots.to_svg(fig, "one"), plots.to_svg(fig, "two")
    assert one.startswith("<svg") and "<?xml" not in one
    import re

    ids_one, ids_two = set(re.findall(r'\sid="([^"]+)"', one)), set(re.findall(r'\sid="([^"]+)"', two))
    assert ids_one and not ids_one & ids_two
    assert set(re.findall(r'href="#([^"]+)"', one)) <= ids_one
    assert set(re.findall(r"url\(#([^)]+)\)", one)) <= ids_one


# -- the page in a real browser --------------------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHECK_PAGE = """(() => {
  const images = [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}));
  const svgs = [...document.querySelectorAll('svg')].map(s => {
    const r = s.getBoundingClientRect(); return {w: r.width, h: r.height}; });
  return {images, svgs, sections: document.querySelectorAll('section').length, title: document.title};
})()"""


class DevTools:
    """A headless Chromium driven over the DevTools protocol (one WebSocket, flattened target sessions)."""

    def __init__(self, binary: str, profile: Path) -> None:
        import websocket

        args = [binary, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={profile}", "--no-first-run",
                "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage", "about:blank"]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise AssertionError(f"{binary} did not open a DevTools port")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.socket = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=60, suppress_origin=True)
        self.counter = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self.counter += 1
        message: dict[str, Any] = {"id": self.counter, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == self.counter:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == method for event in self.events):
            assert time.monotonic() < deadline, f"no {method} within {timeout} s"
            self.events.append(json.loads(self.socket.recv()))

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(str(params.get("exceptionDetails")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(str(params["entry"].get("text")))
        return found

    def close(self) -> None:
        try:
            if hasattr(self, "socket"):
                self.send("Browser.close")
                self.socket.close()
            self.process.wait(timeout=20)
        except Exception:
            self.process.kill()
            self.process.wait(timeout=20)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if binary is None:
        pytest.skip(f"no Chromium or Chrome binary on PATH (looked for {', '.join(BROWSERS)})")
    pytest.importorskip("websocket", reason="the websocket-client package drives the browser")
    tools = DevTools(binary, tmp_path / "profile")
    yield tools
    tools.close()


def test_the_page_renders_in_chromium_without_errors(browser: DevTools, page: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = page
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                        "mobile": False}, session)  # fmt: skip
    browser.send("Page.navigate", {"url": path.resolve().as_uri()}, session)
    browser.wait_for("Page.loadEventFired")
    state = browser.send("Runtime.evaluate", {"expression": CHECK_PAGE, "returnByValue": True}, session)["result"]
    value = state["value"]
    assert value["title"].startswith("robaudit report")
    assert value["images"] and all(image["ok"] for image in value["images"])
    assert value["svgs"] and all(svg["w"] > 0 and svg["h"] > 0 for svg in value["svgs"])
    size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 30000), "scale": 1}
    shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip},
                        session)  # fmt: skip
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot: {screenshot}")
    assert screenshot.stat().st_size > 10_000
    assert browser.errors() == []


def test_the_verdict_opens_the_page_with_numbers_flags_and_gaps(suite: Path, page: tuple[Path, str]) -> None:
    from robaudit.presentation.digest import verdict

    folder = load_folder(suite)
    sentences = verdict(folder.variants)
    assert sentences[0].startswith("base: ") and sentences[1].startswith("blur: ")
    assert all("clean top-1 " in s for s in sentences[:2])
    assert all(("Gradient masking" in s) or ("gradient-masking" in s) for s in sentences[:2])
    assert sentences[-1].startswith("Not covered here: ") and "rsa" in sentences[-1] and "attack," not in sentences[-1]
    text = page[1]
    assert text.index('data-section="verdict"') < text.index("<nav>")


@pytest.mark.parametrize(
    ("label", "shown"),
    [
        ("cache(path=/tmp/run-1/caches/r20, theta=50)", "cache(path=r20, theta=50)"),
        ("cache(path='/home/me/c', lam=0.5)", "cache(path='c', lam=0.5)"),
        ("pca(path=~/pca/k64) -> blur(sigma=1)", "pca(path=k64) -> blur(sigma=1)"),
        ("pca(path=C:\\caches\\pca64)", "pca(path=pca64)"),
        ("backbone", "backbone"),
        ("white-box, judged by defended (l2/linf)", "white-box, judged by defended (l2/linf)"),
    ],
)
def test_legends_name_files_without_their_folders(label: str, shown: str) -> None:
    from robaudit.reports.plots import legend_label

    assert legend_label(label) == shown


def test_the_verdict_says_first_when_weights_are_random(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from robaudit.presentation.digest import verdict

    model = ["--model", "tv:mobilenet_v3_small", "--num-classes", 10]  # no --pretrained: random weights
    ran = cli("eval", *model, "--data", "digits", "--limit", 8, "-o", tmp_path)
    assert ran.code == 0, ran.err
    (sentence, *_) = verdict(load_folder(tmp_path).variants)
    assert sentence.startswith("random weights (an untrained network")
