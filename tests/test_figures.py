"""Figures that can be read: legends inside, many lines apart, accuracy in %, the lr when it
changes, axes within the data. Drawn from small results folders written by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlbench.results import plots

HEADER = "epoch,step,train_batch_loss,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,lr,seconds"


def folder(root: Path, n: int, schedule: bool, key: str = "optimizer.lr", decades: float = 0.0) -> Path:
    """n configurations x 2 seeds, 5 evaluations each; the lr decays when `schedule`. The swept `key`:
    optimizer.lr (0.001, 0.002, ..., or log-spaced over `decades` from 1 down), or case (names)."""
    values = [(10 ** (-decades * i / (n - 1)) if decades else 0.001 * (i + 1)) if key == "optimizer.lr"
              else f"setting {i}" for i in range(n)]
    for i, value in enumerate(values):
        lr = value if isinstance(value, float) else 0.001 * (i + 1)
        for seed in range(2):
            d = root / "runs" / f"r{i}s{seed}"
            d.mkdir(parents=True)
            rows = [HEADER]
            for e in range(5):
                acc = 0.1 + 0.15 * e + 0.01 * i + 0.005 * seed
                rows.append(f"{e},{10 * e},{'nan' if e == 0 else 1.0},{2.0 / (e + 1)},{acc},1.0,{acc - 0.05},1.0,"
                            f"{acc - 0.08},{lr * (0.5 ** e if schedule else 1.0)},{e}")
            (d / "metrics.csv").write_text("\n".join(rows) + "\n")
            final = {"epoch": 4, "step": 40, "train_acc": acc, "val_acc": acc - 0.05, "test_acc": acc - 0.08,
                     "gap": 0.08, "train_loss": 0.4, "val_loss": 1.0, "test_loss": 1.0}
            (d / "summary.json").write_text(json.dumps({"run_id": d.name, "seed": seed, "status": "ok",
                                                        "params": {key: value}, "final": final,
                                                        "best": final, "wall_time": 1.0}))
            (d / "config.yaml").write_text(f"optimizer: {{name: sgd, lr: {lr}}}\n")
    (root / "view.json").write_text(json.dumps({"name": "t", "task": "train", "keys": [key],
                                                "points": [{key: v} for v in values]}))
    return root


def inside(fig, artist) -> bool:  # type: ignore[no-untyped-def]
    fig.canvas.draw() if hasattr(fig.canvas, "draw") else None
    renderer = fig.canvas.get_renderer()
    box, page = artist.get_window_extent(renderer), fig.bbox
    return box.x0 >= page.x0 - 1 and box.y0 >= page.y0 - 1 and box.x1 <= page.x1 + 1 and box.y1 <= page.y1 + 1


@pytest.mark.parametrize("n, key", [(4, "optimizer.lr"), (18, "case")])
def test_curves_legend_inside_and_every_line_apart(tmp_path: Path, n: int, key: str) -> None:
    """Up to ten lines, or lines that are not values of one number: a legend, colour and style apart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plots.curves(plots.load(folder(tmp_path, n, schedule=False, key=key)))
    FigureCanvasAgg(fig)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    [legend] = legends
    assert len(legend.get_texts()) == n and inside(fig, legend)
    lines = fig.axes[0].get_lines()
    assert len({(str(line.get_color()), line.get_linestyle()) for line in lines}) == n
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert any(t.startswith("validation accuracy %") for t in titles)  # what ranks the table
    assert not any(t.startswith("learning rate") for t in titles)  # a constant lr: no panel
    for ax in fig.axes:
        if ax.get_title().endswith("%") or "accuracy %" in ax.get_title():
            low, high = ax.get_ylim()
            assert 1 < high <= 105  # percent, as in the tables


