"""Pictures of what the model does: animations of an answer being denoised."""
