"""Network.save / Network.load: round trips and every malformed file refused with a ValueError."""

import pickle

import numpy as np
import pytest

import loggrad as lg


@pytest.fixture
def net():
    return lg.Network.build([3, 5, 2], activation=["tanh", "gelu"], seed=1)


def fields(net):
    return {
        "format": np.asarray("loggrad-network-1"),
        "widths": np.asarray(net.widths, dtype=np.int64),
        "activations": np.asarray(net.activations),
        "params": np.array(net.params),
    }


def write(tmp_path, name="f.npz", **changes):
    d = fields(lg.Network.build([3, 5, 2], activation=["tanh", "gelu"], seed=1))
    for k, v in changes.items():
        if v is None:
            del d[k]
        else:
            d[k] = v
    p = tmp_path / name
    np.savez(p, **d)
    return p


def test_round_trip_and_path_without_suffix(tmp_path, net):
    net.save(tmp_path / "x")  # numpy writes x.npz
    assert (tmp_path / "x.npz").exists()
    for p in (tmp_path / "x", str(tmp_path / "x"), tmp_path / "x.npz"):
        back = lg.Network.load(p)
        assert back.widths == net.widths and back.activations == net.activations
        np.testing.assert_array_equal(back.params, net.params)
        assert back.params.flags.writeable and back.params.dtype == np.float64
        x = np.random.default_rng(0).standard_normal((4, 3))
        np.testing.assert_array_equal(back.forward(x, precision="float64"), net.forward(x, precision="float64"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"params": np.zeros(10)}, "params holds 10 values"),
        ({"params": np.zeros(100)}, "need 32"),
        ({"params": np.zeros((4, 8))}, "1-D"),
        ({"params": np.arange(32)}, "float"),
        ({"widths": np.array([3.0, 8.5, 2.0])}, "8.5"),
        ({"widths": np.array([3, 0, 2])}, "at least 1"),
        ({"widths": np.array([3])}, "at least two"),
        ({"widths": np.array([3, 5, 2, 2])}, "activations for 3 layers"),
        ({"activations": np.array(["tanh", "nope"])}, "nope"),
        ({"activations": np.array([1, 2])}, "names"),
        ({"format": np.asarray("something-else")}, "format"),
        ({"params": None}, "missing params"),
        ({"widths": None, "activations": None}, "missing widths, activations"),
        ({"format": None}, "missing format"),
    ],
)
def test_malformed_files_are_refused(tmp_path, change, message):
    p = write(tmp_path, **change)
    with pytest.raises(ValueError, match=message):
        lg.Network.load(p)


def test_non_finite_params_refused(tmp_path, net):
    params = np.array(net.params)
    params[7] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        lg.Network.load(write(tmp_path, params=params))


def test_other_kinds_of_file_refused(tmp_path):
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(32))
    with pytest.raises(ValueError, match=r"single array \(\.npy\)"):
        lg.Network.load(npy)
    txt = tmp_path / "a.txt"
    txt.write_text("widths,params\n1,2\n")
    with pytest.raises(ValueError, match="not a loggrad network file"):
        lg.Network.load(txt)
    broken = tmp_path / "b.npz"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(ValueError, match="not a loggrad network file"):
        lg.Network.load(broken)
    with pytest.raises(FileNotFoundError):
        lg.Network.load(tmp_path / "nowhere")


class Boom:
    def __reduce__(self):
        return (pytest.fail, ("load unpickled an object from the file",))


def test_never_unpickles(tmp_path):
    pkl = tmp_path / "p.npy"
    pkl.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError):
        lg.Network.load(pkl)
    p = write(tmp_path, activations=np.array([Boom(), Boom()], dtype=object))
    with pytest.raises(ValueError):
        lg.Network.load(p)
