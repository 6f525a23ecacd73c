"""Write docs/_static/lfm_transport.png, the picture of the README and the docs' front page.

It runs the gallery example ``examples/plot_transport_blocks.py`` and saves its
figure as a palette PNG (small enough to commit)::

    make readme-figure          # or: .venv/bin/python docs/make_readme_figure.py
"""

import io
import runpy
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plot_transport_blocks.py"
OUT = ROOT / "docs" / "_static" / "lfm_transport.png"


def main():
    torch.set_num_threads(1)
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    buffer = io.BytesIO()
    plt.gcf().savefig(buffer, format="png", dpi=72)
    image = Image.open(buffer).convert("RGB").quantize(colors=64)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    image.save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
