"""report.md of `fokker eval`: the metrics table (with the held-out floor), the metrics against NFE, the
trade-off of a guided evaluation (FID against label agreement over the guidance scale), the sample grids and
the training-loss curve, written into the FileSet of its metrics.json (fokker.evaluate)."""

from __future__ import annotations

import math
from pathlib import Path

from fokker.files import FileSet
from fokker.model import weights_path
from fokker.viz import guidance_tradeoff, metric_curves, training_curve

# the metrics plotted against NFE, and whether lower is better
PLOTTED = {
    "fid": True,
    "inception_fid": True,
    "kid": True,
    "inception_score": False,
    "recognizable": False,
    "sliced_w2": True,
    "mmd": True,
    "cross_entropy": True,
}


def write_report(record: dict, checkpoint: str | Path, files: FileSet) -> None:
    """report.md beside metrics.json, with loss.png, metrics_vs_nfe.png and for a guided evaluation
    guidance_tradeoff.png (into the set `files`)."""
    lines = [f"# Evaluation of `{checkpoint}`", ""]
    lines += [f"{record['num']} samples per setting (seed {record['seed']}, {record['spacing']} spacing) on "
              f"`{record['data']}`, scored against {record['reference']['size']} training examples."]  # fmt: skip
    if record["classifier"]:
        c = record["classifier"]
        lines += [f"Features: fokker's classifier for `{c['dataset']}`, held-out accuracy "
                  f"{100 * c['accuracy']:.1f}% on {c['num_test']} test images."]  # fmt: skip
    keys = [k for k in PLOTTED if k in record["floor"]]
    lines += ["", "## Metrics", "", *_metrics_table(record, keys)]
    metric_curves(record["runs"], keys, files.path("metrics_vs_nfe.png"), floor=record["floor"])
    lines += ["![metrics against NFE](metrics_vs_nfe.png)", ""]
    if "agreement" in record["runs"][0]:
        lines += _tradeoff(record, keys[0], files)
    lines += ["## Samples", ""]
    for r in record["runs"]:
        guide = f", {r['guide']}" if r.get("guide") else ""
        model = f"{r['model']}: " if r.get("model") else ""
        lines += [
            f"**{model}{r['sampler']}, {r['steps']} steps{guide}** (NFE {r['nfe']})",
            "",
            f"![{r['sampler']}]({r['picture']})",
            "",
        ]
    lines += ["## Training loss", ""]
    log = _metrics_log(checkpoint)
    if log is not None and training_curve(log, files.path("loss.png")):
        lines += ["![training loss](loss.png)", ""]
    else:
        lines += ["No metrics.jsonl beside the weights: give the run folder to see the training curve.", ""]
    files.path("report.md").write_text("\n".join(lines))


def _metrics_table(record: dict, keys: list[str]) -> list[str]:
    """The Markdown table of the runs' metrics (with guide and label agreement when guided) and the floor."""
    guided = "agreement" in record["runs"][0]
    extra = ["classes_present"] if "classes_present" in record["floor"] else []
    models = "model" in record["runs"][0]
    head = [*(["model"] if models else []), "sampler", "steps", *(["guide"] if guided else []), "NFE", "seconds"]
    head += [*keys, *extra]
    lines = ["| " + " | ".join(head + (["agreement"] if guided else [])) + " |"]
    lines.append("|" + "---|" * (len(head) + guided))
    for r in record["runs"]:
        cells = [*([r["model"]] if models else []), r["sampler"], str(r["steps"]), *([r["guide"]] if guided else [])]
        cells += [str(r["nfe"]), f"{r['seconds']:.1f}"]
        cells += [_fmt(r[k]) for k in keys + extra] + ([_fmt(r["agreement"])] if guided else [])
        lines.append("| " + " | ".join(cells) + " |")
    f = record["floor"]
    blank = [""] * (len(head) - len(keys) - len(extra) - 1)
    lines.append(
        "| " + " | ".join([f"held-out data ({f['size']})", *blank, *[_fmt(f[k]) for k in keys + extra]]) + " |"
    )
    lines += ["", "Lower is better for " + ", ".join(k for k in keys if PLOTTED[k]) + "; higher for "
              + (", ".join(k for k in keys if not PLOTTED[k]) or "none") + ". The last row scores held-out"
              " data the same way: the floor that finite samples alone allow.", ""]  # fmt: skip
    return lines


def _tradeoff(record: dict, quality: str, files: FileSet) -> list[str]:
    """The trade-off plot of a guided evaluation and its paragraph, with the per-class quality."""
    guidance_tradeoff(record["runs"], quality, files.path("guidance_tradeoff.png"))
    lines = ["## Guidance: quality against label agreement", "",
             f"Each point is one guide; agreement is the fraction of samples that fokker's classifier labels as "
             f"the class asked for (nearest training points for vector data); {quality} is over all classes.",
             "", "![guidance trade-off](guidance_tradeoff.png)", "", f"Per-class {quality}:", ""]  # fmt: skip
    k = len(record["runs"][0]["per_class"])
    lines += ["| sampler | steps | guide | " + " | ".join(str(c) for c in range(k)) + " |", "|" + "---|" * (k + 3)]
    for r in record["runs"]:
        lines.append(
            f"| {r['sampler']} | {r['steps']} | {r['guide']} | " + " | ".join(_fmt(v) for v in r["per_class"]) + " |"
        )
    return [*lines, ""]


def _metrics_log(checkpoint: str | Path) -> Path | None:
    """The run's metrics.jsonl, when the checkpoint is (or lies in) a run folder."""
    path = weights_path(checkpoint).parent / "metrics.jsonl"
    return path if path.exists() else None


def _fmt(value: float | int | list) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and (value == 0 or 1e-3 <= abs(value) < 1e4 or math.isnan(value)):
        return f"{value:.4g}"
    return f"{value:.3e}" if isinstance(value, float) else str(value)
