"""Run records without checkpoints (benchmarks/records.py): what is copied, what is refused."""
from benchmarks import records
from benchmarks.store import RunStore, write_json


def fake_run(store: RunStore, run_id: str, nll: float, finished: bool = True) -> None:
    folder = store.final(run_id) if finished else store.partial(run_id)
    folder.mkdir(parents=True)
    write_json(folder / "config.json", {"model": "vae", "seed": 0})
    if finished:
        write_json(folder / "metrics.json", {"nll": nll})
    (folder / "history.csv").write_text("epoch,valid_loss\n1,3.0\n")
    (folder / "best.pt" if finished else folder / "last.pt").write_bytes(b"\0" * 1000)


def test_export_copies_results_and_histories_but_no_checkpoint(tmp_path, capsys):
    store = RunStore(tmp_path / "a")
    fake_run(store, "run-1", 100.0)
    fake_run(store, "run-2", 101.0, finished=False)
    assert records.main(["export", "--results", str(tmp_path / "a"), "--to", str(tmp_path / "b")]) == 0
    copied = tmp_path / "b" / "runs" / "run-1"
    assert sorted(p.name for p in copied.iterdir()) == ["config.json", "history.csv", "metrics.json"]
    assert not (tmp_path / "b" / "runs" / "run-2").exists()  # unfinished: nothing to record yet
    assert RunStore(tmp_path / "b").status("run-1") == "done"
    write_json(store.final("run-1") / "generation_ppl.json", {"ppl": 50.0})  # the record grew since
    assert records.main(["export", "--results", str(tmp_path / "a"), "--to", str(tmp_path / "b")]) == 0
    assert "1 already there" in capsys.readouterr().out and (copied / "generation_ppl.json").exists()


def test_the_same_run_with_other_metrics_is_refused_in_one_line(tmp_path, capsys):
    fake_run(RunStore(tmp_path / "a"), "run-1", 100.0)
    fake_run(RunStore(tmp_path / "b"), "run-1", 99.0)
    assert records.main(["export", "--results", str(tmp_path / "a"), "--to", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run-1 differs between" in err


def test_a_run_finished_in_one_store_and_failed_in_the_other_is_refused(tmp_path, capsys):
    fake_run(RunStore(tmp_path / "a"), "run-1", 100.0)
    failed = RunStore(tmp_path / "b").final("run-1")
    failed.mkdir(parents=True)
    write_json(failed / "config.json", {"model": "vae", "seed": 0})
    write_json(failed / "failed.json", {"reason": "loss became nan", "epoch": 2})
    assert records.main(["export", "--results", str(tmp_path / "a"), "--to", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "a") in err and str(tmp_path / "b") in err
    assert not (failed / "metrics.json").exists()  # no record holding both outcomes
