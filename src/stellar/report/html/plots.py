"""Plots of the HTML report, rendered at build time with matplotlib as inline SVG.

matplotlib is used through :class:`matplotlib.figure.Figure` only (no pyplot, so no global state and
no GUI backend); ``svg.hashsalt`` is fixed so a rebuild gives identical bytes. Scatter plots are
rasterised inside the SVG so their size does not grow with the number of images.

- :func:`metric_distributions`: the distribution of each per-image metric per run (the values that
  are averaged: after the exclusion and failure rules).
- :func:`kendall_heatmap`: Kendall's τ-b between every two metrics over the images of one run
  (pairs of images where either metric is undefined are left out).
- :func:`identity_prompt_tradeoff`: IPS before exclusion against CLIP-T, and against the margin
  CLIP-T − CLIP-N whose threshold 2σ is the exclusion rule (DESIGN §6.4), excluded images marked;
  at most :data:`MAX_SCATTER` points per run (seeded sample), so the page weight is bounded.
- :func:`aps_per_attribute`: the APS probe AUC per attribute per run (``summary.json``).
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
import pandas as pd

from stellar.errors import MissingDependencyError

#: Points per run drawn in a scatter plot (a seeded random sample beyond that).
MAX_SCATTER = 800
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _figure(w: float, h: float, **margins):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependencyError("matplotlib", "report", "the HTML report's plots") from exc
    # fixed margins: a layout engine (constrained / tight) costs a second full draw per figure
    fig = Figure(figsize=(w, h))
    fig.subplots_adjust(**{"left": 0.08, "right": 0.98, "bottom": 0.12, "top": 0.9, "wspace": 0.3, "hspace": 0.55, **margins})
    return fig


def to_svg(fig) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog), deterministic bytes."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "stellar-report", "svg.fonttype": "none", "font.size": 9}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, dpi=72)  # dpi: rasterised scatters only
    text = buf.getvalue()
    return text[text.find("<svg") :]


def metric_distributions(frames: dict[str, pd.DataFrame], metrics: Sequence[tuple[str, str]]) -> str | None:
    """Histograms of each metric, one panel per metric, one outline per run."""
    metrics = [(m, label) for m, label in metrics if any(m in f and f[m].notna().any() for f in frames.values())]
    if not metrics:
        return None
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = _figure(3.4 * cols, 2.5 * rows, left=0.07 if cols > 1 else 0.16, bottom=0.1 if rows > 1 else 0.14)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (m, label) in zip(axes, metrics):
        vals = {name: f[m].to_numpy(dtype=float) for name, f in frames.items() if m in f}
        allv = np.concatenate([v[np.isfinite(v)] for v in vals.values()])
        lo, hi = (float(allv.min()), float(allv.max())) if len(allv) else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 31)
        for k, (name, v) in enumerate(vals.items()):
            v = v[np.isfinite(v)]
            if len(v):
                ax.hist(v, bins=bins, histtype="step", linewidth=1.5, color=COLORS[k % len(COLORS)], label=f"{name} (n={len(v)})")
        ax.set_title(label)
        ax.set_ylabel("images")
        ax.legend(fontsize=7, frameon=False)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    return to_svg(fig)


def kendall_tau_matrix(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Kendall's τ-b between every two metric columns over the rows where both are defined."""
    from scipy.stats import kendalltau

    out = pd.DataFrame(np.nan, index=list(metrics), columns=list(metrics))
    for i, a in enumerate(metrics):
        for b in metrics[i:]:
            x = frame[a].to_numpy(dtype=float)
            y = frame[b].to_numpy(dtype=float)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() >= 2 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
                tau = float(kendalltau(x[ok], y[ok]).statistic)
                out.loc[a, b] = out.loc[b, a] = tau
    return out


def kendall_heatmap(frame: pd.DataFrame, metrics: Sequence[tuple[str, str]], title: str) -> str | None:
    """Heat map of :func:`kendall_tau_matrix`; None with fewer than two metrics that vary."""
    keys = [m for m, _ in metrics if m in frame and frame[m].notna().sum() >= 2]
    if len(keys) < 2:
        return None
    labels = dict(metrics)
    tau = kendall_tau_matrix(frame, keys)
    varying = [k for k in keys if tau[k].notna().any()]
    if len(varying) < 2:  # e.g. a run where every image failed: every metric is constant
        return None
    keys = varying
    tau = tau.loc[keys, keys]
    n = len(keys)
    fig = _figure(2.4 + 0.55 * n, 1.6 + 0.5 * n, left=1.1 / (2.4 + 0.55 * n), right=0.95, bottom=1.0 / (1.6 + 0.5 * n), top=1 - 0.35 / (1.6 + 0.5 * n))
    ax = fig.subplots()
    im = ax.imshow(tau.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(n), [labels[k] for k in keys], rotation=45, ha="right")
    ax.set_yticks(range(n), [labels[k] for k in keys])
    for i in range(n):
        for j in range(n):
            v = tau.iat[i, j]
            ax.text(j, i, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if abs(v) > 0.6 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8, label="Kendall τ-b")
    return to_svg(fig)


