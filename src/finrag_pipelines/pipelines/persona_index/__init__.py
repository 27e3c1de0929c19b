"""persona_index: finance personas from Persona Hub, deduplicated by embedding cosine, in a FAISS index."""

from finrag_pipelines.pipelines.persona_index.pipeline import create_pipeline

__all__ = ["create_pipeline"]
