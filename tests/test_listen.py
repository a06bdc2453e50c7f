"""The blind listening test: the page `pwavenet listen` writes (self-contained, every item in
every trial, names hidden, seeded shuffle), the scorer (known intervals, post-screening, refusals)
and the page itself in a real headless Chromium (audio decodes, ratings round-trip)."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pwavenet import cli
from pwavenet.config import AudioConfig
from pwavenet.eval.listen import LOWPASS, REFERENCE, lowpass, write_listening_page
from pwavenet.eval.listen_score import ratings_table, score_ratings, t_interval

SR = 16000
SYSTEMS = ("sysalpha", "sysbeta")  # names no page text would hold by chance
NAMES = {REFERENCE, *SYSTEMS, "griffin-lim"}


def _tone(freq: float, amp: float, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, x: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    """An evaluation folder as `evaluate_systems` leaves it (no report: the page finds the audio
    through metrics.json's record of the inputs)."""
    from pwavenet.eval.evaluate import evaluate_systems

    root = tmp_path_factory.mktemp("listen")
    refs = []
    for i in range(2):
        refs.append(_write(root / "ref" / f"u{i}.wav", _tone(150 + 50 * i, 0.3)))
        _write(root / SYSTEMS[0] / f"u{i}.wav", _tone(150 + 50 * i, 0.2))
        _write(root / SYSTEMS[1] / f"u{i}.wav", _tone(150 + 50 * i, 0.05))
    audio = AudioConfig(sample_rate=SR, fmax=8000.0)
    evaluate_systems(refs, {n: root / n for n in SYSTEMS}, audio, root / "eval")
    return root / "eval"


def _data(page: str) -> dict:
    return json.loads(re.search(r"id=test-data>(.*?)</script>", page).group(1))


def _names(data: dict) -> list[dict[str, str]]:
    """Per trial, label -> system name: the page's hidden names undone (its script's rule)."""
    key = bytes.fromhex(data["key"])
    out = []
    for i, trial in enumerate(data["trials"]):
        labels = {}
        for j, item in enumerate(trial["items"]):
            raw = base64.b64decode(item["name"])
            offset = 31 * i + 7 * j
            name = bytes(b ^ key[(offset + k) % len(key)] for k, b in enumerate(raw)).decode()
            labels[item["label"]] = name
        out.append(labels)
    return out


def test_the_page_is_self_contained_complete_and_hides_the_names(eval_dir, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert cli.main(["listen", str(eval_dir), "--out", str(out), "--seed", "3"]) == 0
    assert "2 trials of 4 items" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    sources = re.findall(r"(?:src|href)=", page)
    embedded = re.findall(r'src="data:audio/wav;base64,', page)
    assert len(sources) == len(embedded) == 8  # nothing is loaded from elsewhere
    assert "http:" not in page and "https:" not in page
    for name in (*SYSTEMS, "griffin-lim"):
        assert name not in page
    data = _data(page)
    names = _names(data)
    assert sorted(t["utterance"] for t in data["trials"]) == ["u0", "u1"]
    for trial, labels in zip(data["trials"], names, strict=True):
        assert set(labels.values()) == NAMES  # every system (and the hidden reference) rated
        assert list(labels) == ["A", "B", "C", "D"]
        hidden = next(i["label"] for i in trial["items"] if i["clip"] == trial["reference"])
        assert labels[hidden] == REFERENCE  # the open reference plays the hidden one's clip
    clips = re.findall(r'<audio id="c\d+" preload=auto src="data:audio/wav;base64,([^"]+)"', page)
    assert len(clips) == 8
    for b64 in clips:
        x, rate = sf.read(io.BytesIO(base64.b64decode(b64)), dtype="int16")
        assert rate == SR and abs(len(x) - SR // 2) < 256  # the whole utterance (within a hop)


def test_the_seed_shuffles_the_order_but_not_the_page_id(eval_dir, tmp_path):
    pages = {}
    for seed in range(6):
        made = write_listening_page(eval_dir, tmp_path / f"{seed}.html", seed=seed)
        pages[seed] = (made["page_id"], _names(_data(made["path"].read_text())))
    again = write_listening_page(eval_dir, tmp_path / "again.html", seed=0)["path"]
    assert again.read_bytes() == (tmp_path / "0.html").read_bytes()  # deterministic
    assert len({ident for ident, _ in pages.values()}) == 1
    orders = {json.dumps(names) for _, names in pages.values()}
    assert len(orders) > 1


def test_the_report_copies_suffice_and_a_missing_file_is_one_line(eval_dir, tmp_path, capsys):
    """A folder moved away from its inputs: the report's copies under audio/ are used."""
    moved = tmp_path / "moved"
    shutil.copytree(eval_dir, moved)
    metrics = json.loads((moved / "metrics.json").read_text())
    del metrics["inputs"]
    (moved / "metrics.json").write_text(json.dumps(metrics))
    for uid in ("u0", "u1"):
        for name in SYSTEMS:
            src = eval_dir.parent / name / f"{uid}.wav"
            (moved / "audio" / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, moved / "audio" / name / f"{uid}.wav")
    assert cli.main(["listen", str(moved)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing reference audio of utterance 'u0'" in err
    assert not (moved / "listen.html").exists()
    (moved / "audio" / REFERENCE).mkdir()
    for uid in ("u0", "u1"):
        shutil.copy(eval_dir.parent / "ref" / f"{uid}.wav", moved / "audio" / REFERENCE)
    assert cli.main(["listen", str(moved)]) == 0
    assert (moved / "listen.html").is_file()


def test_the_lowpass_anchor_removes_what_is_above_3500_hz(eval_dir, tmp_path):
    x = _tone(1000, 0.3, 1.0) + _tone(5000, 0.3, 1.0)
    spectrum = np.abs(np.fft.rfft(lowpass(x, SR)))
    assert spectrum[5000] < 1e-3 * spectrum[1000]  # 1 Hz bins over one second
    assert np.allclose(lowpass(_tone(1000, 0.3, 1.0), SR), _tone(1000, 0.3, 1.0), atol=1e-5)
    made = write_listening_page(eval_dir, tmp_path / "p.html", lowpass_anchor=True)
    for labels in _names(_data(made["path"].read_text())):
        assert set(labels.values()) == {*NAMES, LOWPASS}


def test_a_folder_without_an_anchor_is_refused(eval_dir, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(eval_dir, bare)
    metrics = json.loads((bare / "metrics.json").read_text())
    for per_system in metrics["utterances"].values():
        del per_system["griffin-lim"]
    (bare / "metrics.json").write_text(json.dumps(metrics))
    assert cli.main(["listen", str(bare)]) == 1
    assert "no Griffin-Lim anchor" in capsys.readouterr().err
    assert cli.main(["listen", str(bare), "--lowpass-anchor"]) == 0


# --------------------------------------------------------------------------- scoring


def _ratings(path: Path, rater: str, values: dict[str, list[float]], page_id: str = "p1") -> Path:
    """A rating file: ``values`` maps each system to its rating per trial."""
    trials = len(next(iter(values.values())))
    data = {
        "format": "pwavenet-listening-ratings/1",
        "page_id": page_id,
        "seed": 0,
        "rater": rater,
        "created": "2025-01-01T00:00:00Z",
        "trials": [
            {"utterance": f"u{t}", "ratings": {n: v[t] for n, v in values.items()}}
            for t in range(trials)
        ],
    }
    path.write_text(json.dumps(data))
    return path


def test_t_interval_known_answers():
    assert t_interval([40.0] * 5) == (40.0, 0.0)  # constant ratings: the interval is a point
    mean, half = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert math.isnan(t_interval([5.0])[1]) and math.isnan(t_interval([])[0])


def test_post_screening_excludes_the_rater_who_misses_the_reference(tmp_path, capsys):
    good = {REFERENCE: [100, 95, 100, 100], "a": [60, 60, 60, 60], "b": [20, 20, 20, 20]}
    files = [_ratings(tmp_path / f"{r}.json", r, good) for r in ("ann", "bob")]
    bad = {REFERENCE: [100, 50, 100, 100], "a": [0, 0, 0, 0], "b": [90, 90, 90, 90]}
    files.append(_ratings(tmp_path / "cy.json", "cy", bad))  # 1 of 4 trials below 90: 25 %
    result = score_ratings(files)
    assert result["kept"] == ["ann", "bob"] and list(result["excluded"]) == ["cy"]
    assert list(result["systems"]) == [REFERENCE, "a", "b"]
    a = result["systems"]["a"]
    assert a["n"] == 8 and a["mean"] == a["ci_low"] == a["ci_high"] == 60.0
    assert cli.main(["listen-score", str(tmp_path), "--out", str(tmp_path / "t.md")]) == 0
    table = capsys.readouterr().out
    assert "| a | 8 | 60.0 | 60.0 | 60.0 |" in table and "- cy: rated the hidden" in table
    assert (tmp_path / "t.md").read_text() == table
    assert cli.main(["listen-score", *map(str, files), "--no-post-screening"]) == 0
    assert "| a | 12 | 40.0 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "write, pattern",
    [
        (lambda p: p.write_text("{not json"), "not a readable JSON file"),
        (lambda p: p.write_text('{"format": "x"}'), "not a pwavenet rating file"),
        (lambda p: _ratings(p, "", {REFERENCE: [100]}), "missing field 'rater'"),
        (lambda p: _ratings(p, "z", {REFERENCE: [100], "a": [101]}), "'a' is 101, outside 0-100"),
        (lambda p: _ratings(p, "z", {REFERENCE: [100], "a": ["x"]}), "'a' is 'x', not a number"),
        (lambda p: _ratings(p, "z", {"a": [10]}), "no rating of the hidden reference"),
        (lambda p: _ratings(p, "z", {REFERENCE: [100]}, page_id="p2"), "page id p2, but"),
        (lambda p: _ratings(p, "ann", {REFERENCE: [100]}), "rater 'ann' again"),
        (lambda p: _ratings(p, "z", {REFERENCE: [100, 90]}), "other utterances or systems"),
    ],
)
def test_malformed_rating_files_are_refused_in_one_line(tmp_path, capsys, write, pattern):
    first = _ratings(tmp_path / "a.json", "ann", {REFERENCE: [100]})
    bad = tmp_path / "b.json"
    write(bad)
    out = tmp_path / "t.md"
    assert cli.main(["listen-score", str(first), str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and pattern in err, err
    assert not out.exists()


# --------------------------------------------------------------------------- in a browser

# Debian's Chromium with the flags that keep it from reaching for a network it does not have;
# Playwright gives every launch a fresh temporary profile (its own --user-data-dir).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
]

_DURATIONS = """() => Promise.all(Array.from(document.querySelectorAll("audio"), (a) =>
  a.readyState >= 1 ? a.duration : new Promise((done) => {
    a.addEventListener("loadedmetadata", () => done(a.duration));
    a.addEventListener("error", () => done(-1));
  })))"""
_PLAYING = """() => Array.from(document.querySelectorAll("audio")).filter((a) => !a.paused)
  .map((a) => a.id)"""
_SET = """(el, v) => { el.value = v; el.dispatchEvent(new Event("input", {bubbles: true})); }"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's package with apt-get)")
    pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is missing")
    return path


def _rate(page, labels: list[dict[str, str]], score: dict[str, int]) -> None:
    """Rate every trial through the page: the first slider by keyboard, the others by value;
    move on with the Next button."""
    for number, trial in enumerate(labels):
        section = page.locator(f'section.trial[data-trial="{number}"]')
        assert section.is_visible()
        sliders = section.locator("input[type=range]")
        for j, name in enumerate(trial.values()):
            if j == 0:  # a real key press counts as a rating too
                sliders.nth(0).focus()
                page.keyboard.press("End")
                assert section.locator("output").nth(0).inner_text() == "100"
            sliders.nth(j).evaluate(_SET, score[name] + number)
        if number < len(labels) - 1:
            page.click("#next")


def test_the_page_in_headless_chromium_plays_and_round_trips_the_ratings(eval_dir, tmp_path):
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    made = write_listening_page(eval_dir, tmp_path / "listen.html", lowpass_anchor=True)
    labels = _names(_data(made["path"].read_text()))
    score = {REFERENCE: 90, "sysalpha": 60, "sysbeta": 30, "griffin-lim": 10, LOWPASS: 20}
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(accept_downloads=True)
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(made["path"].as_uri())
            durations = page.evaluate(_DURATIONS)
            assert len(durations) == 10
            assert all(d == pytest.approx(0.5, abs=0.02) for d in durations)  # GL: 31 hops
            buttons = page.locator("section.trial:not([hidden]) button.play")
            buttons.nth(1).click()
            page.wait_for_function(f"() => ({_PLAYING})().length > 0")
            first = page.evaluate(_PLAYING)
            buttons.nth(2).click()  # plays that one and stops the first
            page.wait_for_function(f"() => !({_PLAYING})().includes({first[0]!r})")
            second = page.evaluate(_PLAYING)
            assert len(first) == len(second) == 1 and second != first
            page.click("#save")
            assert "Enter your name" in page.inner_text("#status")
            page.fill("#rater", "ann")
            page.click("#save")  # nothing rated yet: no download
            assert "Rate every item first: trial 1 (A, B, C, D, E)" in page.inner_text("#status")
            _rate(page, labels, score)
            with page.expect_download() as download:
                page.click("#save")
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
        finally:
            browser.close()
    assert errors == []
    assert saved.name == f"ratings-ann-{made['page_id']}.json"
    data = json.loads(saved.read_text())
    for number, trial in enumerate(data["trials"]):
        assert trial["ratings"] == {name: score[name] + number for name in labels[number].values()}
    result = score_ratings([saved], post_screening=False)
    assert result["page_id"] == made["page_id"] and result["kept"] == ["ann"]
    assert result["systems"]["sysalpha"]["mean"] == 60.5  # trials rated 60 and 61
    assert "| sysalpha | 2 | 60.5 |" in ratings_table(result)
