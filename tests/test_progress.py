"""The progress bar's time left (benchmarks/progress.py): each method scaled by its own finished runs,
a run in flight by its own pace. Fake histories, fake clocks: nothing trains, nothing is timed."""
import pytest

from benchmarks.progress import Progress, shrunk
from benchmarks.store import RunStore

from .helpers import history, lock


def test_a_shrunk_ratio_is_half_way_after_one_run_and_the_pooled_one_without():
    assert shrunk(300.0, 100.0, 1, 2.0) == 2.5  # own 3, pooled 2: half way
    assert shrunk(900.0, 300.0, 3, 2.0) == pytest.approx((900 + 200) / 400)  # 3 runs: 3/4 of the way
    assert shrunk(0.0, 0.0, 0, 2.0) == 2.0
    assert shrunk(400.0, 200.0, 2, 2.0) == 2.0  # one kind only: the pooled ratio itself


def test_each_kind_is_scaled_by_its_own_finished_runs(tmp_path):
    store = RunStore(tmp_path / "r")
    now = [0.0]
    runs = ["x1", "x2", "y1", "y2", "z1"]
    kinds = {"x1": "scale_vae", "x2": "scale_vae", "y1": "vae", "y2": "vae", "z1": "lstm_lm"}
    progress = Progress(runs, dict.fromkeys(runs, 100.0), 1, epochs=dict.fromkeys(runs, 10), store=store,
                        clock=lambda: now[0], wall=lambda: 0.0, kinds=kinds)
    assert progress.left() == 500.0  # nothing finished: the estimates

    history(store.final("x1") / "history.csv", 10, at=0.0)  # x1 ran its 10 epochs in 300 s: x3
    history(store.final("y1") / "history.csv", 4, at=0.0)  # y1 stopped after 4 epochs, in 100 s: x1
    progress.finished("x1", 300.0)
    progress.finished("y1", 100.0)
    now[0] = 400.0  # one worker, busy all along with x1 then y1: nothing unaccounted in flight

    assert progress.ratio() == 2.0  # pooled: 400 s against 200 estimated
    assert progress.ratio("scale_vae") == (300 + 2 * 100) / (100 + 100)  # 2.5: its own 3, shrunk toward 2
    assert progress.ratio("vae") == (100 + 2 * 100) / (100 + 100)  # 1.5: its own 1, shrunk toward 2
    assert progress.ratio("lstm_lm") == 2.0  # no finished run: the pooled ratio
    assert progress.left() == pytest.approx(250 + 150 + 200)  # x2, y2, z1 on the one worker

    assert progress.epoch_ratio() == 14 / 20
    assert progress.epoch_ratio("scale_vae") == pytest.approx((10 + 0.7 * 10) / 20)  # 0.85
    assert progress.epoch_ratio("vae") == pytest.approx((4 + 0.7 * 10) / 20)  # 0.55
    assert progress.epoch_ratio("lstm_lm") == 0.7
    assert progress.expected_epochs("y2") == pytest.approx(5.5)

    pooled = Progress(runs, dict.fromkeys(runs, 100.0), 1, clock=lambda: now[0])  # no kinds: one ratio, as before
    pooled.finished("x1", 300.0)
    pooled.finished("y1", 100.0)
    assert pooled.ratio("") == pooled.ratio() == 2.0 and pooled.left() == pytest.approx(3 * 200)


def test_a_run_in_flight_goes_at_its_own_pace(tmp_path):
    store = RunStore(tmp_path / "r")
    wall = [1000.0]
    progress = Progress(["a", "b"], {"a": 100.0, "b": 100.0}, 2, epochs={"a": 10, "b": 10}, store=store,
                        clock=lambda: 0.0, wall=lambda: wall[0])
    lock(store, "a", at=1000.0)
    history(store.partial("a") / "history.csv", 4, at=1080.0)  # 4 epochs in 80 s: 20 s each, not 10
    wall[0] = 1090.0
    progress.poll()
    assert progress.fraction("a") == pytest.approx(0.4)
    # 6 epochs left at 20 s, less the 10 s of the epoch under way; the estimate's share would say 60 - 10
    assert progress.to_go("a", 1090.0) == pytest.approx(6 * 20 - 10)
    assert progress.left() == pytest.approx(110.0)  # b beside it on the other worker: 100 s

    history(store.partial("a") / "history.csv", 12, at=1240.0)  # past the epochs expected: nothing left to count
    wall[0] = 1250.0
    progress.poll()
    assert progress.to_go("a", 1250.0) == 0.0


def test_a_resumed_run_is_paced_by_its_epochs_since_its_lock(tmp_path):
    store = RunStore(tmp_path / "r")
    wall = [1000.0]
    progress = Progress(["a"], {"a": 100.0}, 1, epochs={"a": 30}, store=store, clock=lambda: 0.0,
                        wall=lambda: wall[0])
    history(store.partial("a") / "history.csv", 20, at=500.0)  # 20 epochs of an interrupted sweep
    lock(store, "a", at=1000.0)
    wall[0] = 1010.0
    progress.poll()  # none of its own yet: the estimate's share still to go, less the time since its lock
    assert progress.left() == pytest.approx(100 * (1 - 20 / 30) - 10)
    history(store.partial("a") / "history.csv", 22, at=1050.0)  # 2 epochs in 50 s since its lock
    wall[0] = 1050.0
    progress.poll()
    assert progress.left() == pytest.approx(8 * 25.0)


def test_a_resumed_runs_seconds_do_not_scale_the_others(tmp_path):
    """The sweep of this session: a run resumed from its 29th of 30 epochs finished in 15 s against a
    whole run's 300 s estimate, and the time left of the 60 runs behind it fell from 1 h 44 min to 2 min."""
    store = RunStore(tmp_path / "r")
    history(store.partial("a") / "history.csv", 27, at=500.0)  # an interrupted sweep's 27 of 30 epochs
    progress = Progress(["a", "b"], {"a": 300.0, "b": 300.0}, 1, epochs={"a": 30, "b": 30}, store=store,
                        clock=lambda: 0.0, wall=lambda: 1000.0)
    assert progress.resumed == {"a": 27}
    assert progress.left() == pytest.approx(300 * 0.1 + 300)  # a's 3 epochs left, then b
    history(store.final("a") / "history.csv", 30, at=1015.0)
    progress.finished("a", 15.0)
    assert progress.ratio() == 1.0 and progress.left() == pytest.approx(300.0)  # not 300 * 15 / 300
    assert progress.epoch_ratio() == 1.0  # its epochs, a whole run's, do count
