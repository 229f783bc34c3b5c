"""Errors a user can act on. The CLI prints their message on one line and exits with code 2."""


class AssocError(Exception):
    """Base class for errors that carry a complete, user-facing one-line message."""


class BundleError(AssocError):
    """A model bundle is missing, malformed, or does not match its recorded hashes."""


class ImageLoadError(AssocError):
    """A file could not be decoded as a usable photo."""


class GalleryError(AssocError):
    """A gallery cannot be opened or used as asked (for example with another model)."""


class NoGalleryError(GalleryError):
    """A read-only command asked for a gallery or collection that does not exist (nothing indexed yet)."""


class QueryError(AssocError):
    """A query cannot be run (empty text, unreadable query image, ...)."""
