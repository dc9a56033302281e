"""Noise-conditional classifiers p_t(y | x_t) for classifier guidance (Dhariwal & Nichol 2021, sec. 4),
trained by `fokker train` on the same process as the diffusion model they guide:

    fokker train --preset classifier-mnist --minutes 5 --out runs/clf

    noisy.py   NoisyClassifier: logits / log_probs at (x, t), accuracy_by_time on held-out data
    load.py    load_classifier: from a run folder or its model.safetensors
    config.py  check_classifier: a classifier's config sets nothing only a diffusion model reads
    report.py  RUN/accuracy.json, the accuracy against t (read_accuracy)

A classifier is a model whose network (fokker.nets) has the task "classifier" (`unet_encoder`,
`mlp_classifier`), trained with the cross_entropy loss (fokker.losses.CrossEntropyLoss)."""

from fokker.classifier.config import check_classifier
from fokker.classifier.load import load_classifier
from fokker.classifier.noisy import NoisyClassifier
from fokker.classifier.report import read_accuracy, report_times

__all__ = ["NoisyClassifier", "check_classifier", "load_classifier", "read_accuracy", "report_times"]
