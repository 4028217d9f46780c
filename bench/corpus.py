"""The benchmark's documents, generated deterministically (same seed, same bytes).

A "page" is about `WORDS_PER_PAGE` words of prose in paragraphs: a PDF page is a real
page (fpdf2, as in docflow.devstack.samples); DOCX and plain text carry the same
amount of text without page breaks, so pages/s means the same work in every format.
"""

import random
from dataclasses import dataclass
from pathlib import Path

from docflow.devstack import samples

WORDS_PER_PAGE = 330
_VOCABULARY = """
the of and to in a is that for it as was with be by on not he this are or his from at
which but have an they you were her she there one all we their been has when who will
more no if out so said what up its about into than them can only other new some could
time these two may then do first any my now such like our over man me even most made
after also did many before must through back years where much your way well down should
because each just those people how too little state good very make world still own see
men work long get here between both life being under never day same another know while
last might us great old year off come since against go came right used take three
river harbour lighthouse glacier orchard council engine ledger invoice contract tenant
pipeline archive museum library village market bridge canal meadow valley summit storm
winter autumn spring summer journey letter record report survey budget policy station
signal measure sample method result figure table section chapter appendix reference
analysis committee delivery schedule shipment warehouse inventory customer supplier
""".split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_VOCABULARY) for _ in range(rng.randint(8, 22))]
    if rng.random() < 0.3:
        words.insert(rng.randint(1, len(words) - 1), str(rng.randint(2, 2048)))
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", ";"]).replace(";", ".")


def page_text(rng: random.Random, words: int = WORDS_PER_PAGE) -> str:
    paragraphs, count = [], 0
    while count < words:
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randint(3, 6)))
        paragraphs.append(paragraph)
        count += len(paragraph.split())
    return "\n\n".join(paragraphs)


@dataclass(frozen=True)
class Document:
    name: str
    kind: str  # pdf | docx | txt
    pages: int
    data: bytes


def make_document(name: str, kind: str, pages: int, seed: int) -> Document:
    rng = random.Random(seed)
    texts = [page_text(rng) for _ in range(pages)]
    if kind == "pdf":
        data = samples.pdf(texts)
    elif kind == "docx":
        data = samples.docx([paragraph for text in texts for paragraph in text.split("\n\n")])
    else:
        data = samples.text(texts)
    return Document(f"{name}.{kind}", kind, pages, data)


# 1 to 50 pages, mixed formats, half the documents PDFs (the common case).
_CORPUS_PLAN = [
    ("pdf", 1), ("docx", 2), ("txt", 3), ("pdf", 5), ("docx", 8), ("pdf", 12), ("txt", 1),
    ("pdf", 20), ("docx", 4), ("pdf", 2), ("txt", 6), ("pdf", 50), ("docx", 1), ("pdf", 9),
    ("txt", 15), ("pdf", 3), ("docx", 11), ("pdf", 30), ("txt", 2), ("pdf", 7),
]


def corpus_plan(scale: float = 1.0) -> list[Document]:
    """The corpus's documents without their bytes: name, kind and pages."""
    plan = _CORPUS_PLAN if scale >= 1 else _CORPUS_PLAN[: max(3, int(len(_CORPUS_PLAN) * scale))]
    return [Document(f"doc{i:02d}.{kind}", kind, max(1, round(pages * min(scale, 1.0))), b"")
            for i, (kind, pages) in enumerate(plan)]


def corpus(scale: float = 1.0) -> list[Document]:
    """The mixed corpus; `scale` < 1 keeps every format but fewer, shorter documents (smoke runs)."""
    return [make_document(planned.name.rsplit(".", 1)[0], planned.kind, planned.pages, seed=1000 + i)
            for i, planned in enumerate(corpus_plan(scale))]


def text_pdf(pages: int, seed: int = 7) -> bytes:
    """A text PDF of `pages` full pages (fan-out and growth runs)."""
    return make_document("big", "pdf", pages, seed).data


def pdf_of_size(target_bytes: int, seed: int = 11) -> bytes:
    """A real text PDF of about `target_bytes` (the upload benchmark's 100 KB file)."""
    pages = 1
    while True:
        data = make_document("upload", "pdf", pages, seed).data
        if len(data) >= target_bytes:
            return data
        pages = max(pages + 1, int(pages * target_bytes / len(data)))


def write(documents: list[Document], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for document in documents:
        path = folder / document.name
        path.write_bytes(document.data)
        paths.append(path)
    return paths
