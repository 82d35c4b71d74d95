"""Fault battery, files: a damaged checkpoint or data file is always a CheckpointError/DataError, never garbage."""

import io
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.cli import main
from jaxbp.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The smallest real checkpoint: one params leaf, an empty optimizer state, the run key, the metadata."""
    path = str(tmp_path_factory.mktemp("tiny") / "checkpoint.npz")
    state = Checkpoint([jnp.array([0.5, -2.0])], (), 3, 2, jax.random.key(1))
    save_checkpoint(path, state)
    templates = jax.eval_shape(lambda: (state.params, state.opt_state, state.key))
    return path, state, templates


def _same(a: Checkpoint, b: Checkpoint) -> bool:
    keys = (jax.random.key_data(a.key), jax.random.key_data(b.key))
    return (a.step, a.epoch) == (b.step, b.epoch) and np.array_equal(a.params[0], b.params[0]) and \
        np.array_equal(*keys) and a.params[0].dtype == b.params[0].dtype


def test_byte_flip_sweep_never_loads_garbage(tiny, tmp_path):
    path, state, templates = tiny
    data, flipped = open(path, "rb").read(), str(tmp_path / "flipped.npz")
    refused = loaded = 0
    for index in range(len(data)):
        for bit in (0, 6):
            damaged = bytearray(data)
            damaged[index] ^= 1 << bit
            with open(flipped, "wb") as file:
                file.write(damaged)
            try:
                got = load_checkpoint(flipped, *templates)
            except jaxbp.CheckpointError:
                refused += 1
                continue  # any other exception fails the test: it must be a JaxbpError
            assert _same(got, state), f"garbage loaded after flipping bit {bit} of byte {index}"
            loaded += 1  # a flip in bytes nobody reads (a zip comment field, padding) changes nothing
    assert refused + loaded == 2 * len(data) and refused > 4 * loaded  # most bytes are read, and checked
    print(f"{len(data)} bytes x 2 bits: {refused} refused, {loaded} loaded identical, 0 garbage")


def test_checksums_catch_what_the_zip_crc_misses(tiny, tmp_path):
    """Rewrite one array with a valid zip CRC (as a faulty disk or tool might): only the checksum sees it."""
    path, _, templates = tiny
    rewritten = tmp_path / "rewritten.npz"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rewritten, "w") as target:
        for info in source.infolist():
            member = source.read(info.filename)
            if info.filename == "params.0.npy":
                member = member[:-8] + np.float64(7.0).tobytes()  # the last value, 7.0 instead of -2.0
            target.writestr(info.filename, member)
    with np.load(rewritten) as archive:
        assert archive["params.0"][1] == 7.0  # numpy and the zip CRC accept it
    with pytest.raises(jaxbp.CheckpointError, match="params.0.*does not match its checksum"):
        load_checkpoint(str(rewritten), *templates)


@pytest.mark.parametrize("content, says", [
    (b"epoch,loss\n1,0.5\n", "holds text ('epoch,loss'...), not a zip archive"),
    (b"", "is empty"),
    (b"\x93NUMPY\x01\x00", "single .npy array"),
    (b"\x80\x04\x95pickle", "pickle, which jaxbp never loads"),
])
def test_a_file_that_is_not_an_archive_says_what_it_is(tiny, tmp_path, content, says):
    _, _, templates = tiny
    (tmp_path / "checkpoint.npz").write_bytes(content)
    with pytest.raises(jaxbp.CheckpointError, match=r"corrupt or not a jaxbp checkpoint") as error:
        load_checkpoint(str(tmp_path / "checkpoint.npz"), *templates)
    assert says in str(error.value) and "allow_pickle" not in str(error.value)
    (tmp_path / "data.npz").write_bytes(content)
    with pytest.raises(jaxbp.DataError, match="corrupt or not an .npz archive"):
        jaxbp.datasets.load(str(tmp_path / "data.npz"), key=jax.random.key(0))


def test_central_directory_flips_are_checkpoint_errors_in_the_cli(tiny, tmp_path, capsys):
    """The flips that made zipfile raise NotImplementedError ('compression method') and RuntimeError
    ('encrypted'): the command line shows one clear line and exits 2, not 'internal error'."""
    path, _, templates = tiny
    data = open(path, "rb").read()
    directory = data.rindex(b"PK\x01\x02")  # the last central directory entry: method at +10, flags at +8
    for offset, value in ((10, 99), (8, 1)):
        damaged = bytearray(data)
        damaged[directory + offset] = value
        run = tmp_path / f"run{offset}"
        run.mkdir()
        (run / "checkpoint.npz").write_bytes(damaged)
        (run / "config.toml").write_text("[train]\nepochs = 3\n")
        with pytest.raises(jaxbp.CheckpointError):
            load_checkpoint(str(run / "checkpoint.npz"), *templates)
        assert main(["train", "--resume", str(run), "--quiet"]) == 2
        assert "internal error" not in capsys.readouterr().err
        assert (run / "checkpoint.npz").read_bytes() == damaged  # nothing saved is touched


def test_data_file_byte_flips_are_data_errors(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, x=np.arange(8.0).reshape(4, 2), y=np.array([0, 1, 0, 1]))
    data, path = buffer.getvalue(), tmp_path / "data.npz"
    for index in range(0, len(data), 3):
        damaged = bytearray(data)
        damaged[index] ^= 0x40
        path.write_bytes(damaged)
        try:
            jaxbp.datasets.load(str(path), key=jax.random.key(0), n=4, test_fraction=0.25)
        except (jaxbp.DataError, jaxbp.ConfigError):
            pass  # any other exception fails the test
