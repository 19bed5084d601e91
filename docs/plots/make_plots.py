#!/usr/bin/env python3
"""Draws the figures of docs/benchmarks.md (numbers copied from its second-session tables,
same runs).

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
         {"grove": 34.8, "may": 44.6, "tokio": 101.9})
    bars(axes[1], "spawn+join, waves of 10k, 2 workers", "ns per greenlet",
         {"grove": 83.4, "tokio": 522, "may": 13570, "std threads": 87486}, log=True)
    bars(axes[2], "100k sleepers (1-100 ms): wall", "ms",
         {"grove": 421, "tokio": 227, "may": 814})
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "runtime.png"), dpi=110)


def sync():
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    bars(axes[0], "channel ping-pong, 1 worker", "ns per round trip",
         {"grove": 198, "tokio": 239, "may": 390, "crossbeam": 536})
    bars(axes[1], "MPMC 4x4, bounded(128)", "ns per message",
         {"grove": 36.5, "may": 45.6, "crossbeam": 23.0, "tokio": 137})
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "sync.png"), dpi=110)


def net():
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    bars(axes[0], "hello responder, wrk -c256 (2nd session, quiet)", "req/s",
         {"grove": 128887, "may": 94685, "tokio": 131794, "std threads": 80939},
         lower_is_better=False)
    bars(axes[1], "RSS per idle keep-alive connection", "bytes",
         {"grove": 8815, "may": 11935, "tokio": 4991, "std threads": 13876})
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "net.png"), dpi=110)


if __name__ == "__main__":
    runtime()
    sync()
    net()
