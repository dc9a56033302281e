"""Few-step models: progressive distillation and consistency models (fokker.distill)."""
