"""What the student's flags choose among, in a module without torch: `--help` lists these
choices, and the configs check them, before any network or weights load."""

from __future__ import annotations

AUTHORS_MICROAST = "microast-authors"  # a student by name: `student.checkpoint.open_student`
PRECISIONS = ("auto", "bf16", "fp32")  # a trained student's math (`student.inference`)
RANDOM = "random"  # the explicit opt-in to random weights, e.g. `--vgg-weights random`
LOSS_WEIGHTS = {"l1": (1.0, 0.0), "l2": (0.5, 0.5), "l3": (0.7, 0.3)}  # name -> (MSE, Gram)
