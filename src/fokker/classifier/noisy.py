"""`NoisyClassifier`: p_t(y | x_t) for a process, the classifier that classifier guidance differentiates
(Dhariwal & Nichol 2021, sec. 4.1; Song et al. 2021, app. I): a network of (x_t, c) whose outputs are
class logits, c the noise conditioning of t, trained on x_t = alpha(t) x_0 + sigma(t) eps at the
process's training times (fokker.losses.CrossEntropyLoss)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fokker.denoiser import check_conditioning, network_condition, noise_condition
from fokker.noise import randn
from fokker.processes import Process

Network = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, c) -> logits


def _parameter_dtype(network: Callable, default: torch.dtype) -> torch.dtype:
    """The dtype of a module's parameters (what its input must be), else `default`."""
    parameters = network.parameters() if isinstance(network, torch.nn.Module) else iter(())
    return next((p.dtype for p in parameters if p.is_floating_point()), default)


class NoisyClassifier:
    """p_t(y | x_t): `network(x, c)` -> logits (B, K), with c the network's noise input for times t under
    `conditioning` ("time", "index", "sigma" or "log_sigma": the same conversion as a Denoiser's,
    fokker.denoiser.network_condition). Times are floats or (B,) float64 tensors in [0, 1]; x may be of
    any float dtype (it is cast to the network's and the logits back to x's), and the logits are
    differentiable with respect to x. `nfe` counts evaluations of the network."""

    space = None  # the latent space of a classifier of latents (latent diffusion; fokker.autoencoder.LatentSpace)

    def __init__(self, network: Network, process: Process, conditioning: str = "time") -> None:
        check_conditioning(conditioning, process)
        self.network, self.process, self.conditioning = network, process, conditioning
        self.nfe = 0

    def condition(self, t: torch.Tensor) -> torch.Tensor:
        """The network's noise input for times t (float64 in, float64 out): fokker.denoiser.noise_condition."""
        return noise_condition(self.process, self.conditioning, t)

    def logits(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """The logits (B, K) of p_t(y | x_t = x), in x's dtype."""
        x_in = x.to(_parameter_dtype(self.network, x.dtype))
        self.nfe += 1
        return self.network(x_in, network_condition(self.process, self.conditioning, x_in, t)).to(x.dtype)

    def log_probs(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """log p_t(y | x_t = x) for every class y, (B, K): the log-softmax of the logits."""
        return F.log_softmax(self.logits(x, t), dim=-1)

    @torch.no_grad()
    def accuracy_by_time(
        self,
        data: torch.Tensor,
        labels: torch.Tensor,
        times: torch.Tensor | list[float],
        generator: torch.Generator,
        batch: int = 500,
    ) -> torch.Tensor:
        """The accuracy at each of `times` (float64, one per time) on labelled clean examples `data` (x_0,
        held out): the fraction whose x_t = alpha(t) x_0 + sigma(t) eps is classified as its label by the
        most probable class. The noise of all of `data` at one time is drawn at once from `generator`
        (time after time), so the result does not depend on `batch`, how many go through the network at
        once. The network should be in eval mode (dropout)."""
        if batch < 1:
            raise ValueError(f"batch must be positive, got {batch}")
        times = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
        labels = labels.to(data.device)
        accuracy = torch.empty(len(times), dtype=torch.float64)
        for i, t in enumerate(times):  # the times; each one's examples go through in batches
            x_t = self.process.q_sample(data, t, randn(data.shape, generator, device=data.device, dtype=data.dtype))
            predicted = torch.cat(
                [self.logits(x_t[lo : lo + batch], t).argmax(-1) for lo in range(0, len(data), batch)]
            )
            accuracy[i] = (predicted == labels).double().mean().item()
        return accuracy
