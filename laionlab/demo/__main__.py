"""`python -m laionlab.demo --root data/demo`: build the embedded demo data."""

import argparse
import time

from laionlab.demo.generate import DemoConfig, build_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="data/demo", help="folder to write the demo into")
    parser.add_argument("--parts", type=int, default=DemoConfig.n_parts)
    parser.add_argument("--rows", type=int, default=DemoConfig.rows_per_part)
    parser.add_argument("--seed", type=int, default=DemoConfig.seed)
    args = parser.parse_args()
    start = time.perf_counter()
    manifest = build_demo(args.root, DemoConfig(n_parts=args.parts, rows_per_part=args.rows, seed=args.seed))
    print(
        f"demo: {len(manifest.parts)} parts, {manifest.images} images under {manifest.root} "
        f"in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
