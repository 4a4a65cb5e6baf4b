"""Drum VAE data: the 16th grid round trip on real GMD files, the class map, windows and the cache."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from drumvae import data

GMD = data.datasets_root() / data.DATASET
needs_gmd = pytest.mark.skipif(not (GMD / "info.csv").is_file(), reason=f"{GMD} not present")


def _gmd_files(n: int) -> list[str]:
    with (GMD / "info.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["time_signature"] == "4-4"]
    return [r["midi_filename"] for r in rows[:: max(len(rows) // n, 1)][:n]]


def _round_trip_errors(ticks, pitches, vels, tpb, grid):
    """For every kept note: |tick error|, |velocity error|; and the number of notes not kept."""
    notes = data.from_grid(grid.hits, grid.velocities, grid.offsets, tpb)
    cls = data.pitch_to_class()
    # match each decoded note to an original of the same class with the same velocity within one tick
    orig = {}
    for t, p, v in zip(ticks.tolist(), pitches.tolist(), vels.tolist()):
        orig.setdefault((cls[p], v), []).append(t)
    worst = 0.0
    for t, c, v in notes:
        best = min(abs(t - o) for o in orig[(c, v)])
        worst = max(worst, best)
    return worst, len(ticks) - len(notes)


def test_hand_made_grid_offsets_are_early_positive_and_loudest_wins():
    tpb = 480  # a 16th is 120 ticks
    ticks = np.array([0, 115, 125, 240, 241, 600])
    pitches = np.array([36, 38, 40, 42, 44, 46])
    vels = np.array([100, 50, 90, 30, 60, 127])
    g = data.to_grid(ticks, pitches, vels, tpb, 8)
    assert g.hits[0, 0] and g.hits[1, 1] and g.hits[2, 2] and g.hits[5, 3]
    assert g.dropped == 2  # snare 38 loses to 40 (step 1), hat 42 loses to 44 (step 2)
    assert g.velocities[1, 1] == pytest.approx(90 / 127)
    assert g.offsets[1, 1] == pytest.approx((120 - 125) / 60)  # late: negative
    assert g.velocities[2, 2] == pytest.approx(60 / 127)
    assert g.offsets[2, 2] == pytest.approx(-1 / 60)
    notes = data.from_grid(g.hits, g.velocities, g.offsets, tpb)
    assert [(round(t), c, v) for t, c, v in notes] == [(0, 0, 100), (125, 1, 90), (241, 2, 60), (600, 3, 127)]


def test_notes_past_the_end_are_counted():
    g = data.to_grid(np.array([0, 10_000]), np.array([36, 36]), np.array([80, 80]), 480, 32)
    assert g.hits.sum() == 1 and g.beyond == 1


@needs_gmd
def test_mapping_covers_every_pitch_in_the_dataset():
    table = data.pitch_to_class()
    seen = set()
    for name in _gmd_files(1200):
        _, pitches, _, _, _, _ = data.read_notes(GMD / name)
        seen |= set(pitches.tolist())
    assert seen and seen <= set(table), sorted(seen - set(table))
    assert len(data.GM_OUTPUT_PITCHES) == data.NUM_CLASSES


@needs_gmd
def test_grid_round_trip_on_real_files_within_one_tick():
    for name in _gmd_files(6):
        ticks, pitches, vels, tpb, end, _ = data.read_notes(GMD / name)
        grid = data.to_grid(ticks, pitches, vels, tpb, (data.num_bars(end, tpb) + 2) * 16)
        worst, lost = _round_trip_errors(ticks, pitches, vels, tpb, grid)
        assert worst <= 1.0, (name, worst)
        assert lost == grid.dropped + grid.beyond
        assert np.abs(grid.offsets).max() <= 1.0


def test_synthetic_windows_and_features():
    w = data.synthetic(16)
    assert w.features().shape == (16, 32, 27)
    tr = w.subset("train")
    assert 0 < len(tr) < len(w) and set(tr.split.tolist()) == {0}


def test_write_midi(tmp_path):
    w = data.synthetic(2)
    path = tmp_path / "p.mid"
    data.write_midi(w.hits[0], w.velocities[0], w.offsets[0], path, qpm=100)
    ticks, pitches, vels, tpb, _, qpm = data.read_notes(path)
    assert len(ticks) == int(w.hits[0].sum()) and qpm == pytest.approx(100, abs=0.01)
    assert set(pitches.tolist()) <= set(data.GM_OUTPUT_PITCHES)


@needs_gmd
def test_prepare_caches_the_split(tmp_path):
    w = data.prepare(cache_dir=tmp_path)  # ~7 s from the MIDI files
    again = data.prepare(cache_dir=tmp_path)
    assert len(w) == len(again) and (w.hits == again.hits).all()
    c = w.meta["counts"]
    assert [c[s]["files"] for s in data.SPLITS] == [887, 122, 129]  # 4/4 files of 897 / 124 / 129
    assert all(c[s]["dropped_note_ons"] > 0 for s in data.SPLITS)
    assert w.hits.shape[1:] == (32, 9) and len(w.styles) <= 18
    assert list(tmp_path.glob("*.json"))
