#!/usr/bin/env python3
"""Draws the figures of docs/benchmarks.md (numbers copied from its ninth-session runs, the
benches built with LTO; each plot from one run).

Run: `pip install matplotlib && python3 docs/plots/make_plots.py` (writes PNGs next to it).
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COLORS = {"grove": "#2e7d32", "may": "#1565c0", "tokio": "#ef6c00", "std threads": "#757575",
          "crossbeam": "#6a1b9a", "Go": "#00838f"}


def bars(ax, title, unit, values, log=False, lower_is_better=True):
    names = list(values)
    ax.bar(names, [values[n] for n in names], color=[COLORS.get(n, "#999") for n in names])
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit + (" (lower is better)" if lower_is_better else " (higher is better)"),
                  fontsize=8)
    if log:
        ax.set_yscale("log")
    for i, n in enumerate(names):
        ax.text(i, values[n], f"{values[n]:,.0f}" if values[n] >= 10 else f"{values[n]:.1f}",
                ha="center", va="bottom", fontsize=7)
    ax.tick_params(axis="x", labelsize=8)


def runtime():
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    bars(axes[0], "yield_now, 2 greenlets, 1 worker", "ns per yield",
         {"grove": 18.0, "may": 36.7, "tokio": 81.1})
    bars(axes[1], "spawn+join, waves of 10k, 2 workers", "ns per greenlet",
         {"grove": 112.5, "tokio": 587.7, "may": 12617, "std threads": 73092}, log=True)
    bars(axes[2], "100k sleepers (1-100 ms): wall", "ms",
         {"grove": 410.5, "tokio": 220.3, "may": 871.4})
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "runtime.png"), dpi=110)


def sync():
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    bars(axes[0], "channel ping-pong, 1 worker", "ns per round trip",
         {"grove": 110.9, "tokio": 142.1, "may": 259.3, "crossbeam": 357.9})
    bars(axes[1], "MPMC 4x4, bounded(128)", "ns per message",
         {"grove": 33.1, "may": 47.8, "crossbeam": 41.1, "tokio": 90.5})
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "sync.png"), dpi=110)


def net():
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    bars(axes[0], "hello responder, wrk -c256, 2 workers", "req/s",
         {"grove": 63198, "may": 39860, "tokio": 63002},
         lower_is_better=False)
    bars(axes[1], "RSS per idle keep-alive connection", "bytes",
         {"grove": 8935, "may": 11935, "tokio": 4991})
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "net.png"), dpi=110)


if __name__ == "__main__":
    runtime()
    sync()
    net()
