"""What a model is, for people: the rows of ``SRModel``'s notebook display.

:func:`model_facts` gathers what a user needs before downscaling with a model (factors,
cadence and grid spacing it was trained for, sampler defaults, sizes, normalization, mass
conservation, training data, held-out scores from its card); :func:`model_html` renders
them as the HTML table that Jupyter shows for an :class:`~xsuperres.SRModel`
(``SRModel._repr_html_``).
"""

from __future__ import annotations

import html
from typing import Any

from ..config import inference_mass_conservation
from ..nn.samplers import DEFAULT_SAMPLER, SAMPLERS

__all__ = ["model_facts", "model_html", "SCORE_COLUMNS"]

#: card score columns shown (in this order) when the card has them
SCORE_COLUMNS = ("crps", "pitd", "pe99", "lsd")


def _name(model: Any) -> str:
    md = model.metadata or {}
    card = getattr(model, "card", None) or {}
    return str(md.get("pretrained_name") or md.get("name") or card.get("name") or "SRModel")


def _spacing(md: dict) -> str:
    g = md.get("grid_spacing_m")
    if isinstance(g, (list, tuple)) and len(g) == 2:
        return f"{g[0]:g} m x {g[1]:g} m"
    return "not recorded"


def _training_data(model: Any) -> str:
    card = getattr(model, "card", None) or {}
    data = card.get("data") if isinstance(card.get("data"), dict) else None
    if data and data.get("files"):
        periods = data.get("periods") or {}
        parts = []
        for f in data["files"]:
            stem = str(f).removesuffix(".nc")
            p = periods.get(stem)
            parts.append(f"{stem} ({p[0]} .. {p[1]})" if p else stem)
        crop = f"; crop {data['crop_km']}" if data.get("crop_km") else ""
        return ", ".join(parts) + crop
    md = model.metadata or {}
    if isinstance(md.get("data"), dict) and md["data"].get("events"):
        return ", ".join(str(e.get("name")) for e in md["data"]["events"])
    return "not recorded"


def model_facts(model: Any) -> dict[str, str]:
    """``{label: text}``: the facts shown by ``SRModel._repr_html_`` (plain text values)."""
    c = model.config
    md = model.metadata or {}
    n = model.n_parameters
    cap = model.normalization.get("cap")
    step = md.get("time_step") or c.time_step
    spec = SAMPLERS[DEFAULT_SAMPLER]
    auto = inference_mass_conservation(c, "auto")
    facts = {
        "factors": f"S = {c.S} (space), T = {c.T} (time), L = {c.L} LR context steps",
        "trained for": (f"HR cadence {step or 'not recorded'}"
                        + (f" (LR cadence {c.T} x {step})" if step and c.T > 1 else "")
                        + f"; HR grid spacing {_spacing(md)}"),
        "sampler default": f"{DEFAULT_SAMPLER}, {spec.steps} steps",
        "networks": (f"{c.preset} preset{'' if c.attention else ', no attention'}: "
                     f"{n['total'] / 1e6:.2f} M parameters (mean {n['mean_net'] / 1e6:.2f} M + "
                     f"diffusion {n['diffusion_net'] / 1e6:.2f} M)"),
        "normalization": ("cap unset" if cap is None else f"cap {cap:.3g} mm/h")
                         + ("" if c.clip else ", not clipped"),
        "mass conservation": (f"trained with {c.mass_conservation!r}; default at inference "
                              f"(\"auto\") {auto!r}"),
        "training data": _training_data(model),
    }
    if md.get("trained_at"):
        facts["trained at"] = str(md["trained_at"])
    return facts


def _scores_table(card: dict) -> str:
    scores = card.get("scores") if isinstance(card, dict) else None
    if not isinstance(scores, dict) or not scores:
        return ""
    cols = [k for k in SCORE_COLUMNS if any(k in r for r in scores.values() if isinstance(r, dict))]
    head = "".join(f"<th>{html.escape(k.upper())}</th>" for k in cols)
    rows = []
    for method, r in scores.items():
        if not isinstance(r, dict):
            continue
        cells = "".join(f"<td>{r[k]:.4f}</td>" if isinstance(r.get(k), (int, float)) else "<td></td>"
                        for k in cols)
        rows.append(f"<tr><td style='text-align:left'>{html.escape(str(method))}</td>{cells}</tr>")
    desc = (card.get("evaluation") or {}).get("description", "") if isinstance(card.get("evaluation"), dict) else ""
    caption = f"<p style='font-size:smaller'>{html.escape(desc)}</p>" if desc else ""
    return ("<details><summary>held-out scores (model card)</summary>"
            f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>{caption}</details>")


def model_html(model: Any) -> str:
    """The HTML table Jupyter shows for ``model`` (escaped; no scripts, no external CSS)."""
    facts = model_facts(model)
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                   f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in facts.items())
    card = getattr(model, "card", None) or {}
    summary = card.get("summary") if isinstance(card, dict) else None
    intro = f"<p>{html.escape(summary)}</p>" if summary else ""
    return (f"<div class='xsuperres-model'><strong>xsuperres.SRModel</strong> "
            f"<code>{html.escape(_name(model))}</code>{intro}"
            f"<table>{rows}</table>{_scores_table(card)}</div>")
