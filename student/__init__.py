"""The STTR student: model, distillation losses, dataset, training loop, checkpoints, inference
and ONNX export. It imports no teacher: a teacher may run a student network, not the reverse."""
