"""Evaluation on the golden set: the run's teacher, the student and another teacher side by
side (`golden_set`, `golden_lsast`), their measures (`golden_metrics`, `cfsd`), and the report
with its contact sheet and curves (`reporting`)."""
