"""Build the shipped data samples from the team's shared copies (provenance; not needed at run time).

    python assets/data/build.py ../shared/data

imdb_sample.csv.gz: the IMDb sample, byte-identical after gunzip (3,180 rows).
goemotions/{train,validation,test}.parquet: GoEmotions' official simplified splits with label ids turned
into emotion names (a list per row: 17% of rows carry more than one label), zstd-compressed.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent


def main(shared: Path) -> None:
    # mtime=0 and a fixed name in the gzip header: rebuilding gives the same bytes
    with (
        open(shared / "imdb" / "imdb_sample.csv", "rb") as src,
        open(HERE / "imdb_sample.csv.gz", "wb") as raw,
        gzip.GzipFile("imdb_sample.csv", "wb", 9, raw, mtime=0) as dst,
    ):
        shutil.copyfileobj(src, dst)
    names = (shared / "goemotions" / "emotions.txt").read_text(encoding="utf-8").split()
    out = HERE / "goemotions"
    out.mkdir(exist_ok=True)
    for src_name, split in (("train", "train"), ("dev", "validation"), ("test", "test")):
        texts, labels, ids = [], [], []
        for line in (shared / "goemotions" / f"{src_name}.tsv").read_text(encoding="utf-8").splitlines():
            text, label_ids, comment_id = line.split("\t")
            texts.append(text)
            labels.append([names[int(i)] for i in label_ids.split(",")])
            ids.append(comment_id)
        table = pa.table({"text": texts, "labels": labels, "id": ids})
        pq.write_table(table, out / f"{split}.parquet", compression="zstd")
        print(split, table.num_rows)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent.parent.parent / "shared" / "data"))