@pytest.mark.parametrize("decades, log", [(0.0, False), (4.0, True)])
def test_more_than_ten_lines_of_one_number_read_from_a_colour_bar(tmp_path: Path, decades: float, log: bool) -> None:
    """16 values of a swept number (weight stds 1 ... 1e-4): a sequential colormap over the value, log where
    it spans two decades or more, and a colour bar saying which colour is which value; no legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgb

    root = folder(tmp_path, 16, schedule=False, decades=decades)
    fig = plots.curves(plots.load(root))
    FigureCanvasAgg(fig)
    assert not fig.legends and not any(ax.get_legend() for ax in fig.axes)
    [bar] = [ax for ax in fig.axes if ax.get_ylabel() == "optimizer.lr"]
    assert bar.get_yscale() == ("log" if log else "linear") and inside(fig, bar)
    colors = {float(line.get_label()): to_rgb(line.get_color()) for line in fig.axes[0].get_lines()}
    assert len(colors) == len(set(colors.values())) == 16
    green = [colors[value][1] for value in sorted(colors)]
    assert green == sorted(green)  # one sequential map in the values' order: viridis' green rises along it


def test_an_lr_schedule_gets_its_panel(tmp_path: Path) -> None:
    fig = plots.curves(plots.load(folder(tmp_path, 3, schedule=True)))
    assert any(ax.get_title().startswith("learning rate") for ax in fig.axes)


def test_the_gap_axis_stays_within_accuracy(tmp_path: Path) -> None:
    fig = plots.gap(plots.load(folder(tmp_path, 3, schedule=False)))
    assert fig.axes[0].get_xlim()[1] <= 100


def test_a_log_epoch_axis_starts_at_the_first_evaluation_after_epoch_0(tmp_path: Path) -> None:
    root = folder(tmp_path, 2, schedule=False)
    for metrics in root.glob("runs/*/metrics.csv"):  # epochs 0, 0.5, 5, 50, 500: a log axis
        rows = metrics.read_text().splitlines()
        metrics.write_text("\n".join([rows[0]] + [f"{e}{row[row.index(','):]}" for e, row in
                                                   zip([0, 0.5, 5, 50, 500], rows[1:])]) + "\n")
    fig = plots.curves(plots.load(root), x="epoch")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert min(min(line.get_xdata()) for line in ax.get_lines()) == 0.5  # no flat line from the axis' edge


def test_a_loss_within_a_decade_has_at_least_three_labelled_ticks(tmp_path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    import pandas as pd

    root = folder(tmp_path, 2, schedule=False)
    for path in root.glob("runs/*/metrics.csv"):  # train loss 3.3 .. 1.3: 1..9 x 10^k would label only 2 and 3
        metrics = pd.read_csv(path)
        metrics["train_loss"] = 3.3 - 0.5 * metrics["epoch"]
        metrics.to_csv(path, index=False)
    fig = plots.curves(plots.load(root))
    FigureCanvasAgg(fig).draw()
    [ax] = [ax for ax in fig.axes if ax.get_title() == "train loss"]
    low, high = ax.get_ylim()
    labelled = [t for t in ax.yaxis.get_major_ticks() if low <= t.get_loc() <= high and t.label1.get_text()]
    assert len(labelled) >= 3


def test_a_folder_of_many_configurations_draws_the_best_and_stays_readable(tmp_path: Path) -> None:
    """50 configurations: curves draws the best 40 (by validation accuracy) apart, the rest grey in one legend
    entry; gap draws the best 20 bars (it drew every one: 675 x 6201 px for configs/tuning.yaml)."""
    from test_report import block, write_run

    root = tmp_path / "many"
    rank = {f"c{i:02d}": (7 * i) % 50 for i in range(50)}  # the best are spread over the sweep order
    for case, r in rank.items():
        val = 0.3 + 0.01 * r
        for seed in range(2):
            write_run(root, f"{case}-{seed}", {"case": case}, seed, final=block(val, val, val + 0.05, 2, seed),
                      curve=[(0, 0, 0.0, 0.1), (1, 10, 1.0, val / 2), (2, 20, 2.0, val)])
    folder = plots.load(root)
    kept, greyed = folder.drawn()
    assert len(kept) == 40 and len(greyed) == 10 and min(rank[k] for k in kept) > max(rank[g] for g in greyed)
    curves = plots.curves(folder)
    assert curves is not None
    legend = [t.get_text() for legend in [*curves.legends, *(ax.get_legend() for ax in curves.axes
                                                            if ax.get_legend())] for t in legend.get_texts()]
    assert "10 more (grey; see the table)" in legend and len(legend) == 41
    gap = plots.gap(folder)
    assert gap is not None and gap.get_figheight() < 12
    best = folder.drawn(20)[0]
    assert [t.get_text() for t in gap.axes[0].get_yticklabels()] == best and len(best) == 20


def test_a_staged_search_draws_its_confirm_and_defaults_stages(tmp_path: Path) -> None:
    from test_report import block, write_run

    from dlbench.results import plots

    root = tmp_path / "staged"
    for i in range(20):
        write_run(root, f"s{i}", {"optimizer.lr": 0.01 * (i + 1), "stage": "search"}, 0,
                  final=block(0.5, 0.5, 0.5, 2, 0))
    for stage, lr in (("confirm", 0.05), ("defaults", 0.001)):
        for seed in (10, 11):
            write_run(root, f"{stage}{seed}", {"optimizer.lr": lr, "stage": stage}, seed,
                      final=block(0.6, 0.6, 0.6, 2, seed))
    kept, greyed = plots.load(root).drawn()
    assert len(kept) == 2 and all("search" not in k for k in kept) and greyed == []
