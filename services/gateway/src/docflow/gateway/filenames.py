"""Client-supplied file names, made safe to store, show and log: the rules live in
docflow.shared.filenames (the extractor names fetched URLs' documents by them too)."""

from docflow.shared.filenames import FALLBACK_FILENAME, MAX_FILENAME_BYTES, sanitize_filename

__all__ = ["FALLBACK_FILENAME", "MAX_FILENAME_BYTES", "sanitize_filename"]
