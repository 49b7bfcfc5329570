"""The likeness benchmark runs for real on the tiny models: every page is painted with and without the photo and
judged by a CLIP image encoder, and the report comes out as a table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.likeness import ClipJudge, LikenessReport, load_engine, main, measure_likeness

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture
def one_cpu_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_measure_likeness_compares_each_page_with_the_photo(one_cpu_thread, tiny_settings) -> None:
    engine = load_engine(tiny=True, device="cpu", cache_dir=tiny_settings.cache_dir)
    photo = Image.open(ASSETS / "photo.jpg")
    judge = ClipJudge.from_engine(engine)
    assert judge.similarities(photo, [photo])[0] == pytest.approx(1.0, abs=1e-5)
    report = measure_likeness(engine, photo, ["a fox", "a boat"], judge=judge, strength=1.0, size=64, steps=3)
    assert [page.page for page in report.pages] == [1, 2]
    assert all(-1.0 <= score <= 1.0 for page in report.pages for score in (page.with_reference, page.without_reference))
    assert all(page.with_reference != page.without_reference for page in report.pages)
    silent = measure_likeness(engine, photo, ["a fox"], judge=judge, strength=0.0, size=64, steps=3)
    assert silent.pages[0].gain == pytest.approx(0.0, abs=1e-6)
    assert "mean" in report.table() and "gain" in report.table()


def test_the_command_line_writes_a_json_report(one_cpu_thread, tiny_settings, tmp_path: Path, capsys) -> None:
    encoder = tiny_settings.models_dir / "tiny" / "illustrate" / "ip-adapter" / "models" / "image_encoder"
    output = tmp_path / "likeness.json"
    assert main(["--tiny", "--cache-dir", str(tiny_settings.cache_dir), "--pages", "2", "--steps", "2",
                 "--photo", str(ASSETS / "photo.jpg"), "--encoder", str(encoder), "--json", str(output)]) == 0
    summary = json.loads(output.read_text())
    report = LikenessReport.model_validate(summary)
    assert len(report.pages) == 2 and report.judge == str(encoder)
    assert summary["mean_gain"] == pytest.approx(report.mean_gain)
    assert "without" in capsys.readouterr().out
