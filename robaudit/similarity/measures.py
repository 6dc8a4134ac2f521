"""The arithmetic of representational similarity, with the notation of Li et al. (2019).

**Signal-to-noise scaling.** A neuron a responds r_ita to stimulus i on trial t. Its signal strength is the
variance over stimuli of its trial-mean response, s_a = Var_i(E_t[r_ita]); its noise strength is the mean
over stimuli of its variance across trials, n_a = E_i[Var_t(r_ita)]. Each neuron's responses are scaled by
w_a = s_a / n_a, so that unreliable neurons weigh little whatever their range. (Variances are population
variances; the number of trials scales every w_a alike and so cannot change a cosine similarity.)

**Similarity.** Responses (or a layer's flattened activations) f_i are centred over the N images,
c_i = f_i - mean_k f_k, and the similarity of images i and j is the cosine of the angle between c_i and
c_j. The result is a symmetric N x N matrix with ones on the diagonal.

**Model similarity and the loss.** A model's similarity is a mix of several layers' similarity matrices,
S = sum_l softmax(beta)_l S_l, with trainable beta (zero at start: equal weights). The loss of a pair is
(arctanh S_ij - arctanh T_ij)^2 against the target T; arctanh (Fisher's z) stretches similarities near
+-1, where a small difference matters most. Values are clipped to +-(1 - CLIP_MARGIN) first, so that
identical images (similarity 1) give a finite loss.

**Comparing matrices.** Pearson and Spearman correlation of the upper triangles (pairs i < j), and linear
centred kernel alignment (Kornblith et al. 2019), CKA(K, L) = <HKH, HLH> / (||HKH|| ||HLH||), on the
images' Gram matrices (H centres over images).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError

#: similarities are clipped to [-1 + CLIP_MARGIN, 1 - CLIP_MARGIN] before arctanh (arctanh(1 - 1e-4) = 4.95)
CLIP_MARGIN = 1e-4
_TINY = 1e-12


def snr_weights(trials: np.ndarray) -> np.ndarray:
    """w_a = Var_i(E_t r_ita) / E_i Var_t(r_ita) for responses ``trials`` of shape (stimuli, trials, units).

    A unit that never varies (no signal, no noise) gets weight 0; one with signal but no trial-to-trial
    variability has no finite SNR, which is an error.
    """
    trials = np.asarray(trials, dtype=np.float64)
    if trials.ndim != 3:
        raise InputError(f"SNR weights need responses of shape (stimuli, trials, units), got {trials.shape}")
    if trials.shape[1] < 2:
        raise InputError(f"SNR weights need at least 2 trials per stimulus, got {trials.shape[1]}")
    if trials.shape[0] < 2:
        raise InputError(f"SNR weights need at least 2 stimuli, got {trials.shape[0]}")
    signal = trials.mean(axis=1).var(axis=0)
    noise = trials.var(axis=1).mean(axis=0)
    infinite = (noise <= 0) & (signal > 0)
    if infinite.any():
        units = np.flatnonzero(infinite)
        raise InputError(
            f"{len(units)} unit(s) vary across stimuli but not across trials (e.g. unit {int(units[0])}), so their "
            "signal-to-noise ratio is infinite; drop them or give trial-averaged responses without repeats"
        )
    return np.where(noise > 0, signal / np.where(noise > 0, noise, 1.0), 0.0)


def scaled_responses(responses: np.ndarray, snr_trials: np.ndarray | None = None) -> np.ndarray:
    """The population response of each stimulus, each unit scaled by its SNR weight.

    ``responses`` is (N, units) or (N, trials, units); with trials, the trial mean is the response and, unless
    ``snr_trials`` (M, trials, units) is given (e.g. repeated "oracle" stimuli), the weights come from the
    trials themselves. Without any trials the responses are used as they are (weights 1).
    """
    responses = np.asarray(responses, dtype=np.float64)
    if responses.ndim == 3:
        weights = snr_weights(responses if snr_trials is None else snr_trials)
        responses = responses.mean(axis=1)
    elif responses.ndim == 2:
        weights = snr_weights(snr_trials) if snr_trials is not None else np.ones(responses.shape[1])
    else:
        raise InputError(f"responses must be (images, units) or (images, trials, units), got shape {responses.shape}")
    if len(weights) != responses.shape[1]:
        raise InputError(f"responses have {responses.shape[1]} units but the SNR trials have {len(weights)}")
    return responses * weights


def cosine_similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, D) features -> (N, N) cosine similarities of the features centred over the N rows."""
    centred = features - features.mean(dim=0, keepdim=True)
    units = centred / centred.norm(dim=1, keepdim=True).clamp_min(_TINY)
    return units @ units.T


def similarity_of_responses(responses: np.ndarray, snr_trials: np.ndarray | None = None) -> np.ndarray:
    """The target similarity matrix (float64) of neural responses: SNR scaling, centring, cosine similarity."""
    scaled = torch.from_numpy(scaled_responses(responses, snr_trials))
    return cosine_similarity_matrix(scaled).numpy()


def mix_layers(similarities: list[torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """sum_l softmax(logits)_l S_l: the model's similarity as a trainable mix of its layers'."""
    weights = torch.softmax(logits, dim=0)
    return torch.einsum("l,lij->ij", weights, torch.stack(similarities))


def fisher_z(similarity: torch.Tensor) -> torch.Tensor:
    """arctanh of similarities clipped to +-(1 - CLIP_MARGIN)."""
    return torch.atanh(similarity.clamp(-1 + CLIP_MARGIN, 1 - CLIP_MARGIN))


def similarity_loss(model: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over pairs i < j of (arctanh S_ij - arctanh T_ij)^2 for two (B, B) similarity matrices."""
    if model.shape != target.shape or model.ndim != 2 or model.shape[0] != model.shape[1]:
        raise ValueError(f"similarity_loss needs two equal square matrices, got {model.shape} and {target.shape}")
    rows, cols = torch.triu_indices(model.shape[0], model.shape[0], offset=1, device=model.device)
    diff = fisher_z(model[rows, cols]) - fisher_z(target[rows, cols].to(model.dtype))
    return (diff**2).mean()


# -- comparing two similarity matrices (robaudit rsa) --------------------------------------------------------


def upper_triangle(matrix: np.ndarray) -> np.ndarray:
    """The entries above the diagonal, row by row."""
    rows, cols = np.triu_indices(matrix.shape[0], k=1)
    return np.asarray(matrix[rows, cols])


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the ranks (ties get their average rank)."""
    from scipy.stats import rankdata

    return pearson(rankdata(a), rankdata(b))


def centred_gram(gram: np.ndarray) -> np.ndarray:
    """H K H with H = I - 11^T/n: the Gram matrix of features centred over the images."""
    return gram - gram.mean(axis=0, keepdims=True) - gram.mean(axis=1, keepdims=True) + gram.mean()


def cka(gram_a: np.ndarray, gram_b: np.ndarray) -> float:
    """Centred kernel alignment of two (n, n) Gram matrices; linear CKA when both are X X^T."""
    a, b = centred_gram(gram_a), centred_gram(gram_b)
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")
