"""`python -m dcnviz download ml-1m|ml-100k --dir DIR`: fetch, verify and unpack a MovieLens archive.

Progress and the MovieLens licence note go to stderr; the last stdout line is one JSON object:
``{"dataset": name, "path": folder, "rows": {file: count}, "data_dir_option": "--data-dir <folder>"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from dcnviz.download import DATASETS, LICENCE_NOTE, check_folder, dataset_info, download_dataset


class _Bar:
    """A one-line progress bar on stderr, redrawn at most every 0.2 s."""

    def __init__(self, label: str) -> None:
        self.label, self.last, self.t0 = label, 0.0, time.monotonic()

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and (total is None or done < total):
            return
        self.last = now
        mb = done / 1e6
        rate = mb / max(now - self.t0, 1e-6)
        if total:
            frac = done / total
            bar = "#" * int(30 * frac)
            sys.stderr.write(
                f"\r{self.label} [{bar:<30}] {100 * frac:5.1f}% {mb:.1f}/{total / 1e6:.1f} MB {rate:.1f} MB/s"
            )
        else:
            sys.stderr.write(f"\r{self.label} {mb:.1f} MB {rate:.1f} MB/s")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "download",
        help="download a MovieLens data set (verified, atomic)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("dataset", choices=sorted(DATASETS), help="which MovieLens archive")
    p.add_argument("--dir", required=True, metavar="DIR", help="parent folder; the files land in DIR/<dataset>/")
    p.add_argument("--force", action="store_true", help="replace an existing copy")
    p.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    p.add_argument("--md5", default=None, help="expected MD5 of the archive at --url")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    info = dataset_info(args.dataset)
    print(f"note: {LICENCE_NOTE}", file=sys.stderr)
    bar = _Bar(f"{info.name}.zip")
    try:
        folder = download_dataset(args.dataset, args.dir, progress=bar, url=args.url, md5=args.md5, force=args.force)
    finally:
        if bar.last:
            bar.close()
    rows = check_folder(folder, info)
    print(f"{info.name}: verified {', '.join(f'{k} {v:,} rows' for k, v in rows.items())} in {folder}", file=sys.stderr)
    print(
        json.dumps({"dataset": info.name, "path": str(folder), "rows": rows, "data_dir_option": f"--data-dir {folder}"})
    )
    return 0
