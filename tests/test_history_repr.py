"""History's repr stays small however long and deep the training was."""

import numpy as np

import loggrad as lg
from loggrad.train import History


def test_history_repr_is_summarised():
    rng = np.random.default_rng(0)
    h = History(
        loss=list(rng.random(5000)),
        loss_log10=list(-rng.random(5000)),
        grad_norm_log10=[rng.standard_normal(10000) * 100 for _ in range(30)],
        fraction_unchanged=[rng.random(10000) for _ in range(30)],
    )
    r = repr(h)
    assert len(r) < 1024, len(r)
    assert r.startswith("History(epochs=5000") and "10000 layers" in r and "..." in r
    shown = r.split("loss=[", 1)[1].split("]", 1)[0].split(",")
    assert abs(float(shown[0]) - h.loss[0]) < 1e-4 and abs(float(shown[-1]) - h.loss[-1]) < 1e-4
    assert repr(History()) == "History(epochs=0, loss=[])"


def test_fit_history_repr():
    net = lg.Network.build([3, 4, 2], seed=0)
    x = np.random.default_rng(1).standard_normal((8, 3))
    h = lg.train.fit(net, x, np.zeros((8, 2)), lr=0.1, epochs=3)
    r = repr(h)
    assert r.startswith("History(epochs=3") and "(2 layers)" in r and len(r) < 1024


def test_history_repr_shows_the_last_epoch_and_at_most_six_values():
    h = History(loss=[0.5, 0.25, 0.125], loss_log10=[0.0] * 3,
                grad_norm_log10=[np.array([111.0, 112.0]), np.array([222.0, 223.0]), np.array([333.0, 334.0])],
                fraction_unchanged=[np.zeros(2)] * 3)
    r = repr(h)
    assert "333" in r and "334" in r and "111" not in r and "222" not in r, r
    full = repr(History(loss=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    assert "..." not in full and all(f"{v}." in full for v in range(1, 7)), full
    cut = repr(History(loss=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
    assert "..." in cut and "4." not in cut and "7." in cut and "1." in cut, cut
