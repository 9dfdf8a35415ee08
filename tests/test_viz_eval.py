"""Image grids, interpolation paths and dataset-level evaluation."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from genjax import viz
from genjax.eval import evaluate_dataset


def test_image_grid_places_each_tile_and_pads():
    imgs = np.stack([np.full((4, 5, 1), i / 5.0) for i in range(6)])
    g = viz.image_grid(imgs, ncol=3, pad=1)
    assert g.shape == (2 * 5 + 1, 3 * 6 + 1, 3) and g.dtype == np.uint8
    for i in range(6):
        r, c = divmod(i, 3)
        tile = g[1 + r * 5:1 + r * 5 + 4, 1 + c * 6:1 + c * 6 + 5]
        assert np.all(tile == round(i / 5.0 * 255))
    assert np.all(g[0] == 255)
    with pytest.raises(ValueError):
        viz.image_grid(np.zeros((2, 4, 4)))


def test_save_image_grid_writes_a_scaled_png(tmp_path):
    path = str(tmp_path / "sub" / "g.png")
    viz.save_image_grid(path, np.random.default_rng(0).uniform(size=(4, 8, 8, 3)), scale=3)
    assert np.asarray(Image.open(path)).shape == (3 * 22, 3 * 22, 3)


def test_lerp_and_slerp_paths():
    z0, z1 = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 2.0]])
    for fn in (viz.lerp, viz.slerp):
        p = fn(z0, z1, 5)
        assert p.shape == (5, 1, 2)
        np.testing.assert_allclose(p[0], z0, atol=1e-6)
        np.testing.assert_allclose(p[-1], z1, atol=1e-6)
    mid = viz.slerp(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), 3)[1]
    np.testing.assert_allclose(jnp.linalg.norm(mid), 1.0, rtol=1e-6)   # stays on the circle
    np.testing.assert_allclose(viz.lerp(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), 3)[1],
                               [0.5, 0.5])
    par = viz.slerp(jnp.array([1.0, 1.0]), jnp.array([2.0, 2.0]), 3)   # parallel: no NaN
    np.testing.assert_allclose(par[1], [1.5, 1.5], rtol=1e-5)


def test_evaluate_dataset_equals_the_direct_mean_with_a_padded_last_batch():
    data = np.random.default_rng(0).normal(size=(23, 3)).astype(np.float32)
    fn = lambda x, key: {"s": x.sum(-1), "noise": jax.random.normal(key, (x.shape[0],))}
    out = evaluate_dataset(fn, data, jax.random.key(0), batch_size=5)
    np.testing.assert_allclose(out["s"], data.sum(-1).mean(), rtol=1e-5)
    again = evaluate_dataset(fn, data, jax.random.key(0), batch_size=5)
    assert again == out                                   # keys are fixed per batch


def test_the_sweep_figure_has_a_heat_map_for_two_swept_fields(tmp_path):
    """Two fields besides the seed: a heat map panel of the main metric (mean over seeds,
    diverged cells marked); one field, or more than two: no heat map."""
    from genjax.viz import sweep as viz_sweep
    rows = [{"name": f"{i:02d}", "setting": {"optim.lr": lr, "loss.beta": b, "seed": s},
             "metrics": {"m": float("nan") if (lr, b) == (1e-3, 2.0) else lr * b + s}}
            for i, (lr, b, s) in enumerate((lr, b, s) for lr in (1e-4, 1e-3)
                                           for b in (1.0, 2.0) for s in (0, 1))]
    fields = ["optim.lr", "loss.beta", "seed"]
    assert viz_sweep._heat_axes(rows, fields) == ["optim.lr", "loss.beta"]
    assert viz_sweep._heat_axes(rows, ["optim.lr", "seed"]) is None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    viz_sweep._heat_map(ax, rows, ["optim.lr", "loss.beta"], "m")
    grid = ax.images[0].get_array()
    np.testing.assert_allclose(grid[0], [1e-4 + 0.5, 2e-4 + 0.5])    # mean over seeds
    assert np.ma.is_masked(grid[1, 1]) or not np.isfinite(grid[1, 1])
    assert "diverged" in [t.get_text() for t in ax.texts]
    plt.close(fig)
    path = viz_sweep.sweep_figure(str(tmp_path / "s.png"), rows, fields, "m",
                                  curves={"00": ([1, 2], [3.0, 2.0])})
    assert os.path.getsize(path) > 1000


def test_the_sweep_heat_map_takes_tuple_fields_read_back_from_json():
    """A swept tuple field (model.hidden) comes back from sweep.json as a list: the heat
    map still groups the settings by it (it once failed with 'unhashable type: list')."""
    from genjax.viz import sweep as viz_sweep
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [{"name": f"{i}", "setting": {"model.hidden": list(h), "optim.lr": lr},
             "metrics": {"m": sum(h) * lr}}
            for i, (h, lr) in enumerate((h, lr) for h in ((8, 8), (16, 16))
                                        for lr in (1.0, 2.0))]
    fig, ax = plt.subplots()
    viz_sweep._heat_map(ax, rows, ["model.hidden", "optim.lr"], "m")
    np.testing.assert_allclose(ax.images[0].get_array(), [[16, 32], [32, 64]])
    plt.close(fig)
