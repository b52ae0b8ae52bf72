"""The sweeps' figures: the across-sweeps scatter tells every sweep apart."""

from sublim_jax.experiments.sweeps import figure


def test_across_figure_gives_every_sweep_its_own_colour_and_marker(tmp_path, monkeypatch):
    names = [f"sweep-{i:02d}" for i in range(13)]  # more sweeps than matplotlib has colours
    rows = [
        {"sweep": s, "init": init, "cos0": 0.01 * i, "transfer": 0.02 * i, "label": "p"}
        for i, s in enumerate(names)
        for init in ("same", "diff")
    ]
    res = {"rows": rows, "spearman": {"rho": 0.5, "ci95": [0.1, 0.8], "n": len(rows)}}
    drawn = []
    monkeypatch.setattr(figure, "save", lambda fig, out, stem: drawn.append(fig) or [])
    figure.across_sweeps_figure(res, tmp_path)
    (ax,) = drawn[0].axes
    styles = {}
    for coll in ax.collections:
        if not coll.get_label().startswith("sweep-"):
            continue
        edge = tuple(coll.get_edgecolor()[0].round(4))
        marker = coll.get_paths()[0].vertices.round(4).tobytes()
        styles[coll.get_label()] = (edge, marker)
    assert sorted(styles) == names
    assert len(set(styles.values())) == len(names)  # no two sweeps look alike
