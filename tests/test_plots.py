"""A run's curves with many replicas: a colour per replica, the legend beside the axes, inside the figure."""

import numpy as np
import pytest


@pytest.mark.parametrize("replicas", [16, 32])
def test_many_replicas_get_their_own_colours_and_a_legend_outside_the_axes(replicas):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    from jaxbp.training import plots

    rng = np.random.default_rng(0)
    rows = [{"epoch": e, **{f"{s}_loss": list(rng.uniform(0.1, 1, replicas)) for s in ("train", "test")}}
            for e in range(1, 4)]
    figure = plots.curves_figure(Figure, replicas)
    axes = figure.add_subplot()
    plots._curves(axes, rows, "loss", [f"seed +{r}" for r in range(replicas)])
    colors = {to_rgba(line.get_color()) for line in axes.get_lines()[:replicas]}
    assert len(colors) == replicas

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend, frame = axes.get_legend().get_window_extent(renderer), axes.get_window_extent(renderer)
    page = figure.bbox
    assert legend.x0 >= frame.x1, "the legend must sit beside the axes, not over the curves"
    assert page.x0 <= legend.x0 and legend.x1 <= page.x1 and page.y0 <= legend.y0 and legend.y1 <= page.y1, \
        "the legend must fit inside the figure, not be cut off"
    assert len(axes.get_legend().get_texts()) == replicas + 2
