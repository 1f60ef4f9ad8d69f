"""Evaluation on the golden set: teachers and student side by side, measures and reports."""
