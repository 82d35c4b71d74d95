"""Fault battery, the file system: no file outside the run is touched, and every OS error is one line, exit 2.

A lock or run file that is a link (symbolic or hard), a folder or a stranger's file is never followed,
truncated or removed; the file it points at keeps its bytes. Each OS error a user can cause (a path
that is a file, a folder, missing, too long; a full disk; a read-only folder; a damaged archive) is
one line with exit 2, and what was saved before is as it was. One finished run serves every case.
"""

import errno
import os

import numpy as np
import pytest

import jaxbp
from jaxbp.boundary import files
from jaxbp.cli import main
from jaxbp.training import lock

TINY = ["data.name=moons", "data.n=64", "model.hidden=[4]", "train.batch_size=16", "train.plots=false"]
SECRET = b"root:x:0:0:the victim's bytes\n"


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    run = tmp_path_factory.mktemp("done") / "run"
    jaxbp.train(None, run, overrides=TINY + ["train.epochs=2"], progress=False)
    return run


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxbp: error: ") and "internal error" not in err, err
    return err


def resume(run, capsys, epochs=3):
    code = main(["train", "--resume", str(run), "--quiet", "--set", f"train.epochs={epochs}"])
    return code, capsys.readouterr()


@pytest.mark.parametrize("kind", ["symlink", "dangling", "hardlink", "folder", "foreign"])
def test_a_lock_that_is_not_jaxbps_is_refused_and_never_touched(done, tmp_path, capsys, kind, copy_of):
    run, victim = copy_of(done), tmp_path / "victim"
    victim.write_bytes(SECRET)
    path = run / lock.LOCK
    if kind == "symlink":
        path.symlink_to(victim)
    elif kind == "dangling":
        path.symlink_to(tmp_path / "would-be-created")
    elif kind == "hardlink":
        os.link(victim, path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(SECRET)  # a user's file that happens to have the name
    assert main(["train", "--resume", str(run), "--quiet", "--set", "train.epochs=3"]) == 2
    err = one_line(capsys)
    assert "not a jaxbp lock" in err and str(path) in err
    assert victim.read_bytes() == SECRET and not (tmp_path / "would-be-created").exists()
    assert os.path.lexists(path) and jaxbp.load_run(run).record  # left as it was; the run is intact


def test_the_naive_lock_would_have_overwritten_the_victim(done, tmp_path, monkeypatch, copy_of):
    """Planted: the old open (O_CREAT, following links) writes through a linked lock; the test above catches it."""
    run, victim = copy_of(done), tmp_path / "victim"
    victim.write_bytes(SECRET)
    (run / lock.LOCK).symlink_to(victim)
    monkeypatch.setattr(lock, "_open_lock", lambda path: os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    lock.acquire(str(run)).release()
    assert victim.read_bytes() != SECRET  # truncated and overwritten with the lock's text


@pytest.mark.parametrize("name", ["config.toml", "model.json", "summary.json", "params.npz", "checkpoint.npz",
                                  "metrics.jsonl", "train.log", "loss.png"])
def test_run_files_that_are_links_never_write_through(done, tmp_path, capsys, name, copy_of):
    run, victim = copy_of(done), tmp_path / "victim"
    victim.write_bytes(SECRET)
    os.remove(run / name) if (run / name).exists() else None
    (run / name).symlink_to(victim)
    code, streams = resume(run, capsys)
    assert victim.read_bytes() == SECRET
    assert code in (0, 2) and "internal error" not in streams.err  # replaced as a link, or refused in one line
    assert not [entry for entry in os.listdir(run) if files.MARK in entry]


def test_write_atomic_replaces_a_link_and_leaves_its_target(tmp_path):
    victim, link = tmp_path / "victim", tmp_path / "out.csv"
    victim.write_bytes(SECRET)
    link.symlink_to(victim)
    files.write_atomic(link, b"new")
    assert victim.read_bytes() == SECRET and not link.is_symlink() and link.read_bytes() == b"new"
    with pytest.raises(IsADirectoryError):
        files.write_atomic(tmp_path, b"x")
    (tmp_path / "log").symlink_to(victim)
    with pytest.raises(OSError):  # ELOOP: never appended through
        files.open_append(tmp_path / "log")
    assert victim.read_bytes() == SECRET


def test_os_errors_of_train_are_one_line_exit_2(tmp_path, capsys):
    existing = tmp_path / "a-file"
    existing.write_bytes(SECRET)
    for out in (existing, tmp_path / ("x" * 300), tmp_path / "a-file" / "run"):
        assert main(["train", "--out", str(out), "--quiet", *[a for s in TINY for a in ("--set", s)]]) == 2
        assert str(tmp_path) in one_line(capsys)
    assert existing.read_bytes() == SECRET


def test_os_errors_of_predict_are_one_line_exit_2(done, tmp_path, capsys, monkeypatch):
    data = tmp_path / "x.npz"
    np.savez(data, x=np.zeros((3, 2)))
    for out in (tmp_path, tmp_path / "missing" / "p.csv", tmp_path / ("p" * 300 + ".csv")):
        assert main(["predict", str(done), "--input", str(data), "--out", str(out)]) == 2
        one_line(capsys)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "p.csv").write_bytes(SECRET)
    monkeypatch.setattr(os, "fsync", full)
    assert main(["predict", str(done), "--input", str(data), "--out", str(tmp_path / "p.csv")]) == 2
    assert "No space left" in one_line(capsys)
    assert (tmp_path / "p.csv").read_bytes() == SECRET and not [n for n in os.listdir(tmp_path) if files.MARK in n]


def test_damaged_inputs_and_params_are_one_line_exit_2(done, tmp_path, capsys, copy_of):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((3, 2)), y=np.array([0, 1, 0]))
    data = good.read_bytes()
    for name, damaged in (("cut.npz", data[: len(data) // 2]), ("flip.npz", data[:-30] + b"\xff" + data[-29:])):
        (tmp_path / name).write_bytes(damaged)
        assert main(["predict", str(done), "--input", str(tmp_path / name), "--out", str(tmp_path / "p.csv")]) == 2
        one_line(capsys)
    run = copy_of(done)
    params = bytearray((run / "params.npz").read_bytes())
    params[params.rindex(b"PK\x01\x02") + 10] = 99  # the compression method of the last member
    (run / "params.npz").write_bytes(params)
    assert main(["predict", str(run), "--input", str(good), "--out", str(tmp_path / "p.csv")]) == 2
    one_line(capsys)


def test_evaluate_in_a_read_only_folder_prints_its_results_and_skips_the_figure(done, tmp_path, capsys, monkeypatch):
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((3, 2)), y=np.array([0, 1, 0]))

    def read_only(path, payload):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr("jaxbp.training.plots.write_atomic", read_only)
    assert main(["evaluate", str(done), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "confusion plot not saved" in out and "Read-only" in out
