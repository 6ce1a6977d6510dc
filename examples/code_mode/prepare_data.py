"""Write the code-mode example's data: the training split, and the validation split under a sealed folder.

    python examples/code_mode/prepare_data.py      # data/code_digits/train.npz, data/code_digits/holdout/val.npz

The holdout folder is `code_mode.sealed` in examples/code_mode/study.yaml: a patched trainer runs in a sandbox in
which it is an empty folder; only the sealed evaluator reads it. (The digits are public: scikit-learn's copy is on
this machine too. A study whose validation data exists nowhere else is sealed for real.)
"""

from pathlib import Path

import numpy as np

from autopilot.train.tasks.digits_data import split

OUT = Path("data/code_digits")

data = split(0)
(OUT / "holdout").mkdir(parents=True, exist_ok=True)
x, y = data["train"]
np.savez(OUT / "train.npz", x=x.reshape(len(x), -1), y=y)
xv, yv = data["val"]
np.savez(OUT / "holdout" / "val.npz", x=xv.reshape(len(xv), -1), y=yv)
print(f"wrote {len(y)} training and {len(yv)} validation examples under {OUT}/")