def identity_prompt_tradeoff(frames: dict[str, pd.DataFrame], sigmas: dict[str, float | None]) -> str | None:
    """IPS (before exclusion) vs CLIP-T, and vs CLIP-T − CLIP-N with the rule's 2σ line; None without CLIP-T."""
    usable = {n: f for n, f in frames.items() if "clip_t" in f and f["clip_t"].notna().any() and ("ips_raw" in f or "ips" in f)}
    if not usable:
        return None
    rows_legend = math.ceil(3 * len(usable) / 4)
    height = 3.6 + 0.2 * rows_legend
    fig = _figure(10, height, left=0.07, bottom=(0.55 + 0.2 * rows_legend) / height, top=1 - 0.35 / height, wspace=0.2)
    left, right = fig.subplots(1, 2)
    rng = np.random.default_rng(0)
    for k, (name, f) in enumerate(usable.items()):
        ips = f["ips_raw" if "ips_raw" in f else "ips"].to_numpy(dtype=float)
        clip_t = f["clip_t"].to_numpy(dtype=float)
        clip_n = f["clip_n"].to_numpy(dtype=float) if "clip_n" in f else np.full(len(f), np.nan)
        excluded = (f["followed_prompt"] == False).to_numpy() if "followed_prompt" in f else np.zeros(len(f), bool)  # noqa: E712
        ok = np.isfinite(ips) & np.isfinite(clip_t)
        idx = np.flatnonzero(ok)
        if len(idx) > MAX_SCATTER:  # a fixed-size sample: the page weight must not grow with the images
            idx = np.sort(rng.choice(idx, MAX_SCATTER, replace=False))
        color = COLORS[k % len(COLORS)]
        for ax, x in ((left, clip_t), (right, clip_t - clip_n)):
            sel = idx[np.isfinite(x[idx])]
            keep, drop = sel[~excluded[sel]], sel[excluded[sel]]
            ax.scatter(x[keep], ips[keep], s=5, color=color, label=f"{name}", rasterized=True, linewidths=0)
            if len(drop):
                ax.scatter(x[drop], ips[drop], s=14, marker="x", color=color, label=f"{name}: excluded ({int(excluded.sum())})", rasterized=True, linewidths=0.8)
        sigma = sigmas.get(name)
        if sigma is not None and np.isfinite(clip_n).any():
            right.axvline(2 * sigma, color=color, linestyle="--", linewidth=1, label=f"{name}: threshold 2σ = {2 * sigma:.3f}")
            left.axvline(float(np.nanmean(clip_n)) + 2 * sigma, color=color, linestyle=":", linewidth=1, label=f"{name}: mean CLIP-N + 2σ")
    left.set_xlabel("CLIP-T")
    left.set_ylabel("IPS before exclusion")
    left.set_title("identity vs prompt following")
    right.set_xlabel("CLIP-T − CLIP-N (followed ⇔ > 2σ)")
    right.set_title("exclusion rule: margin over an unedited copy")
    handles, labels = [], []
    for ax in (left, right):
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    fig.legend(handles, labels, loc="lower center", ncols=min(4, len(labels)), fontsize=7, frameon=False)
    return to_svg(fig)


def aps_per_attribute(per_attribute: dict[str, dict[str, float | None]], attributes: Sequence[str]) -> str | None:
    """Grouped bars: APS AUC per attribute (x) per run (colour); missing = skipped attribute."""
    runs = [r for r, vals in per_attribute.items() if vals]
    if not runs:
        return None
    fig = _figure(max(6.0, 0.9 * len(attributes) + 2), 3.4, bottom=0.3, left=0.08)
    ax = fig.subplots()
    width = 0.8 / len(runs)
    x = np.arange(len(attributes))
    for k, r in enumerate(runs):
        vals = [per_attribute[r].get(a) for a in attributes]
        ys = [np.nan if v is None else float(v) for v in vals]
        ax.bar(x + (k - (len(runs) - 1) / 2) * width, ys, width, color=COLORS[k % len(COLORS)], label=r)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, [a.replace("_", " ") for a in attributes], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("ROC-AUC (0.5 = chance)")
    ax.set_title("APS per attribute")
    ax.legend(fontsize=7, frameon=False, ncols=min(4, len(runs)))
    return to_svg(fig)
