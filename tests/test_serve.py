"""``seqlab serve``: the JSON API, its limits and error answers, batching, and a small load."""

import asyncio
import json

import httpx
import pytest
import torch

from seqlab.data import pad_sequences
from seqlab.errors import SeqlabError
from seqlab.serve import BackgroundServer, ServeConfig, create_app, pronounce_with_attention
from seqlab.serve.app import _Batcher
from seqlab.tasks.g2p import load_pretrained, normalize_word


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


@pytest.fixture(scope="module")
def server(model):
    app = create_app(ServeConfig(beam=5, max_words=8, max_body_bytes=2048), model=model)
    with BackgroundServer(app) as url:
        yield url


def _get(url):
    return httpx.get(url, timeout=300)


def _post(url, body):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/api/g2p", content=content, headers={"Content-Type": "application/json"}, timeout=300)


def test_api_returns_phones_scores_and_attention(server, model):
    words = ["Hello", "well-known", "Zürich"]
    response = _post(server, {"words": words})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["beam"] == 5
    expected = model.pronounce_text(words, beam=5)
    for word, result, phones in zip(words, body["results"], expected):
        assert result["word"] == word and result["phones"] == phones
        assert [p["letters"] for p in result["parts"]] == normalize_word(word)
        assert result["score"] == pytest.approx(sum(p["score"] for p in result["parts"]))
        for part in result["parts"]:
            weights = torch.tensor(part["attention"])
            assert weights.shape == (len(part["phones"]) + 1, len(part["letters"]))
            # Each row is a distribution over the letters (rounded to 4 decimals per entry).
            assert torch.allclose(weights.sum(dim=1), torch.ones(len(weights)), atol=1e-3 * len(part["letters"]))
            assert part["score"] < 0
    assert [p["letters"] for p in body["results"][2]["parts"]] == ["zurich"]


def test_request_beam_overrides_the_default(server, model):
    body = _post(server, {"words": ["quixotic"], "beam": 1}).json()
    assert body["beam"] == 1 and body["results"][0]["phones"] == model.pronounce(["quixotic"], beam=1)[0]


