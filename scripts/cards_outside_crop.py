#!/usr/bin/env python
"""Put the outside-the-crop scores of ``scripts/temporal_study.py`` into the shipped cards.

For every shipped model with a study file (``docs/results/temporal_study.json`` for
``radar-s1-t3``, ``temporal_study_<s..t..>.json`` for the others), writes the per-event
CRPS, pe99 and PITD of the peers (persistence, and for T > 1 linear and motion-compensated
interpolation), the deterministic mean and the full model with block and tile
conservation into the card: ``card.json`` (key ``outside_crop``) and a section of
``model_card.md`` (replaced if present). Then regenerates ``xsuperres/weights/registry.txt``
(the cards' hashes change). Idempotent. Models trained on the full grids (crop ``all``) have
no box outside their training data and are skipped.

Usage::

    python scripts/cards_outside_crop.py
"""

from __future__ import annotations

import json
from pathlib import Path

from xsuperres.pretrained import make_registry

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "xsuperres" / "weights"
STUDIES = {"radar-s1-t3": "temporal_study.json", "radar-s10-t1": "temporal_study_s10t1.json",
           "radar-s10-t3": "temporal_study_s10t3.json", "radar-s25-t6": "temporal_study_s25t6.json"}
HEADING = "## Outside the training crop: block conservation and the temporal peers"


def section(name: str, study: dict) -> tuple[str, dict]:
    """The markdown section and the JSON entry of one model."""
    events = study["events"]
    rows = next(iter(events.values()))["rows"]
    methods = list(rows)
    entry = {"source": "scripts/temporal_study.py (docs/results.md)", "blocks": study["blocks"],
             "members": study["members"], "events": {}}
    lines = [HEADING, "",
             "CRPS in mm/h on the wettest corner box of each event outside the training crop "
             f"(the wettest {study['blocks']} consecutive LR blocks there), {study['members']} "
             "members; the boxes were not trained on but the days were. Linear and "
             "motion-compensated interpolation, and the full model around the motion mean "
             "(`downscale(..., mean=\"motion\")`, S = 1 only), use the following LR step. The default "
             "`mass_conservation=\"auto\"` is the block row for every shipped model but "
             "`radar-s25-t6` (see docs/model.md).", "",
             "| method | " + " | ".join(e.split("_5min")[0] for e in events) + " |",
             "|---|" + "---|" * len(events)]
    for m in methods:
        cells = [f"{events[e]['rows'][m]['crps']:.3f}" for e in events]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for e, v in events.items():
        entry["events"][e] = {"box": v["box"], "first_block": v["first_block"],
                              "crps": {m: r["crps"] for m, r in v["rows"].items()},
                              "pe99": {m: r["pe99"] for m, r in v["rows"].items()},
                              "pitd": {m: r["pitd"] for m, r in v["rows"].items()}}
    return "\n".join(lines) + "\n", entry


def main() -> int:
    for name, fname in STUDIES.items():
        study = json.loads((ROOT / "docs" / "results" / fname).read_text())
        text, entry = section(name, study)
        d = WEIGHTS / name
        card = json.loads((d / "card.json").read_text())
        if card["data"]["crop_rows_cols"] == "all":  # trained on the full grids: no box outside
            print(f"{name}: trained on the full grids, skipped")
            continue
        card["outside_crop"] = entry
        (d / "card.json").write_text(json.dumps(card, indent=1) + "\n")
        md = (d / "model_card.md").read_text()
        if HEADING in md:
            head, rest = md.split(HEADING, 1)
            nxt = rest.find("\n## ")
            md = head + text + ("\n" + rest[nxt + 1:] if nxt >= 0 else "")
        else:
            use = md.find("\n## Use")
            md = md[:use + 1] + text + "\n" + md[use + 1:] if use >= 0 else md + "\n" + text
        (d / "model_card.md").write_text(md)
        print(f"{name}: card updated")
    make_registry(WEIGHTS, WEIGHTS / "registry.txt")
    print("registry regenerated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
