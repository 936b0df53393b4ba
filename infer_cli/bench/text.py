"""Seeded filler text of a target length in tokens.

Prompts are built from common short English words, each written with its leading space, which
byte-level BPE and SentencePiece tokenizers alike keep as one token: a run of ``n`` words is about
``n`` tokens before any correction (:mod:`~infer_cli.bench.tokens` makes it exact with the server's
``/tokenize``). The text of a segment depends only on ``(seed, nonce, key)``: equal keys give equal
text, which is how workloads share prefixes, and different keys give text that diverges from the
first word or so, which is how they avoid sharing any. The *nonce* is the run's own: a run with a
fresh nonce shares no text, and so no cached prefix, with any earlier run.
"""

from __future__ import annotations

import hashlib
import random
import secrets

_VOCABULARY = """
    the of and to in is was for on are with as his they be at one have this from or had by word
    but what some we can out other were all there when up use your how said an each she which do
    their time if will way about many then them write would like so these her long make thing see
    him two has look more day could go come did number sound no most people my over know water than
    call first who may down side been now find any new work part take get place made live where
    after back little only round man year came show every good me give our under name very through
    just form great think say help low line turn cause much mean before move right boy old too same
    tell does set three want air well also play small end put home read hand port large add even
    land here must big high such follow act why ask men change went light kind off need house try
    us again animal point mother world near build self earth father head stand own page should
    country found answer school grow study still learn plant cover food sun four between state
    keep eye never last let thought city tree cross farm hard start might story saw far sea draw
    left late run while press close night real life few north open seem together next white
    children begin got walk example paper group always music those both mark often letter until
    mile river car feet care second book carry took science eat room friend began idea fish
    mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual
    young ready above ever red list though feel talk bird soon body dog family direct leave song
    door black short class wind question happen complete ship area half rock order fire south
    problem piece told knew pass since top whole king space heard best hour better true during
    hundred five remember step early hold west ground interest reach fast sing listen six table
    travel less morning ten simple several toward war lay against slow center love person money
    serve appear road map rain rule pull cold notice voice unit power town fine certain fly fall
    lead cry dark machine note wait plan figure star box field rest correct able done drive stood
    front teach week final gave green quick ocean warm free minute strong special mind behind
    clear tail fact street nothing course stay wheel full force blue decide deep moon island foot
    system busy test record boat common gold possible plane dry wonder laugh thousand ago ran check
    game shape hot miss brought heat snow bring yes fill east paint among
"""

WORDS: tuple[str, ...] = tuple(f" {word}" for word in _VOCABULARY.split())
"""The vocabulary: about 500 common words, each one token (with its space) in common tokenizers."""


def run_nonce(seed: int | None) -> str:
    """A run's nonce: random without a seed (runs never share prompts), else fixed by the seed
    (the same ``--seed`` sends exactly the same prompts again)."""
    if seed is None:
        return secrets.token_hex(4)
    return hashlib.sha256(f"infer-bench/{seed}".encode()).hexdigest()[:8]


class TextSource:
    """Words of a segment, by key: ``words(key, n)`` is a prefix of ``words(key, n + k)``."""

    def __init__(self, seed: int, nonce: str = "") -> None:
        self.seed = seed
        self.nonce = nonce
        self._cache: dict[str, list[str]] = {}

    def words(self, key: str, count: int) -> list[str]:
        have = self._cache.get(key)
        if have is None or len(have) < count:
            rng = random.Random(
                f"{self.seed}/{self.nonce}/{key}" if self.nonce else f"{self.seed}/{key}"
            )
            size = max(count * 2, 64)
            have = [WORDS[int(rng.random() * len(WORDS))] for _ in range(size)]
            self._cache[key] = have
        return have[:count]

    def text(self, key: str, count: int) -> str:
        """``count`` words (about ``count`` tokens) of the segment ``key``."""
        return "".join(self.words(key, max(0, count)))


def estimate_tokens(text: str) -> int:
    """A tokenizer-free guess of a text's length in tokens (about 1.3 tokens per English word)."""
    words = len(text.split())
    return max(1, round(words * 1.3)) if text.strip() else 0
