"""CLIP's byte-level BPE tokenizer (``shared/reference/clip_notes.md`` §6), without torch.

What: ``Tokenizer(vocab_path).tokenize(texts, context_length=77)`` returns (N, context_length)
int32 token ids, identical to OpenAI's / open_clip's tokenizers: start-of-text (49406), the
text's BPE tokens, end-of-text (49407), zero padding; a text too long keeps its first
``context_length`` tokens with the last replaced by end-of-text (open_clip's truncation).

Steps: clean (``ftfy.fix_text``, HTML-unescape twice, strip; every whitespace run to one space;
lowercase); split into pieces (the special tokens, the contractions 's 't 're 've 'm 'll 'd, runs
of letters, single digits, runs of other non-space characters; case-insensitive); each piece's
UTF-8 bytes as the GPT-2 byte symbols, ``</w>`` on the last; merge the adjacent pair of lowest
merge rank until none is left; look the symbols up.

The vocabulary: 256 byte symbols, the same with ``</w>``, the merges' results in rank order
(the first 48,894 merges of ``bpe_simple_vocab_16e6.txt.gz``), the two special tokens (``SOT``, ``EOT``): 49,408
entries. The file is not in this repository; ``default_vocab_path`` finds it in an installed
package that ships it (``open_clip_torch`` or OpenAI's ``clip``), without importing the package,
or takes it from ``$MLRPL_CLIP_VOCAB``.
"""

import functools
import gzip
import html
import importlib.util
import itertools
import os
import re
from collections.abc import Sequence

import numpy as np

from mlrpl_jax.errors import MissingFileError

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# The special tokens (ids 49406, 49407) as open_clip spells them; OpenAI's original tokenizer calls
# them "<|startoftext|>" / "<|endoftext|>". The two differ only on texts that contain these
# strings literally, which open_clip (followed here) turns into the special token.
SOT, EOT = "<start_of_text>", "<end_of_text>"
NUM_MERGES = 49152 - 256 - 2  # merges used: lines 1 .. 48,894 of the file
_PACKAGES = ("open_clip", "clip")  # installed packages that ship VOCAB_FILE


def default_vocab_path() -> str:
    """``$MLRPL_CLIP_VOCAB``, else the vocabulary file of an installed ``open_clip`` / ``clip``
    package (located with importlib, not imported). Raises FileNotFoundError saying how to get
    it."""
    env = os.environ.get("MLRPL_CLIP_VOCAB")
    if env:
        if not os.path.isfile(env):
            raise MissingFileError(f"$MLRPL_CLIP_VOCAB={env!r} is not a file.")
        return env
    for package in _PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                path = os.path.join(location, VOCAB_FILE)
                if os.path.isfile(path):
                    return path
    raise MissingFileError(
        f"CLIP's BPE vocabulary ({VOCAB_FILE}) was not found. Either `pip install "
        "open-clip-torch` (it ships the file; the tokenizer does not import it), or copy the file "
        "from OpenAI's CLIP repository (clip/bpe_simple_vocab_16e6.txt.gz) and pass its path or "
        "set $MLRPL_CLIP_VOCAB."
    )


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable symbol table, in vocabulary order: first the 188 printable
    Latin-1 bytes (mapped to themselves) in byte order, then the other 68 bytes, mapped to code
    points 256, 257, ... in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]  # fmt: skip
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + i) for i, b in enumerate(others)})
    return table


def _pattern():
    import regex

    return regex.compile(
        r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
        r"""[^\s\p{L}\p{N}]+""",
        regex.IGNORECASE,
    )


def clean(text: str) -> str:
    """ftfy + HTML unescape (twice) + whitespace collapse + lowercase."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


class Tokenizer:
    """CLIP's BPE tokenizer (module docstring). ``vocab_path`` defaults to
    ``default_vocab_path()``."""

    def __init__(self, vocab_path: str | os.PathLike | None = None):
        path = os.fspath(vocab_path) if vocab_path is not None else default_vocab_path()
        if not os.path.isfile(path):
            raise MissingFileError(f"CLIP BPE vocabulary not found: {path!r}.")
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
        if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
            raise ValueError(
                f"{path!r} is not CLIP's BPE merges file (expected {NUM_MERGES} merge lines of "
                "two symbols after a header line)."
            )
        self.byte_encoder = bytes_to_unicode()
        symbols = list(self.byte_encoder.values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        vocab += [SOT, EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self.vocab_size = len(vocab)
        self._pattern = _pattern()
        self._bpe = functools.lru_cache(maxsize=1 << 16)(self._bpe_uncached)

    def _bpe_uncached(self, piece: str) -> tuple[str, ...]:
        """The BPE symbols of one pre-token (its byte symbols, ``</w>`` on the last)."""
        word = [*piece[:-1], piece[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(a, b) for a, b in itertools.pairwise(word)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return tuple(word)

    def encode(self, text: str) -> list[int]:
        """The BPE token ids of one text (no start / end tokens)."""
        ids = []
        for piece in self._pattern.findall(clean(text)):
            if piece in (SOT, EOT):  # written out in the text: the special token itself
                ids.append(self.encoder[piece])
                continue
            symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self._bpe(symbols))
        return ids

    def tokenize(self, texts: str | Sequence[str], context_length: int = 77) -> np.ndarray:
        """(N, context_length) int32 ids: start, text, end, zeros; long texts truncated with the
        end token last."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), context_length), np.int32)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.eot_id
            out[row, : len(ids)] = ids
        return out


class WordTokenizer:
    """A word-level tokenizer over a fixed vocabulary, with ``Tokenizer``'s interface, for small
    CLIPs trained here (the synthetic scenes' captions and class names need a few dozen words, and
    CLIP's 49,408-entry embedding table would dwarf such a model).

    Ids: 0 padding, then the words in the order given, then start-of-text and end-of-text (the
    two largest ids, so CLIP's "end of text = largest id" rule holds). Texts are cleaned as CLIP
    cleans them (``clean``) and split into runs of letters, single digits and single other
    characters; a piece outside the vocabulary is an error naming it.
    """

    def __init__(self, words: Sequence[str]):
        words = list(dict.fromkeys(w.lower() for w in words))
        self.words = ("<pad>", *words)
        self.encoder = {w: i for i, w in enumerate(self.words)}
        self.sot_id, self.eot_id = len(self.words), len(self.words) + 1
        self.vocab_size = len(self.words) + 2
        self._split = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in self._split.findall(clean(text)):
            if piece not in self.encoder:
                raise ValueError(
                    f"{piece!r} (in {text!r}) is not in this WordTokenizer's vocabulary of "
                    f"{len(self.words) - 1} words; add it to the word list."
                )
            ids.append(self.encoder[piece])
        return ids

    tokenize = Tokenizer.tokenize