def test_score_is_the_search_score_and_attention_matches_the_model(model):
    words = ["phoneme", "knight", "a", "colonel"]
    results = pronounce_with_attention(model, words, beam=1)
    src, src_len = pad_sequences([model.letters.encode(list(w)) for w in words], model.letters.pad)
    search = model.model.generate(src, src_len, bos=model.phones.bos, eos=model.phones.eos, beam=1)
    assert [r["phones"] for r in results] == [model.phones.decode(t) for t in search.tokens]
    assert [r["score"] for r in results] == pytest.approx(search.scores.tolist(), abs=1e-4)
    for word, r in zip(words, results):
        alone = model.attention(word, r["phones"])
        assert torch.allclose(torch.tensor(r["attention"]), alone, atol=1e-4)


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"not json", 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b'["hello"]', 400, "must be a JSON object"),
        (b"null", 400, "must be a JSON object"),
        ({"word": ["hello"]}, 400, "unknown key(s) 'word'"),
        ({"words": "hello"}, 400, "list of strings"),
        ({"words": ["hello", 3]}, 400, "list of strings"),
        ({"words": []}, 400, "no words"),
        ({"words": ["hello"], "beam": 0}, 400, '"beam" must be'),
        ({"words": ["hello"], "beam": True}, 400, '"beam" must be'),
        ({"words": ["hello"], "beam": 99}, 400, '"beam" must be'),
        ({"words": ["hello", "r2d2"]}, 422, "words[1]: cannot pronounce 'r2d2': digits"),
        ({"words": ["a$b"]}, 422, "unsupported character '$'"),
        ({"words": [""]}, 422, "empty word"),
        ({"words": ["   "]}, 422, "empty word"),
        ({"words": ["'''"]}, 422, "no letters"),
        ({"words": ["x" * 41]}, 422, "longer than 40 letters"),
        ({"words": ["a"] * 9}, 413, "too many words: 9 > 8"),
        ({"words": ["a" * 30] * 8, "pad": "x" * 2000}, 413, "larger than 2,048 bytes"),
    ],
)
def test_bad_requests_get_a_4xx_json_error(server, body, status, message):
    response = _post(server, body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert "\n" not in response.json()["error"]


def test_deeply_nested_json_is_a_400_not_a_crash(server):
    response = _post(server, b'{"words": ' + b"[" * 1000 + b"]" * 1000 + b"}")
    assert response.status_code == 400 and response.json()["error"]


def test_a_streamed_body_over_the_limit_is_cut_off(server):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    response = httpx.post(f"{server}/api/g2p", content=chunks(), timeout=300)  # chunked: no Content-Length
    assert response.status_code == 413 and "larger than" in response.json()["error"]


def test_unknown_routes_and_methods_answer_json(server):
    assert _get(f"{server}/nope").json() == {"error": "Not Found"}
    response = _get(f"{server}/api/g2p")
    assert response.status_code == 405 and "error" in response.json()
    response = _get(f"{server}/static/../app.py")
    assert response.status_code == 404 and "error" in response.json()


def test_page_is_self_contained(server):
    page = _get(server)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert 'id="text"' in page.text and "http://" not in page.text and "https://" not in page.text
    script = _get(f"{server}/static/app.js")
    assert script.status_code == 200 and "/api/g2p" in script.text and "https://" not in script.text
    info = _get(f"{server}/api/info").json()
    assert info["max_words"] == 8 and info["beam"] == 5 and info["examples"]
    assert all(normalize_word(w) for w in info["examples"])  # every example can be pronounced


def test_requests_waiting_together_are_decoded_as_one_batch(model):
    async def run():
        batcher = _Batcher(model, max_batch_words=100)
        batcher.start()
        words = [["hello"], ["world", "again"], ["phoneme"], ["knight"]]
        beams = [5, 5, 1, 5]
        results = await asyncio.gather(*(batcher.submit(w, b) for w, b in zip(words, beams)))
        await batcher.stop()
        return batcher, words, beams, results

    batcher, words, beams, results = asyncio.run(run())
    # All four were queued before the worker woke: one batch per beam size.
    assert (batcher.requests, batcher.batches) == (4, 2)
    for w, b, r in zip(words, beams, results):
        assert [x["phones"] for x in r] == model.pronounce(w, beam=b)


def test_load_of_100_requests_from_8_clients_has_no_errors(server, model):
    vocabulary = ["hello", "world", "phoneme", "knight", "colonel", "quixotic", "tomato", "seqlab", "Zürich"]
    requests = [[vocabulary[(i * 7 + j) % len(vocabulary)] for j in range(1 + i % 3)] for i in range(100)]
    expected = dict(zip(vocabulary, model.pronounce_text(vocabulary, beam=5)))

    async def run():
        queue = list(enumerate(requests))
        answers = {}
        async with httpx.AsyncClient(base_url=server, timeout=300) as client:

            async def worker():
                while queue:
                    i, words = queue.pop()
                    response = await client.post("/api/g2p", json={"words": words})
                    answers[i] = (response.status_code, response.json())

            await asyncio.gather(*(worker() for _ in range(8)))
        return answers

    answers = asyncio.run(run())
    assert len(answers) == 100
    assert [i for i, (status, _) in answers.items() if status != 200] == []
    for i, (_, body) in answers.items():
        assert [r["phones"] for r in body["results"]] == [expected[w] for w in requests[i]]
    stats = _get(f"{server}/api/info").json()["stats"]
    assert stats["requests"] >= 100 and stats["batches"] <= stats["requests"]


def test_fast_serves_the_shipped_distilled_model_greedily():
    fast = load_pretrained(fast=True)
    with BackgroundServer(create_app(ServeConfig(fast=True, beam=1))) as url:
        info = _get(f"{url}/api/info").json()
        body = _post(url, {"words": ["phoneme"]}).json()
    assert info["model"]["checkpoint"] == "shipped (fast)" and info["model"]["ensemble_members"] is None
    assert info["beam"] == 1 and body["results"][0]["phones"] == fast.pronounce(["phoneme"], beam=1)[0]


@pytest.mark.parametrize("compute", ["bfloat16", "int8"])
def test_serves_in_low_precision_on_request_and_refuses_an_unknown_compute(compute):
    fast = load_pretrained(fast=True)
    words = ["phoneme", "seqlab", "quantised"]
    with BackgroundServer(create_app(ServeConfig(fast=True, beam=1, compute=compute))) as url:
        info = _get(f"{url}/api/info").json()
        body = _post(url, {"words": words}).json()
    assert info["model"]["compute"] == compute
    assert info["model"]["parameters"] == sum(p.numel() for p in fast.model.parameters())
    assert [r["phones"] for r in body["results"]] == fast.with_compute(compute).pronounce(words, beam=1)
    with pytest.raises(SeqlabError, match="compute must be one of"):
        create_app(ServeConfig(fast=True, compute="float16"))
