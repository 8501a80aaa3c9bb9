"""The linear-chain CRF against brute-force enumeration of every tag path; gradcheck; a BiLSTM-CRF
tagger that learns a tagging whose rules live in the transitions."""

import itertools
import math

import pytest
import torch

from seqlab.nn import CRF, Recurrent


def _path_score(crf, emissions, path, b):
    """s(y) of one sequence, written out term by term: start, emissions, transitions, end."""
    s = crf.start[path[0]] + sum(emissions[t, b, y] for t, y in enumerate(path))
    s = s + sum(crf.transitions[path[t - 1], path[t]] for t in range(1, len(path)))
    return s + crf.end[path[-1]]


def _setup(dtype=torch.float64):
    torch.manual_seed(0)
    crf = CRF(3).to(dtype)
    with torch.no_grad():  # larger scores than the init, so that paths differ clearly
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(4, 3, 3, dtype=dtype)  # (T, B, K)
    lengths = torch.tensor([4, 2, 1])
    return crf, emissions, lengths


def test_log_partition_and_viterbi_match_every_path_enumerated():
    crf, emissions, lengths = _setup()
    crf.requires_grad_(False)
    log_z = crf.log_partition(emissions, lengths)
    paths, scores = crf.decode(emissions, lengths)
    tags = torch.zeros(4, 3, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        every = {path: _path_score(crf, emissions, path, b) for path in itertools.product(range(3), repeat=n)}
        want_z = torch.logsumexp(torch.stack(list(every.values())), 0)
        torch.testing.assert_close(log_z[b], want_z)
        best = max(every, key=lambda p: float(every[p]))
        assert paths[:n, b].tolist() == list(best) and (paths[n:, b] == -1).all()
        torch.testing.assert_close(scores[b], every[best])
        tags[:n, b] = torch.tensor(best)
        tags[n:, b] = -1  # padding may hold anything
    # The negative log-likelihood of the best paths: log Z - s(best), per sequence and reduced.
    nll = crf(emissions, tags, lengths, reduction="none")
    torch.testing.assert_close(nll, log_z - scores)
    torch.testing.assert_close(crf(emissions, tags, lengths), nll.sum())
    torch.testing.assert_close(crf(emissions, tags, lengths, reduction="mean"), nll.mean())
    assert (nll > 0).all()  # every sequence here has more than one path


def test_probabilities_of_all_paths_sum_to_one():
    crf, emissions, _ = _setup()
    crf.requires_grad_(False)
    T = 3
    e = emissions[:T, :1]
    total = sum(math.exp(-float(crf(e, torch.tensor(p).view(T, 1))))
                for p in itertools.product(range(3), repeat=T))
    assert total == pytest.approx(1.0, abs=1e-12)


def test_gradcheck_through_the_forward_algorithm():
    crf, emissions, lengths = _setup()
    tags = torch.randint(0, 3, (4, 3))
    emissions.requires_grad_(True)

    def nll(e, transitions, start, end):  # the layer with its parameters as inputs
        return torch.func.functional_call(crf, {"transitions": transitions, "start": start, "end": end},
                                          (e, tags, lengths))

    inputs = (emissions, *(p.detach().clone().requires_grad_(True) for p in (crf.transitions, crf.start, crf.end)))
    assert torch.autograd.gradcheck(nll, inputs)


def test_batch_first_is_the_transposed_layout():
    crf, emissions, lengths = _setup()
    tags = torch.randint(0, 3, (4, 3))
    other = CRF(3, batch_first=True).double()
    other.load_state_dict(crf.state_dict())
    torch.testing.assert_close(other(emissions.transpose(0, 1), tags.t(), lengths), crf(emissions, tags, lengths))
    paths, scores = crf.decode(emissions, lengths)
    paths_bf, scores_bf = other.decode(emissions.transpose(0, 1), lengths)
    assert torch.equal(paths_bf, paths.t()) and torch.equal(scores_bf, scores)
    assert "batch_first=True" in repr(other)


def test_errors_name_the_bad_input():
    crf = CRF(3)
    e = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match=r"expected emissions \(T, B, K\) with K=3"):
        crf.decode(torch.randn(4, 2, 5))
    with pytest.raises(ValueError, match=r"expected tags of shape \(4, 2\)"):
        crf(e, torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"tags must lie in \[0, 2\]"):
        crf(e, torch.full((4, 2), 3))
    with pytest.raises(ValueError, match="tags must be int64"):
        crf(e, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
        crf(e, torch.zeros(4, 2, dtype=torch.long), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="at least one time step"):
        crf.decode(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match="reduction"):
        crf(e, torch.zeros(4, 2, dtype=torch.long), reduction="avg")
    with pytest.raises(ValueError, match="num_tags"):
        CRF(0)


class _Tagger(torch.nn.Module):
    """BiLSTM-CRF (Huang, Xu & Yu 2015): embeddings, a bidirectional LSTM, per-step tag scores, a CRF."""

    def __init__(self, vocab, tags, hidden=16):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 8)
        self.rnn = Recurrent("lstm", 8, hidden, bidirectional=True)
        self.out = torch.nn.Linear(2 * hidden, tags)
        self.crf = CRF(tags)

    def emissions(self, x, lengths):
        return self.out(self.rnn(self.embed(x), lengths=lengths)[0])  # (T, B, K)


def _bio(tokens):
    """Runs of token 1 are chunks: B at a run's first token, I inside it, O for token 0 (tags 0, 1, 2)."""
    tags, inside = [], False
    for tok in tokens:
        tags.append(2 if tok == 0 else (1 if inside else 0))
        inside = tok == 1
    return tags


def _batch(g, B=32, T=10):
    x = torch.randint(0, 2, (T, B), generator=g)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    tags = torch.tensor([_bio(x[:, b].tolist()) for b in range(B)]).t()
    return x, lengths, tags


def test_a_bilstm_crf_tagger_learns_chunks_and_forbids_o_then_i():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = _Tagger(2, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        x, lengths, tags = _batch(g)
        loss = model.crf(model.emissions(x, lengths), tags, lengths, reduction="mean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, lengths, tags = _batch(g, B=64)
    with torch.no_grad():
        paths, _ = model.crf.decode(model.emissions(x, lengths), lengths)
    mask = paths >= 0
    assert torch.equal(mask, torch.arange(10).unsqueeze(1) < lengths)
    accuracy = float((paths[mask] == tags[mask]).float().mean())
    assert accuracy > 0.98
    A = model.crf.transitions  # [i, j]: i followed by j; B=0, I=1, O=2
    assert A[2, 1] < A[0, 1] and A[2, 1] < A[1, 1]  # I never follows O in the data
