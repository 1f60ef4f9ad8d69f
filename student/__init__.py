"""The STTR student: model, distillation losses, checkpoints, inference and ONNX export."""
